package rbac

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func regex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func principalName(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func urlPath(m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
}

func headerPerm(name string, m *matcherv3.StringMatcher, invert bool) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: name, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m},
	}}}
}

func andPerms(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func orPerms(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func notPerm(p *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
}

func andIDs(ps ...*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orIDs(ps ...*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func notID(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}

func port(n uint32) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: n}}
}

func peer(ids ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "peer"}}
	for _, id := range ids {
		u, _ := url.Parse(id)
		c.URIs = append(c.URIs, u)
	}
	return c
}

func httpReq(method, target string, h map[string]string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return r
}

const web = "spiffe://cluster.local/ns/web/sa/web"

func TestEvaluate(t *testing.T) {
	policies := map[string]*rbacv3.Policy{
		"web-reads": {
			Principals:  []*rbacv3.Principal{principalName(exact(web))},
			Permissions: []*rbacv3.Permission{andPerms(urlPath(prefix("/api/")), headerPerm(":method", exact("GET"), false))},
		},
		"ops-anything": {
			Principals:  []*rbacv3.Principal{principalName(prefix("spiffe://cluster.local/ns/ops/sa/"))},
			Permissions: []*rbacv3.Permission{anyPermission()},
		},
	}
	allow, err := Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: policies})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: policies})
	if err != nil {
		t.Fatal(err)
	}
	logs, err := Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_LOG, Policies: policies})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    Request
		policy string // "" when none matches
	}{
		{"web GET /api", Request{TLS: true, Peer: peer(web), HTTP: httpReq("GET", "/api/x?y=1", nil)}, "web-reads"},
		{"web POST /api", Request{TLS: true, Peer: peer(web), HTTP: httpReq("POST", "/api/x", nil)}, ""},
		{"web GET /admin", Request{TLS: true, Peer: peer(web), HTTP: httpReq("GET", "/admin", nil)}, ""},
		{"ops anything", Request{TLS: true, Peer: peer("spiffe://cluster.local/ns/ops/sa/deployer"), HTTP: httpReq("DELETE", "/", nil)}, "ops-anything"},
		{"ops- namespace prefix is not ops", Request{TLS: true, Peer: peer("spiffe://cluster.local/ns/ops-x/sa/a"), HTTP: httpReq("GET", "/", nil)}, ""},
		{"no peer certificate", Request{TLS: true, HTTP: httpReq("GET", "/api/x", nil)}, ""},
		{"plaintext", Request{HTTP: httpReq("GET", "/api/x", nil)}, ""},
		{"second URI SAN", Request{TLS: true, Peer: peer("spiffe://other/x", web), HTTP: httpReq("GET", "/api/", nil)}, "web-reads"},
		{"connection: HTTP conditions never match", Request{TLS: true, Peer: peer(web)}, ""},
		{"connection: any permission", Request{TLS: true, Peer: peer("spiffe://cluster.local/ns/ops/sa/a")}, "ops-anything"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := allow.Evaluate(&tc.req); d.Allowed != (tc.policy != "") || d.Policy != tc.policy {
				t.Errorf("ALLOW: %+v, want policy %q", d, tc.policy)
			}
			if d := deny.Evaluate(&tc.req); d.Allowed != (tc.policy == "") || d.Policy != tc.policy {
				t.Errorf("DENY: %+v, want policy %q", d, tc.policy)
			}
			if d := logs.Evaluate(&tc.req); !d.Allowed || d.Policy != tc.policy {
				t.Errorf("LOG: %+v, want allowed and policy %q", d, tc.policy)
			}
		})
	}
}

func TestAllowWithoutPoliciesDeniesEverything(t *testing.T) {
	e, err := Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Evaluate(&Request{TLS: true, Peer: peer(web), HTTP: httpReq("GET", "/", nil)}); d.Allowed {
		t.Fatal("ALLOW with no policies allowed a request")
	}
	e, err = Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_DENY})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Evaluate(&Request{TLS: true, Peer: peer(web)}); !d.Allowed {
		t.Fatal("DENY with no policies denied a connection")
	}
}

func TestMatchers(t *testing.T) {
	get := func(target string, h map[string]string) *Request {
		return &Request{TLS: true, Peer: peer(web), DestinationPort: 8080, HTTP: httpReq("GET", target, h)}
	}
	for _, tc := range []struct {
		name string
		perm *rbacv3.Permission
		prin *rbacv3.Principal
		req  *Request
		want bool
	}{
		{"destination port", port(8080), nil, get("/", nil), true},
		{"other destination port", port(9090), nil, get("/", nil), false},
		{"url_path ignores the query", urlPath(exact("/a")), nil, get("/a?b=/c", nil), true},
		{"url_path is the escaped path", urlPath(exact("/a%2Fb")), nil, get("/a%2Fb", nil), true},
		{"url_path regex matches the whole path", urlPath(regex("/a")), nil, get("/ab", nil), false},
		{"url_path regex", urlPath(regex("/a(;[^/]*)?")), nil, get("/a;x", nil), true},
		{"ignore_case", urlPath(&matcherv3.StringMatcher{IgnoreCase: true, MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "/ADMIN"}}), nil, get("/admin", nil), true},
		{"case-sensitive by default", urlPath(exact("/ADMIN")), nil, get("/admin", nil), false},
		{"header", headerPerm("x-team", exact("a"), false), nil, get("/", map[string]string{"X-Team": "a"}), true},
		{"header missing", headerPerm("x-team", exact("a"), false), nil, get("/", nil), false},
		{"inverted header missing", headerPerm("x-team", exact("a"), true), nil, get("/", nil), false},
		{"inverted header other value", headerPerm("x-team", exact("a"), true), nil, get("/", map[string]string{"X-Team": "b"}), true},
		{"host is :authority", headerPerm("host", exact("example.com"), false), nil, get("http://example.com/", nil), false},
		{":authority", headerPerm(":authority", exact("example.com"), false), nil, get("http://example.com/", nil), true},
		{":path has the query", headerPerm(":path", exact("/a?b"), false), nil, get("/a?b", nil), true},
		{"not_rule", notPerm(urlPath(prefix("/admin"))), nil, get("/public", nil), true},
		{"or_rules", orPerms(port(1), urlPath(exact("/x"))), nil, get("/x", nil), true},
		{"and_rules", andPerms(port(8080), urlPath(exact("/y"))), nil, get("/x", nil), false},
		{"and_ids", nil, andIDs(principalName(prefix("spiffe://cluster.local/ns/web/sa/")), principalName(exact(web))), get("/", nil), true},
		{"or_ids", nil, orIDs(principalName(exact("spiffe://x")), principalName(exact(web))), get("/", nil), true},
		{"not_id", nil, notID(principalName(exact(web))), get("/", nil), false},
		{"authenticated without name", nil, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{}}}, get("/", nil), true},
		{"subject", nil, principalName(exact("CN=peer")), get("/", nil), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.perm == nil {
				tc.perm = anyPermission()
			}
			if tc.prin == nil {
				tc.prin = anyPrincipal()
			}
			e, err := Compile("rules", &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
				"p": {Permissions: []*rbacv3.Permission{tc.perm}, Principals: []*rbacv3.Principal{tc.prin}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Evaluate(tc.req).Allowed; got != tc.want {
				t.Fatalf("matched %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUnsupportedFieldsAreRefused(t *testing.T) {
	withUnknown := anyPermission()
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	for _, tc := range []struct {
		name string
		rbac *rbacv3.RBAC
		want string
	}{
		{"remote_ip", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.0"}}}},
		}}}, `rules.policies["p"].principals[0].remote_ip`},
		{"requested_server_name", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{andPerms(anyPermission(), &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: exact("x")}})},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}}}, `rules.policies["p"].permissions[0].and_rules.rules[1].requested_server_name`},
		{"audit logging", &rbacv3.RBAC{AuditLoggingOptions: &rbacv3.RBAC_AuditLoggingOptions{}}, "rules.audit_logging_options"},
		{"header range", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "a"}}}}},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}}}, `rules.policies["p"].permissions[0].header.prefix_match`},
		{"unknown field", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{withUnknown},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}}}, "unknown to this proxy"},
		{"bad regex", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{urlPath(regex("(("))},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}}}, "safe_regex.regex"},
		{"envoy validation", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {Principals: []*rbacv3.Principal{anyPrincipal()}}}}, "Permissions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile("rules", tc.rbac)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile error = %v, want it to name %q", err, tc.want)
			}
			if tc.name != "bad regex" && tc.name != "envoy validation" && !errors.Is(err, ErrNotSupported) {
				t.Fatalf("error %v is not ErrNotSupported", err)
			}
		})
	}
}

// FuzzCompile feeds arbitrary RBAC configs: Compile must refuse or accept,
// never panic, and an accepted engine must evaluate any request.
func FuzzCompile(f *testing.F) {
	seed, _ := proto.Marshal(&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
		Permissions: []*rbacv3.Permission{andPerms(urlPath(prefix("/a")), notPerm(headerPerm(":method", exact("GET"), false)))},
		Principals:  []*rbacv3.Principal{orIDs(principalName(exact(web)), notID(anyPrincipal()))},
	}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var c rbacv3.RBAC
		if proto.Unmarshal(data, &c) != nil {
			return
		}
		e, err := Compile("rules", &c)
		if err != nil {
			return
		}
		e.Evaluate(&Request{TLS: true, Peer: peer(web), HTTP: httpReq("GET", "/a", nil)})
		e.Evaluate(&Request{})
	})
}
