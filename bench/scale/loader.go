package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/translate"
)

// loaderEnv carries the loader's configuration (JSON) to the child
// process: the same binary, or the test binary, runs as the loader when
// it is set.
const loaderEnv = "TRELLIS_BENCH_LOADER"

// loaderConfig configures the loader process.
type loaderConfig struct {
	Layout layout `json:"layout"`
	// XDS is the control plane's xDS and CA address.
	XDS string `json:"xds"`
	// Bundle is the PEM file of the mesh's root certificates.
	Bundle      string `json:"bundle"`
	TrustDomain string `json:"trustDomain"`
	Delta       bool   `json:"delta"`
	// Parallel bounds how many proxies are starting (certificate, stream,
	// first complete config) at once.
	Parallel int `json:"parallel"`
	// StartTimeout bounds the time for every proxy to be synced.
	StartTimeout time.Duration `json:"startTimeout"`
	// TokenFile holds a JSON array of join tokens, one per proxy, which
	// each presents with its certificate request.
	TokenFile string `json:"tokenFile"`
}

// Messages between orchestrator and loader, one JSON object a line: the
// orchestrator writes commands to the loader's stdin, the loader writes
// events to its stdout. Times are wall-clock Unix nanoseconds: both
// processes read the same clock.
type command struct {
	Op string `json:"op"` // expect, stats, quit
	// expect: tell when every proxy calling Service has applied and ACKed
	// a RouteConfiguration containing Value (kind "route") or a
	// ClusterLoadAssignment with an endpoint at address Value (kind
	// "endpoint").
	ID      int           `json:"id,omitempty"`
	Kind    string        `json:"kind,omitempty"`
	Service int           `json:"service,omitempty"`
	Value   string        `json:"value,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

type event struct {
	Event string `json:"event"` // ready, watching, done, stats, error
	ID    int    `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
	// ready
	StartSeconds float64 `json:"startSeconds,omitempty"`
	// done: the proxies concerned, those that ACKed in time, and for each
	// of these when it applied the change and when it sent the ACK.
	Affected int     `json:"affected,omitempty"`
	Acked    int     `json:"acked,omitempty"`
	Applied  []int64 `json:"applied,omitempty"`
	Acks     []int64 `json:"acks,omitempty"`
	// stats
	Stats *loaderStats `json:"stats,omitempty"`
}

// loaderStats are cumulative counters over every proxy.
type loaderStats struct {
	Proxies int `json:"proxies"`
	Synced  int `json:"synced"`
	// Bytes and Responses received, by xDS type (CDS, EDS, LDS, RDS, SDS),
	// as proto.Size of each DiscoveryResponse (or DeltaDiscoveryResponse),
	// the same measure the control plane's proxy-status counts.
	Bytes     map[string]int64 `json:"bytes"`
	Responses map[string]int64 `json:"responses"`
	// ConfigBytes is the mean size of one proxy's complete config: the
	// sum of proto.Size over every resource it has applied.
	ConfigBytes float64 `json:"configBytes"`
	// CPUSeconds is the loader's own user+system CPU time.
	CPUSeconds float64 `json:"cpuSeconds"`
	// Goroutines and HeapMB describe the loader process.
	Goroutines int     `json:"goroutines"`
	HeapMB     float64 `json:"heapMB"`
}

var typeIndex = map[string]int{
	xdsclient.ClusterType: 0, xdsclient.EndpointType: 1, xdsclient.ListenerType: 2, xdsclient.RouteType: 3, xdsclient.SecretType: 4,
}
var typeShort = [5]string{"CDS", "EDS", "LDS", "RDS", "SDS"}

// loader runs the simulated proxies.
type loader struct {
	cfg     loaderConfig
	log     *slog.Logger
	bundle  []*x509.Certificate
	proxies []*simProxy
	// tokens are the join tokens, by proxy.
	tokens []string

	outMu sync.Mutex
	out   *json.Encoder

	mu           sync.Mutex
	expectations map[int]*expectation
}

// expectation is a change the orchestrator waits for.
type expectation struct {
	cmd      command
	deadline time.Time
	affected int

	mu      sync.Mutex
	applied []int64
	acks    []int64
	sent    bool
}

func runLoader(ctx context.Context, cfg loaderConfig, in io.Reader, out io.Writer, log *slog.Logger) error {
	pemBytes, err := os.ReadFile(cfg.Bundle)
	if err != nil {
		return err
	}
	bundle, err := secrets.ParseBundle(pemBytes)
	if err != nil {
		return err
	}
	var tokens []string
	raw, err := os.ReadFile(cfg.TokenFile)
	if err == nil {
		err = json.Unmarshal(raw, &tokens)
	}
	if err != nil {
		return fmt.Errorf("join tokens: %w", err)
	}
	if len(tokens) != cfg.Layout.Proxies {
		return fmt.Errorf("join tokens: %s holds %d tokens for %d proxies", cfg.TokenFile, len(tokens), cfg.Layout.Proxies)
	}
	l := &loader{cfg: cfg, log: log, bundle: bundle, out: json.NewEncoder(out), expectations: map[int]*expectation{}, tokens: tokens}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Certificates are requested over one shared connection, each request
	// with its proxy's join token (the CA accepts callers without a
	// certificate); each proxy then opens its own mTLS connection for ADS
	// with the certificate it got.
	caTLS := secrets.New(identity.ControlPlane(cfg.TrustDomain), bundle, nil).ClientConfig("", l.allowControlPlane())
	caTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil // no certificate yet: send none
	}
	caConn, err := grpc.NewClient(cfg.XDS, grpc.WithTransportCredentials(credentials.NewTLS(caTLS)))
	if err != nil {
		return err
	}
	defer caConn.Close()
	ca := capb.NewCertificateServiceClient(caConn)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	sem := make(chan struct{}, max(1, cfg.Parallel))
	startCtx, startDone := context.WithTimeout(ctx, cfg.StartTimeout)
	defer startDone()
	var startErr atomic.Value
	var starting sync.WaitGroup
	for p := range cfg.Layout.Proxies {
		sp := newSimProxy(l, p)
		l.proxies = append(l.proxies, sp)
		select {
		case sem <- struct{}{}:
		case <-startCtx.Done():
		}
		if startCtx.Err() != nil {
			break
		}
		starting.Add(1)
		wg.Go(func() {
			released := false
			release := func() {
				if !released {
					released = true
					<-sem
					starting.Done()
				}
			}
			defer release()
			conn, err := sp.connect(startCtx, ca)
			if err != nil {
				startErr.CompareAndSwap(nil, fmt.Errorf("proxy %s: %w", sp.id, err))
				startDone()
				return
			}
			defer conn.Close()
			client := xdsclient.New(xdsclient.Options{Conn: conn, Node: sp.node, Delta: cfg.Delta, Log: log.With("proxy", sp.id)}, sp)
			wg.Go(func() { _ = client.Run(ctx) })
			select {
			case <-sp.syncedCh:
			case <-startCtx.Done():
			}
			release()
			<-ctx.Done()
		})
	}
	starting.Wait()
	if err, _ := startErr.Load().(error); err != nil {
		return err
	}
	if err := startCtx.Err(); err != nil {
		synced := 0
		var example string
		for _, sp := range l.proxies {
			if sp.isSynced() {
				synced++
			} else if example == "" {
				example = sp.describe()
			}
		}
		return fmt.Errorf("only %d of %d proxies synced in %s (e.g. %s)", synced, cfg.Layout.Proxies, cfg.StartTimeout, example)
	}
	l.emit(event{Event: "ready", StartSeconds: time.Since(start).Seconds()})

	wg.Go(func() { l.sweep(ctx) })
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			l.emit(event{Event: "error", Error: "bad command: " + err.Error()})
			continue
		}
		switch c.Op {
		case "expect":
			l.expect(c)
		case "stats":
			l.emit(event{Event: "stats", Stats: l.stats()})
		case "quit":
			return nil
		default:
			l.emit(event{Event: "error", Error: "unknown op " + c.Op})
		}
	}
	return sc.Err()
}

func (l *loader) allowControlPlane() secrets.Authorizer {
	want := identity.ControlPlane(l.cfg.TrustDomain)
	return secrets.AllowIDs(want.TrustDomain, want)
}

func (l *loader) emit(e event) {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if err := l.out.Encode(e); err != nil {
		l.log.Error("writing to the orchestrator", "err", err)
	}
}

// expect registers a change with every proxy that calls its service,
// then confirms, so that the orchestrator applies the change only once
// every proxy watches for it.
func (l *loader) expect(c command) {
	e := &expectation{cmd: c, deadline: time.Now().Add(c.Timeout)}
	callers := l.cfg.Layout.callers(c.Service)
	e.affected = len(callers)
	l.mu.Lock()
	l.expectations[c.ID] = e
	l.mu.Unlock()
	for _, p := range callers {
		sp := l.proxies[p]
		sp.mu.Lock()
		sp.watching = append(sp.watching, e)
		sp.mu.Unlock()
	}
	l.emit(event{Event: "watching", ID: c.ID, Affected: e.affected})
	if e.affected == 0 {
		l.finish(e)
	}
}

// observed records that one proxy applied (at applied) and ACKed (at ack)
// the change of e.
func (l *loader) observed(e *expectation, applied, ack int64) {
	e.mu.Lock()
	if e.sent {
		e.mu.Unlock()
		return
	}
	e.applied = append(e.applied, applied)
	e.acks = append(e.acks, ack)
	complete := len(e.acks) == e.affected
	e.mu.Unlock()
	if complete {
		l.finish(e)
	}
}

// finish reports e, complete or timed out, once.
func (l *loader) finish(e *expectation) {
	e.mu.Lock()
	if e.sent {
		e.mu.Unlock()
		return
	}
	e.sent = true
	ev := event{Event: "done", ID: e.cmd.ID, Affected: e.affected, Acked: len(e.acks), Applied: e.applied, Acks: e.acks}
	e.mu.Unlock()
	l.mu.Lock()
	delete(l.expectations, e.cmd.ID)
	l.mu.Unlock()
	l.emit(ev)
}

// sweep reports expectations whose deadline passed.
func (l *loader) sweep(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.mu.Lock()
			var late []*expectation
			for _, e := range l.expectations {
				if now.After(e.deadline) {
					late = append(late, e)
				}
			}
			l.mu.Unlock()
			for _, e := range late {
				l.finish(e)
			}
		}
	}
}

func (l *loader) stats() *loaderStats {
	s := &loaderStats{Proxies: len(l.proxies), Bytes: map[string]int64{}, Responses: map[string]int64{}}
	var config int64
	for _, sp := range l.proxies {
		if sp.isSynced() {
			s.Synced++
		}
		for i, name := range typeShort {
			s.Bytes[name] += sp.bytes[i].Load()
			s.Responses[name] += sp.responses[i].Load()
		}
		config += sp.configBytes()
	}
	if len(l.proxies) > 0 {
		s.ConfigBytes = float64(config) / float64(len(l.proxies))
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.CPUSeconds = tv(ru.Utime) + tv(ru.Stime)
	}
	s.Goroutines, s.HeapMB = runtimeStats()
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// simProxy is one simulated sidecar: a real ADS client over its own mTLS
// connection whose Handler records what it is sent instead of serving it.
type simProxy struct {
	l         *loader
	id        string
	upstreams int
	node      *corev3.Node
	meta      nodemeta.Metadata
	ident     identity.ID
	token     string

	bytes, responses [5]atomic.Int64

	mu sync.Mutex
	// applied is the config in force, by type and name.
	applied map[string]map[string]proto.Message
	// names are the resources of non-wildcard types the config needs.
	names map[string][]string
	// nonce is the nonce of the last response received, by type.
	nonce map[string]string
	// watching are the changes this proxy has not applied yet; pending
	// those it applied and has not ACKed yet.
	watching []*expectation
	pending  []pendingAck
	synced   bool
	syncedCh chan struct{}
}

type pendingAck struct {
	e       *expectation
	typeURL string
	nonce   string
	applied int64
}

var _ xdsclient.Handler = (*simProxy)(nil)

func newSimProxy(l *loader, p int) *simProxy {
	lay := l.cfg.Layout
	ns := lay.proxyNamespace(p)
	meta := nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: lay.proxyName(p), Namespace: ns, ServiceAccount: lay.proxyName(p),
		Address: proxyAddress(p), Labels: map[string]string{"app": "bench-client"},
		OutboundAddress: "127.0.0.1", Version: "bench",
	}
	for k, s := range lay.upstreams(p) {
		key := lay.service(s)
		meta.Upstreams = append(meta.Upstreams, nodemeta.Upstream{Service: key.Name, Namespace: key.Namespace, Port: 80, LocalPort: uint32(10001 + k)})
	}
	return &simProxy{
		l: l, id: lay.proxyID(p), upstreams: len(meta.Upstreams), meta: meta,
		ident:    identity.ID{TrustDomain: l.cfg.TrustDomain, Namespace: ns, ServiceAccount: meta.ServiceAccount},
		token:    l.tokens[p],
		applied:  map[string]map[string]proto.Message{},
		names:    map[string][]string{xdsclient.SecretType: {translate.SecretCertificate, translate.SecretTrustBundle}},
		nonce:    map[string]string{},
		syncedCh: make(chan struct{}),
	}
}

// connect gets the proxy's certificate and opens its ADS connection.
func (sp *simProxy) connect(ctx context.Context, ca capb.CertificateServiceClient) (*grpc.ClientConn, error) {
	md, err := sp.meta.Encode()
	if err != nil {
		return nil, err
	}
	sp.node = &corev3.Node{Id: sp.id, Cluster: sp.meta.Namespace, Metadata: md, UserAgentName: "trellis-bench"}
	m := secrets.New(sp.ident, sp.l.bundle, nil)
	issuer := secrets.IssuerFunc(func(ctx context.Context, csr []byte) ([][]byte, []*x509.Certificate, error) {
		resp, err := ca.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: string(csr), NodeId: sp.id, Token: sp.token})
		if err != nil {
			return nil, nil, err
		}
		// The simulated proxies keep the bundle they started with.
		chain, _, err := secrets.ParseIssued(resp.GetCertChain(), nil)
		return chain, nil, err
	})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Renew(cctx, issuer); err != nil {
		return nil, err
	}
	return grpc.NewClient(sp.l.cfg.XDS,
		grpc.WithTransportCredentials(credentials.NewTLS(m.ClientConfig("", sp.l.allowControlPlane()))),
		grpc.WithStreamInterceptor(sp.intercept))
}

// intercept observes the ADS stream: the size of every response, and the
// moment each ACK is handed to gRPC.
func (sp *simProxy) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &observedStream{ClientStream: cs, sp: sp}, nil
}

type observedStream struct {
	grpc.ClientStream
	sp *simProxy
}

func (s *observedStream) RecvMsg(m any) error {
	if err := s.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	switch r := m.(type) {
	case *discoveryv3.DiscoveryResponse:
		s.sp.received(r.GetTypeUrl(), r.GetNonce(), proto.Size(r))
	case *discoveryv3.DeltaDiscoveryResponse:
		s.sp.received(r.GetTypeUrl(), r.GetNonce(), proto.Size(r))
	}
	return nil
}

func (s *observedStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil {
		return err
	}
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		if r.GetErrorDetail() == nil {
			s.sp.acked(r.GetTypeUrl(), r.GetResponseNonce())
		}
	case *discoveryv3.DeltaDiscoveryRequest:
		if r.GetErrorDetail() == nil {
			s.sp.acked(r.GetTypeUrl(), r.GetResponseNonce())
		}
	}
	return nil
}

func (sp *simProxy) received(typeURL, nonce string, size int) {
	if i, ok := typeIndex[typeURL]; ok {
		sp.bytes[i].Add(int64(size))
		sp.responses[i].Add(1)
	}
	sp.mu.Lock()
	sp.nonce[typeURL] = nonce
	sp.mu.Unlock()
}

func (sp *simProxy) acked(typeURL, nonce string) {
	if nonce == "" {
		return
	}
	now := time.Now().UnixNano()
	sp.mu.Lock()
	var done []pendingAck
	sp.pending = slices.DeleteFunc(sp.pending, func(p pendingAck) bool {
		if p.typeURL == typeURL && p.nonce == nonce {
			done = append(done, p)
			return true
		}
		return false
	})
	sp.mu.Unlock()
	for _, p := range done {
		sp.l.observed(p.e, p.applied, now)
	}
}

// Apply records the config of one type, derives the names of the
// resources it needs, and checks the changes being watched for.
func (sp *simProxy) Apply(typeURL string, resources map[string]proto.Message) error {
	now := time.Now().UnixNano()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.applied[typeURL] = resources
	switch typeURL {
	case xdsclient.ClusterType:
		var names []string
		for name, m := range resources {
			c := m.(*clusterv3.Cluster)
			if c.GetType() == clusterv3.Cluster_EDS {
				names = append(names, cmpOr(c.GetEdsClusterConfig().GetServiceName(), name))
			}
		}
		slices.Sort(names)
		sp.names[xdsclient.EndpointType] = names
	case xdsclient.ListenerType:
		var names []string
		for _, m := range resources {
			for _, fc := range m.(*listenerv3.Listener).GetFilterChains() {
				for _, f := range fc.GetFilters() {
					var hcm hcmv3.HttpConnectionManager
					if tc := f.GetTypedConfig(); tc != nil && tc.MessageIs(&hcm) && tc.UnmarshalTo(&hcm) == nil {
						if rds := hcm.GetRds().GetRouteConfigName(); rds != "" {
							names = append(names, rds)
						}
					}
				}
			}
		}
		slices.Sort(names)
		sp.names[xdsclient.RouteType] = slices.Compact(names)
	}
	if len(sp.watching) > 0 {
		nonce := sp.nonce[typeURL]
		sp.watching = slices.DeleteFunc(sp.watching, func(e *expectation) bool {
			if !e.matches(typeURL, resources) {
				return false
			}
			sp.pending = append(sp.pending, pendingAck{e: e, typeURL: typeURL, nonce: nonce, applied: now})
			return true
		})
	}
	if !sp.synced && sp.completeLocked() {
		sp.synced = true
		close(sp.syncedCh)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Names are the resources of a non-wildcard type the config needs.
func (sp *simProxy) Names(typeURL string) []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.names[typeURL])
}

// completeLocked tells whether the proxy has its whole config: a
// listener, route, cluster and endpoints for every upstream, with every
// endpoint of each, and both secrets.
func (sp *simProxy) completeLocked() bool {
	n := sp.upstreams
	if len(sp.applied[xdsclient.ListenerType]) != n || len(sp.applied[xdsclient.RouteType]) != n ||
		len(sp.applied[xdsclient.ClusterType]) != n || len(sp.applied[xdsclient.EndpointType]) != n ||
		len(sp.applied[xdsclient.SecretType]) != 2 {
		return false
	}
	for _, m := range sp.applied[xdsclient.EndpointType] {
		if countEndpoints(m.(*endpointv3.ClusterLoadAssignment)) != sp.l.cfg.Layout.Endpoints {
			return false
		}
	}
	return true
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, le := range cla.GetEndpoints() {
		n += len(le.GetLbEndpoints())
	}
	return n
}

func (sp *simProxy) isSynced() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.synced
}

func (sp *simProxy) describe() string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	s := sp.id + " has"
	for _, t := range []string{xdsclient.ListenerType, xdsclient.RouteType, xdsclient.ClusterType, xdsclient.EndpointType, xdsclient.SecretType} {
		s += fmt.Sprintf(" %s:%d", typeShort[typeIndex[t]], len(sp.applied[t]))
	}
	return s + fmt.Sprintf(", wants %d of each but SDS", sp.upstreams)
}

func (sp *simProxy) configBytes() int64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var n int64
	for _, res := range sp.applied {
		for _, m := range res {
			n += int64(proto.Size(m))
		}
	}
	return n
}

// matches tells whether config of typeURL shows the change of e.
func (e *expectation) matches(typeURL string, resources map[string]proto.Message) bool {
	switch e.cmd.Kind {
	case "route":
		if typeURL != xdsclient.RouteType {
			return false
		}
		// The marker is unique and of fixed width: finding its bytes in
		// the encoded route is finding it in a header match.
		for _, m := range resources {
			b, err := proto.Marshal(m)
			if err == nil && bytes.Contains(b, []byte(e.cmd.Value)) {
				return true
			}
		}
	case "endpoint":
		if typeURL != xdsclient.EndpointType {
			return false
		}
		for _, m := range resources {
			for _, le := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
				for _, ep := range le.GetLbEndpoints() {
					if ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == e.cmd.Value {
						return true
					}
				}
			}
		}
	}
	return false
}
