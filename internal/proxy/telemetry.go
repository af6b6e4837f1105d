package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis.dev/trellis/internal/proxy/stats"
)

// Telemetry: every request and TCP connection is counted in Istio's
// standard metrics (named trellis_*, served on the stats port, stats.go),
// logged as one JSON line (accesslog.go) and carries a W3C trace context
// (trace.go).
//
//	serveHTTP ──► httpRecord (pooled: wraps the ResponseWriter, counts bytes,
//	   │          keeps the status, flags and trace context)
//	   └─ end ──► requestSeries (cached per label set: counters and
//	              histograms updated with atomics) and an access log line
//
// Labels say who called whom. The reporter is "destination" on a
// sidecar's inbound listeners and "source" everywhere else (outbound
// listeners, gateways). The proxy knows its own workload; the peer's is
// learnt from the mesh: the caller's principal from its certificate, and
// the workload names from the X-Trellis-Peer header that sidecars add to
// requests (outbound) and responses (inbound) and remove on the other side
// (Istio's metadata exchange, reduced to the workload name).

// headerPeer carries the sending proxy's workload name between sidecars.
const headerPeer = "X-Trellis-Peer"

// unknown is the value of a label the proxy cannot know.
const unknown = "unknown"

// peer is one side of a request.
type peer struct {
	workload, namespace, principal string
}

// requestKey is the label set of one request series.
type requestKey struct {
	reporter string
	src, dst peer
	service  string
	code     int
	grpc     string
	flags    respFlags
}

// requestSeries are the metrics of one label set.
type requestSeries struct {
	total             *stats.Counter
	duration          *stats.Histogram
	reqSize, respSize *stats.Histogram
}

// tcpKey is the label set of one TCP series.
type tcpKey struct {
	reporter string
	src, dst peer
	service  string
	flags    respFlags
}

type tcpSeries struct {
	opened, closed, sent, received *stats.Counter
}

// Istio's buckets: milliseconds, and bytes by powers of ten.
var (
	durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	sizeBuckets     = []float64{1, 10, 100, 1000, 10000, 100000, 1e6, 1e7, 1e8, 1e9}
)

var requestLabels = []string{"reporter", "source_workload", "source_workload_namespace", "source_principal",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_service",
	"response_code", "grpc_response_status", "response_flags"}

var tcpLabels = []string{"reporter", "source_workload", "source_workload_namespace", "source_principal",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_service",
	"response_flags"}

// telemetry holds a proxy's metrics and access log.
type telemetry struct {
	reg  stats.Registry
	self peer
	log  *accessLog // nil: no access log

	requests                    stats.CounterVec
	duration, reqSize, respSize stats.HistogramVec
	tcpOpened, tcpClosed        stats.CounterVec
	tcpSent, tcpReceived        stats.CounterVec

	mu  sync.RWMutex
	req map[requestKey]*requestSeries
	tcp map[tcpKey]*tcpSeries
}

func newTelemetry(self peer, log *accessLog) *telemetry {
	t := &telemetry{self: self, log: log, req: map[requestKey]*requestSeries{}, tcp: map[tcpKey]*tcpSeries{}}
	t.requests = t.reg.Counter("trellis_requests_total", "Requests, by source, destination and response.", requestLabels...)
	t.duration = t.reg.Histogram("trellis_request_duration_milliseconds", "Request durations, from the request's arrival to the end of the response.", durationBuckets, requestLabels...)
	t.reqSize = t.reg.Histogram("trellis_request_bytes", "Request body sizes.", sizeBuckets, requestLabels...)
	t.respSize = t.reg.Histogram("trellis_response_bytes", "Response body sizes.", sizeBuckets, requestLabels...)
	t.tcpOpened = t.reg.Counter("trellis_tcp_connections_opened_total", "TCP connections opened.", tcpLabels...)
	t.tcpClosed = t.reg.Counter("trellis_tcp_connections_closed_total", "TCP connections closed.", tcpLabels...)
	t.tcpSent = t.reg.Counter("trellis_tcp_sent_bytes_total", "Bytes sent to the downstream on TCP connections.", tcpLabels...)
	t.tcpReceived = t.reg.Counter("trellis_tcp_received_bytes_total", "Bytes received from the downstream on TCP connections.", tcpLabels...)
	return t
}

// requestSeriesFor returns the series of k, created on first use.
func (t *telemetry) requestSeriesFor(k requestKey) *requestSeries {
	t.mu.RLock()
	s := t.req[k]
	t.mu.RUnlock()
	if s != nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s = t.req[k]; s != nil {
		return s
	}
	v := []string{k.reporter, k.src.workload, k.src.namespace, k.src.principal, k.dst.workload, k.dst.namespace, k.dst.principal,
		k.service, strconv.Itoa(k.code), k.grpc, k.flags.String()}
	s = &requestSeries{total: t.requests.With(v...), duration: t.duration.With(v...), reqSize: t.reqSize.With(v...), respSize: t.respSize.With(v...)}
	t.req[k] = s
	return s
}

func (t *telemetry) tcpSeriesFor(k tcpKey) *tcpSeries {
	t.mu.RLock()
	s := t.tcp[k]
	t.mu.RUnlock()
	if s != nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s = t.tcp[k]; s != nil {
		return s
	}
	v := []string{k.reporter, k.src.workload, k.src.namespace, k.src.principal, k.dst.workload, k.dst.namespace, k.dst.principal,
		k.service, k.flags.String()}
	s = &tcpSeries{opened: t.tcpOpened.With(v...), closed: t.tcpClosed.With(v...), sent: t.tcpSent.With(v...), received: t.tcpReceived.With(v...)}
	t.tcp[k] = s
	return s
}

// selfPeer names the proxy's own workload: its app.kubernetes.io/name or
// app label, else its name.
func selfPeer(name, namespace, principal string, labels map[string]string) peer {
	w := name
	if v := labels["app.kubernetes.io/name"]; v != "" {
		w = v
	} else if v := labels["app"]; v != "" {
		w = v
	}
	return peer{workload: w, namespace: namespace, principal: principal}
}

// connPeer is the downstream peer of a connection, computed once.
type connPeer struct {
	once sync.Once
	p    peer
}

type connPeerKey struct{}

// withConnPeer gives a connection's requests a place for their peer.
func withConnPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, connPeerKey{}, &connPeer{})
}

// downstreamPeer is the principal and namespace of the client
// certificate of a mesh mTLS connection; unknown without one.
func downstreamPeer(ctx context.Context, cs *tls.ConnectionState) peer {
	compute := func() peer {
		p := peer{workload: unknown, namespace: unknown, principal: unknown}
		if cs == nil || len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) == 0 {
			return p
		}
		u := cs.PeerCertificates[0].URIs[0]
		p.principal = u.String()
		if rest, ok := strings.CutPrefix(u.Path, "/ns/"); ok {
			if ns, _, ok := strings.Cut(rest, "/sa/"); ok {
				p.namespace = ns
			}
		}
		return p
	}
	cp, _ := ctx.Value(connPeerKey{}).(*connPeer)
	if cp == nil {
		return compute()
	}
	cp.once.Do(func() { cp.p = compute() })
	return cp.p
}

// serviceOf is the destination service of a request: BlackHoleCluster or
// PassthroughCluster for what a capture listener refused or passed
// through (as Istio names them), the host of an
// outbound cluster name (outbound|PORT||HOST), else the host of the
// mesh SNI (outbound_.PORT_._.HOST), else the request's authority without
// its port.
func serviceOf(cluster, serverName, authority string) string {
	if isCaptureCluster(cluster) {
		return cluster
	}
	if strings.HasPrefix(cluster, "outbound|") {
		if i := strings.LastIndexByte(cluster, '|'); i >= 0 && i+1 < len(cluster) {
			return cluster[i+1:]
		}
	}
	// An east-west gateway's clusters are named by the SNI they serve.
	if serverName == "" && strings.HasPrefix(cluster, "outbound_.") {
		serverName = cluster
	}
	if strings.HasPrefix(serverName, "outbound_.") {
		if i := strings.Index(serverName, "_._."); i >= 0 {
			return serverName[i+4:]
		}
	}
	if host, _, err := net.SplitHostPort(authority); err == nil {
		return host
	}
	if authority == "" {
		return unknown
	}
	return authority
}

// namespaceOfService is the namespace of a Kubernetes-style service host
// (NAME.NAMESPACE.svc...), unknown otherwise.
func namespaceOfService(host string) string {
	_, rest, ok := strings.Cut(host, ".")
	if !ok || net.ParseIP(host) != nil {
		return unknown
	}
	ns, _, _ := strings.Cut(rest, ".")
	if ns == "" {
		return unknown
	}
	return ns
}

// isInbound reports whether a listener receives mesh traffic for the
// sidecar's own workload.
func isInbound(listenerName string) bool { return strings.HasPrefix(listenerName, "inbound") }

// httpRecord follows one request through the connection manager: it is the
// ResponseWriter the filters and the router write to. Records are pooled.
type httpRecord struct {
	w     http.ResponseWriter
	s     httpStream
	start time.Time

	code        int
	wroteHeader bool
	written     int64
	cluster     string
	peerHeader  string // X-Trellis-Peer of the response
	inbound     bool
	trace       traceContext
	// body counts a request body of unknown length; nil otherwise.
	body *countingBody
}

var recordPool = sync.Pool{New: func() any { return new(httpRecord) }}

func (r *httpRecord) Header() http.Header { return r.w.Header() }

func (r *httpRecord) WriteHeader(code int) {
	// 101 Switching Protocols is final too: the connection is the
	// upgraded protocol's from then on.
	if !r.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.code, r.wroteHeader = code, true
		if r.inbound {
			// The caller's sidecar learns who answered.
			r.w.Header().Set(headerPeer, r.s.p.tel.self.workload)
		}
	}
	r.w.WriteHeader(code)
}

func (r *httpRecord) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.w.Write(b)
	r.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController (ReverseProxy's flushes, upgrades)
// reach the connection's writer.
func (r *httpRecord) Unwrap() http.ResponseWriter { return r.w }

// Flush sends what was written so far.
func (r *httpRecord) Flush() { _ = http.NewResponseController(r.w).Flush() }

// end records the finished request in the metrics and the access log.
func (t *telemetry) end(rec *httpRecord, req *http.Request, serverName string) {
	elapsed := time.Since(rec.start)
	code := rec.code
	if !rec.wroteHeader {
		code = 0 // nothing was answered: the client went away
		rec.s.flags |= flagDownstreamTerminated
	}
	k := requestKey{code: code, flags: rec.s.flags, service: serviceOf(rec.cluster, serverName, req.Host)}
	if rec.inbound {
		k.reporter = "destination"
		k.src = downstreamPeer(req.Context(), req.TLS)
		if k.src.principal != unknown && rec.s.peerIn != "" {
			k.src.workload = rec.s.peerIn
		}
		k.dst = t.self
	} else {
		k.reporter = "source"
		k.src = t.self
		k.dst = peer{workload: unknown, namespace: namespaceOfService(k.service), principal: unknown}
		if rec.peerHeader != "" {
			k.dst.workload = rec.peerHeader
		}
	}
	h := rec.w.Header()
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "application/grpc") {
		k.grpc = h.Get("Grpc-Status")
		if k.grpc == "" {
			k.grpc = h.Get(http.TrailerPrefix + "Grpc-Status")
		}
	}
	reqBytes := req.ContentLength
	if rec.body != nil {
		reqBytes = rec.body.n.Load()
	}
	s := t.requestSeriesFor(k)
	s.total.Inc()
	s.duration.Observe(float64(elapsed) / float64(time.Millisecond))
	s.reqSize.Observe(float64(max(reqBytes, 0)))
	s.respSize.Observe(float64(rec.written))
	if t.log != nil {
		t.log.request(rec, req, &k, elapsed, reqBytes)
	}
}

// tcpOpen counts a TCP connection the listener proxies and returns its
// label set, for tcpClose.
func (t *telemetry) tcpOpen(l *listener, down net.Conn, cluster string) tcpKey {
	k := t.tcpKey(l, down, cluster)
	t.tcpSeriesFor(k).opened.Inc()
	return k
}

// tcpClose records a proxied TCP connection when it ended.
func (t *telemetry) tcpClose(k tcpKey, down net.Conn, cluster, upstream string, start time.Time, received, sent int64, flags respFlags) {
	k.flags = flags
	s := t.tcpSeriesFor(k)
	s.closed.Inc()
	s.received.Add(uint64(received))
	s.sent.Add(uint64(sent))
	if t.log != nil {
		t.log.tcp(&k, down, cluster, upstream, start, received, sent)
	}
}

// tcpDenied records a TCP connection closed by a network RBAC filter.
func (t *telemetry) tcpDenied(l *listener, down net.Conn, tp *tcpProxy) {
	k := t.tcpOpen(l, down, tp.cluster)
	t.tcpClose(k, down, tp.cluster, "", time.Now(), 0, 0, flagDeniedRBAC)
}

func (t *telemetry) tcpKey(l *listener, down net.Conn, cluster string) tcpKey {
	k := tcpKey{service: serviceOf(cluster, "", "")}
	var cs *tls.ConnectionState
	if tc, ok := down.(*tls.Conn); ok {
		st := tc.ConnectionState()
		cs = &st
		if k.service == unknown {
			k.service = serviceOf("", st.ServerName, "")
		}
	}
	if isInbound(l.name) {
		k.reporter = "destination"
		k.src = downstreamPeer(context.Background(), cs)
		k.dst = t.self
	} else {
		k.reporter = "source"
		k.src = t.self
		k.dst = peer{workload: unknown, namespace: namespaceOfService(k.service), principal: unknown}
	}
	return k
}
