package model

import (
	"slices"
	"testing"
)

func TestMostSpecificListener(t *testing.T) {
	ls := []string{"", "*.example.com", "*.shop.example.com", "cart.example.com"}
	for host, want := range map[string]string{
		"cart.example.com":     "cart.example.com",
		"web.shop.example.com": "*.shop.example.com",
		"*.shop.example.com":   "*.shop.example.com",
		"a.example.com":        "*.example.com",
		"*.example.com":        "*.example.com",
		"example.org":          "",
		"*":                    "",
	} {
		if got, ok := MostSpecificListener(ls, host); !ok || got != want {
			t.Errorf("%s: got %q %v, want %q", host, got, ok, want)
		}
	}
	if got, ok := MostSpecificListener([]string{"cart.example.com"}, "web.example.com"); ok {
		t.Errorf("uncovered host served by %q", got)
	}
}

func TestAttachToListener(t *testing.T) {
	labels := map[string]map[string]string{"team-a": {"gateway": "yes"}, "team-b": {}}
	http := Listener{Name: "web", Port: 80, Protocol: ProtocolHTTP, Hostname: "*.example.com"}
	route := func(ns string, hosts ...string) *Route {
		return &Route{Key: Key{Namespace: ns, Name: "r"}, Hostnames: hosts}
	}
	sel := func(l Listener, f NamespaceFilter) *Listener { l.AllowedRoutes.Namespaces = f; return &l }
	for _, tc := range []struct {
		name  string
		kind  string
		r     *Route
		p     ParentRef
		l     *Listener
		hosts []string
		why   Rejection
	}{
		{"same namespace", KindHTTPRoute, route("infra", "a.example.com"), ParentRef{}, &http, []string{"a.example.com"}, Attached},
		{"other namespace, Same", KindHTTPRoute, route("team-a"), ParentRef{}, &http, nil, RejectNamespace},
		{"All", KindHTTPRoute, route("team-b"), ParentRef{}, sel(http, NamespaceFilter{From: FromAll}), []string{"*.example.com"}, Attached},
		{"selector matches", KindGRPCRoute, route("team-a"), ParentRef{},
			sel(http, NamespaceFilter{From: FromSelector, Selector: &Selector{MatchLabels: map[string]string{"gateway": "yes"}}}), []string{"*.example.com"}, Attached},
		{"selector does not match", KindHTTPRoute, route("team-b"), ParentRef{},
			sel(http, NamespaceFilter{From: FromSelector, Selector: &Selector{MatchLabels: map[string]string{"gateway": "yes"}}}), nil, RejectNamespace},
		{"selector, unknown labels", KindHTTPRoute, route("team-c"), ParentRef{},
			sel(http, NamespaceFilter{From: FromSelector, Selector: &Selector{}}), nil, RejectSelectorUnknown},
		{"kind", KindTCPRoute, route("infra"), ParentRef{}, &http, nil, RejectKind},
		{"section", KindHTTPRoute, route("infra"), ParentRef{SectionName: "other"}, &http, nil, RejectSection},
		{"hostname", KindHTTPRoute, route("infra", "example.org"), ParentRef{}, &http, nil, RejectHostname},
		{"tcp has no hostnames", KindTCPRoute, route("infra", "example.org"), ParentRef{Port: 5432},
			&Listener{Name: "db", Port: 5432, Protocol: ProtocolTCP}, []string{""}, Attached},
	} {
		hosts, why := AttachToListener(tc.kind, tc.r, tc.p, tc.l, "infra", labels)
		if why != tc.why || !slices.Equal(hosts, tc.hosts) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, hosts, why, tc.hosts, tc.why)
		}
	}
}
