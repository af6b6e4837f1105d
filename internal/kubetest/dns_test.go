package kubetest

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"golang.org/x/net/dns/dnsmessage"
)

// staticRecords are records held in maps.
type staticRecords struct {
	svcs   []*corev1.Service
	slices []*discoveryv1.EndpointSlice
}

func (s *staticRecords) service(ns, name string) *corev1.Service {
	for _, svc := range s.svcs {
		if svc.Namespace == ns && svc.Name == name {
			return svc
		}
	}
	return nil
}

func (s *staticRecords) endpointSlices(ns, service string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, es := range s.slices {
		if es.Namespace == ns && es.Labels[discoveryv1.LabelServiceName] == service {
			out = append(out, es)
		}
	}
	return out
}

func testRecords() *staticRecords {
	return &staticRecords{
		svcs: []*corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(8080)}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
				Ports: []corev1.ServicePort{{Name: "sql", Port: 5432, TargetPort: intstr.FromInt(5432)}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "shop"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
		},
		slices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Name: "db-x", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("sql"), Port: ptr.To[int32](5432)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"198.18.0.3"}, Hostname: ptr.To("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"198.18.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"198.18.0.5"}, Hostname: ptr.To("db-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			},
		}},
	}
}

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestDNSAnswers: the names of the Kubernetes DNS specification, for a
// ClusterIP, a headless and an ExternalName Service, pods by address,
// SRV records; NXDOMAIN under cluster.local, REFUSED outside.
func TestDNSAnswers(t *testing.T) {
	s := &dnsServer{records: testRecords()}
	for _, tc := range []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		want  []string
	}{
		{"web.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"10.96.0.10"}},
		{"WEB.Shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"10.96.0.10"}},
		{"web.shop.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil},
		{"db.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.18.0.3", "198.18.0.4"}},
		{"db-0.db.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.18.0.3"}},
		{"198-18-0-4.db.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.18.0.4"}},
		{"db-2.db.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"db-0.web.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"ext.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"db.example.com."}},
		{"_http._tcp.web.shop.svc.cluster.local.", dnsmessage.TypeSRV, dnsmessage.RCodeSuccess, []string{"web.shop.svc.cluster.local.:80"}},
		{"_sql._tcp.db.shop.svc.cluster.local.", dnsmessage.TypeSRV, dnsmessage.RCodeSuccess,
			[]string{"198-18-0-4.db.shop.svc.cluster.local.:5432", "db-0.db.shop.svc.cluster.local.:5432"}},
		{"10-1-2-3.shop.pod.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"10.1.2.3"}},
		{"nope.shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"web.other.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"shop.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeRefused, nil},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeRefused, nil},
		{"web.shop.svc.cluster.local.example.com.", dnsmessage.TypeA, dnsmessage.RCodeRefused, nil},
	} {
		resp := s.answer(query(t, tc.name, tc.typ), 512)
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.Header.ID != 7 || !m.Header.Response {
			t.Errorf("%s: header %+v", tc.name, m.Header)
		}
		if m.Header.RCode != tc.rcode {
			t.Errorf("%s %s: rcode %s, want %s", tc.name, tc.typ, m.Header.RCode, tc.rcode)
		}
		var got []string
		for _, rr := range m.Answers {
			switch b := rr.Body.(type) {
			case *dnsmessage.AResource:
				got = append(got, netip.AddrFrom4(b.A).String())
			case *dnsmessage.AAAAResource:
				got = append(got, netip.AddrFrom16(b.AAAA).String())
			case *dnsmessage.CNAMEResource:
				got = append(got, b.CNAME.String())
			case *dnsmessage.SRVResource:
				got = append(got, b.Target.String()+":"+strconv.Itoa(int(b.Port)))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: answers %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
}

// FuzzDNSAnswer: any message gets no answer or a well-formed response with
// the query's ID, within the size limit.
func FuzzDNSAnswer(f *testing.F) {
	f.Add(query(f, "web.shop.svc.cluster.local.", dnsmessage.TypeA))
	f.Add(query(f, "_sql._tcp.db.shop.svc.cluster.local.", dnsmessage.TypeSRV))
	f.Add(query(f, "example.com.", dnsmessage.TypeAAAA))
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	s := &dnsServer{records: testRecords()}
	f.Fuzz(func(t *testing.T, msg []byte) {
		resp := s.answer(msg, 512)
		if resp == nil {
			return
		}
		if len(resp) > 512 {
			t.Fatalf("response of %d bytes", len(resp))
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("response does not parse: %v", err)
		}
		if !m.Header.Response || len(msg) < 2 || m.Header.ID != uint16(msg[0])<<8|uint16(msg[1]) {
			t.Fatalf("response header %+v", m.Header)
		}
	})
}
