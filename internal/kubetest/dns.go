package kubetest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"golang.org/x/net/dns/dnsmessage"

	"trellis.dev/trellis/internal/netnstest"
)

// The node runs the cluster's DNS server, on port 53 (UDP and TCP) of its
// address on the pods' network, which every pod's resolv.conf names
// (podenv.go). It answers from the Services, EndpointSlices and Pods it
// watches, after the Kubernetes DNS specification:
//
//	SVC.NS.svc.cluster.local          A/AAAA: the ClusterIP; for a headless
//	                                  Service, its ready endpoints' addresses;
//	                                  CNAME: an ExternalName Service's name
//	HOST.SVC.NS.svc.cluster.local     A/AAAA: the endpoint of the headless
//	                                  Service SVC whose hostname is HOST (a
//	                                  pod with hostname HOST and subdomain
//	                                  SVC), or whose address, with dashes, is
//	_PORT._PROTO.SVC.NS.svc.cluster.local  SRV: the Service's named port
//	A-B-C-D.NS.pod.cluster.local      A: that address
//
// Another name under cluster.local is NXDOMAIN; a name outside it is
// REFUSED: nothing is forwarded (there is no outside network).

// dnsTTL is the answers' TTL, CoreDNS's default for the cluster's names.
const dnsTTL = 30

// clusterRecords is what the DNS server answers from.
type clusterRecords interface {
	service(ns, name string) *corev1.Service
	endpointSlices(ns, service string) []*discoveryv1.EndpointSlice
}

// dnsServer answers DNS queries for the cluster domain.
type dnsServer struct {
	records clusterRecords
}

// startDNS starts the cluster's DNS server in the node's namespace, on its
// address, until ctx ends.
func (n *Node) startDNS(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(n.cs, 0)
	svcs := f.Core().V1().Services()
	slices := f.Discovery().V1().EndpointSlices()
	rec := &informerRecords{svcs: svcs.Lister(), slices: slices.Lister(), svcInformer: svcs.Informer()}
	n.records = rec
	slices.Informer()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return errors.New("cache of " + typ.String() + " not synced")
		}
	}
	srv := &dnsServer{records: rec}
	addr := net.JoinHostPort(n.IP, "53")
	var pc net.PacketConn
	err := netnstest.Do(n.NS, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		return err
	}
	ln, err := netnstest.Listen(n.NS, "tcp", addr)
	if err != nil {
		pc.Close()
		return err
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		<-ctx.Done()
		pc.Close()
		ln.Close()
		f.Shutdown()
	}()
	go func() {
		defer n.wg.Done()
		srv.serveUDP(pc)
	}()
	go srv.serveTCP(ln)
	return nil
}

// DNSAddress is the address (host:port) of the cluster's DNS server, on
// the pods' network.
func (n *Node) DNSAddress() string { return net.JoinHostPort(n.IP, "53") }

// Resolver returns a resolver that asks the cluster's DNS server, from the
// node's namespace, for the test process.
func (n *Node) Resolver() *net.Resolver {
	dial := netnstest.Dialer(n.NS)
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial(ctx, network, n.DNSAddress())
	}}
}

func (s *dnsServer) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:k], 512); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func (s *dnsServer) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := s.answer(q, 65535)
				if resp == nil {
					return
				}
				if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp)))); err != nil {
					return
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}()
	}
}

// answer returns the response to the query msg, at most max bytes long (a
// longer one is truncated: TC set, no records), or nil for a message that
// is not a query of one question.
func (s *dnsServer) answer(msg []byte, max int) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil
	}
	// An OPT record (EDNS) raises the limit over UDP.
	if err := p.SkipAllAnswers(); err == nil {
		if err := p.SkipAllAuthorities(); err == nil {
			if extra, err := p.AllAdditionals(); err == nil {
				for _, rr := range extra {
					if rr.Header.Type == dnsmessage.TypeOPT && int(rr.Header.Class) > max {
						max = min(int(rr.Header.Class), 65535)
					}
				}
			}
		}
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	var answers []dnsmessage.Resource
	authoritative := false
	switch {
	case h.OpCode != 0:
		resp.RCode = dnsmessage.RCodeNotImplemented
	case len(qs) != 1:
		resp.RCode = dnsmessage.RCodeFormatError
	default:
		answers, resp.RCode, authoritative = s.lookup(qs[0])
		resp.Authoritative = authoritative
	}
	out := s.build(resp, qs, answers)
	if len(out) > max {
		resp.Truncated = true
		out = s.build(resp, qs, nil)
	}
	return out
}

func (s *dnsServer) build(h dnsmessage.Header, qs []dnsmessage.Question, answers []dnsmessage.Resource) []byte {
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if len(qs) == 1 {
		b.StartQuestions()
		b.Question(qs[0])
	}
	b.StartAnswers()
	for _, rr := range answers {
		var err error
		switch body := rr.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(rr.Header, *body)
		case *dnsmessage.AAAAResource:
			err = b.AAAAResource(rr.Header, *body)
		case *dnsmessage.CNAMEResource:
			err = b.CNAMEResource(rr.Header, *body)
		case *dnsmessage.SRVResource:
			err = b.SRVResource(rr.Header, *body)
		}
		if err != nil {
			break
		}
	}
	out, err := b.Finish()
	if err != nil {
		// Only a name too long for the message can fail: answer without
		// records.
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeServerFailure})
		out, _ = b.Finish()
	}
	return out
}

// lookup answers one question.
func (s *dnsServer) lookup(q dnsmessage.Question) (answers []dnsmessage.Resource, rcode dnsmessage.RCode, authoritative bool) {
	name := strings.ToLower(q.Name.String())
	zone := "." + ClusterDomain + "."
	if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
		return nil, dnsmessage.RCodeRefused, false
	}
	rest, ok := strings.CutSuffix(name, zone)
	if !ok {
		return nil, dnsmessage.RCodeRefused, false
	}
	labels := strings.Split(rest, ".")
	found := false
	header := func(typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: q.Name, Type: typ, Class: dnsmessage.ClassINET, TTL: dnsTTL}
	}
	addIPs := func(ips []netip.Addr) {
		for _, ip := range ips {
			switch {
			case ip.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
				answers = append(answers, dnsmessage.Resource{Header: header(dnsmessage.TypeA), Body: &dnsmessage.AResource{A: ip.As4()}})
			case ip.Is6() && !ip.Is4In6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
				answers = append(answers, dnsmessage.Resource{Header: header(dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}})
			}
		}
	}
	switch {
	case len(labels) == 3 && labels[2] == "svc":
		svc := s.records.service(labels[1], labels[0])
		if svc == nil {
			break
		}
		found = true
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			if q.Type == dnsmessage.TypeCNAME || q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL {
				if target, err := dnsmessage.NewName(strings.TrimSuffix(svc.Spec.ExternalName, ".") + "."); err == nil {
					answers = append(answers, dnsmessage.Resource{Header: header(dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: target}})
				}
			}
		case svc.Spec.ClusterIP == corev1.ClusterIPNone:
			var ips []netip.Addr
			for _, ep := range s.endpoints(svc) {
				ips = append(ips, ep.addr)
			}
			addIPs(ips)
		default:
			var ips []netip.Addr
			for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
				if a, err := netip.ParseAddr(ip); err == nil && !slices.Contains(ips, a) {
					ips = append(ips, a)
				}
			}
			addIPs(ips)
		}
	case len(labels) == 5 && labels[4] == "svc" && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
		// _port._proto.svc.ns.svc
		svc := s.records.service(labels[3], labels[2])
		if svc == nil {
			break
		}
		for _, p := range svc.Spec.Ports {
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if p.Name == "" || "_"+strings.ToLower(p.Name) != labels[0] || "_"+strings.ToLower(proto) != labels[1] {
				continue
			}
			found = true
			if q.Type != dnsmessage.TypeSRV && q.Type != dnsmessage.TypeALL {
				continue
			}
			target := labels[2] + "." + labels[3] + ".svc" + zone
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				for _, ep := range s.endpoints(svc) {
					port := p.TargetPort.IntValue()
					for _, epp := range ep.ports {
						if epp.name == p.Name {
							port = epp.port
						}
					}
					answers = append(answers, srv(header(dnsmessage.TypeSRV), ep.host+"."+target, port))
				}
			} else {
				answers = append(answers, srv(header(dnsmessage.TypeSRV), target, int(p.Port)))
			}
		}
	case len(labels) == 4 && labels[3] == "svc":
		// host.svc.ns.svc, of a headless Service.
		svc := s.records.service(labels[2], labels[1])
		if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			break
		}
		var ips []netip.Addr
		for _, ep := range s.endpoints(svc) {
			if ep.host == labels[0] {
				found = true
				ips = append(ips, ep.addr)
			}
		}
		addIPs(ips)
	case len(labels) == 3 && labels[2] == "pod":
		ip, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", "."))
		if err != nil || !ip.Is4() {
			ip, err = netip.ParseAddr(strings.ReplaceAll(labels[0], "-", ":"))
		}
		if err != nil {
			break
		}
		found = true
		addIPs([]netip.Addr{ip})
	}
	if !found {
		return nil, dnsmessage.RCodeNameError, true
	}
	return answers, dnsmessage.RCodeSuccess, true
}

func srv(h dnsmessage.ResourceHeader, target string, port int) dnsmessage.Resource {
	name, err := dnsmessage.NewName(target)
	if err != nil {
		name = dnsmessage.MustNewName(".")
	}
	return dnsmessage.Resource{Header: h, Body: &dnsmessage.SRVResource{Priority: 0, Weight: 100, Port: uint16(port), Target: name}}
}

// dnsEndpoint is a ready endpoint of a headless Service: its DNS label (its
// hostname, or its address with dashes), address and ports.
type dnsEndpoint struct {
	host  string
	addr  netip.Addr
	ports []dnsPort
}

type dnsPort struct {
	name string
	port int
}

// endpoints returns the ready (or, with publishNotReadyAddresses, all)
// endpoints of svc.
func (s *dnsServer) endpoints(svc *corev1.Service) []dnsEndpoint {
	var out []dnsEndpoint
	for _, es := range s.records.endpointSlices(svc.Namespace, svc.Name) {
		var ports []dnsPort
		for _, p := range es.Ports {
			if p.Name != nil && p.Port != nil {
				ports = append(ports, dnsPort{*p.Name, int(*p.Port)})
			}
		}
		for _, ep := range es.Endpoints {
			if !svc.Spec.PublishNotReadyAddresses && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				host := strings.NewReplacer(".", "-", ":", "-").Replace(addr.String())
				if ep.Hostname != nil && *ep.Hostname != "" {
					host = strings.ToLower(*ep.Hostname)
				}
				out = append(out, dnsEndpoint{host: host, addr: addr, ports: ports})
			}
		}
	}
	slices.SortFunc(out, func(a, b dnsEndpoint) int { return a.addr.Compare(b.addr) })
	return slices.CompactFunc(out, func(a, b dnsEndpoint) bool { return a.addr == b.addr && a.host == b.host })
}

// informerRecords reads the records from informers' caches.
type informerRecords struct {
	svcs        corelisters.ServiceLister
	slices      discoverylisters.EndpointSliceLister
	svcInformer cache.SharedIndexInformer // for the load balancers (loadbalancer.go)
}

func (r *informerRecords) service(ns, name string) *corev1.Service {
	svc, err := r.svcs.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

func (r *informerRecords) endpointSlices(ns, service string) []*discoveryv1.EndpointSlice {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service})
	out, _ := r.slices.EndpointSlices(ns).List(sel)
	return out
}
