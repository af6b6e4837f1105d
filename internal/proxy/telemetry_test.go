package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"

	"fmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"trellis.dev/trellis/internal/nodemeta"
)

// lockedBuffer is an access log destination for tests.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines decodes the access log lines written so far.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(l.b.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func withAccessLog(w io.Writer) func(*Options) { return func(o *Options) { o.AccessLog = w } }

func metricsText(t *testing.T, p *Proxy) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.statsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	if rec.Code != 200 {
		t.Fatalf("/stats/prometheus: %d", rec.Code)
	}
	return rec.Body.String()
}

// TestRequestTelemetry: a request is counted with Istio's labels, logged
// as a JSON line, and carries a traceparent: the caller's trace id with
// the proxy's own span, or a new trace. The backend is plaintext: workload
// names are not exchanged with it (bench/dataplane's test checks them
// between two sidecars over mesh mTLS).
func TestRequestTelemetry(t *testing.T) {
	var seen sync.Map // path -> traceparent the backend got
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.Path, r.Header.Get("Traceparent"))
		if v := r.Header.Get(headerPeer); v != "" {
			t.Errorf("a plaintext backend got %s %q", headerPeer, v)
		}
		w.Header().Set(headerPeer, "server")
		io.WriteString(w, strings.Repeat("x", 1000))
	}))
	t.Cleanup(backend.Close)
	log := &lockedBuffer{}
	b := &lbBackend{srv: backend}
	tb := newTestBed(t, bedOptions{cla: assignmentOf("c", []*lbBackend{b}), opts: []func(*Options){withAccessLog(log)}})

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	code, body, hdr := tb.get(t, "/traced", "Traceparent: "+parent)
	if code != 200 || len(body) != 1000 {
		t.Fatalf("GET: %d, %d bytes", code, len(body))
	}
	if hdr.Get(headerPeer) != "" {
		t.Errorf("the response still carries %s", headerPeer)
	}
	if code, _, _ := tb.get(t, "/untraced"); code != 200 {
		t.Fatal(code)
	}
	got, _ := seen.Load("/traced")
	tp := got.(string)
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") || !strings.HasSuffix(tp, "-01") {
		t.Errorf("forwarded traceparent %q: want the same trace, a new span id, flags 01", tp)
	}
	got, _ = seen.Load("/untraced")
	var tc traceContext
	if !parseTraceparent(got.(string), &tc) {
		t.Errorf("a request without traceparent was forwarded with %q, want a new valid one", got)
	}

	text := metricsText(t, tb.p)
	labels := `reporter="source",source_workload="t",source_workload_namespace="ns",source_principal="spiffe://cluster.local/ns/ns/sa/sa",` +
		`destination_workload="unknown",destination_workload_namespace="unknown",destination_principal="unknown",destination_service="127.0.0.1",` +
		`response_code="200",grpc_response_status="",response_flags="-"`
	for _, want := range []string{
		"trellis_requests_total{" + labels + "} 2\n",
		"trellis_request_duration_milliseconds_count{" + labels + "} 2\n",
		"trellis_response_bytes_bucket{" + labels + `,le="1000"} 2` + "\n",
		"trellis_response_bytes_sum{" + labels + "} 2000\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}

	lines := log.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2", len(lines))
	}
	l := lines[0]
	for k, want := range map[string]any{
		"reporter": "source", "method": "GET", "path": "/traced", "response_code": float64(200), "response_flags": "-", "reason": "",
		"bytes_sent": float64(1000), "upstream_cluster": "c", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_span_id": "00f067aa0ba902b7",
		"destination_workload": "unknown", "source_principal": "spiffe://cluster.local/ns/ns/sa/sa",
	} {
		if l[k] != want {
			t.Errorf("access log %s = %v, want %v", k, l[k], want)
		}
	}
	if _, ok := lines[1]["parent_span_id"]; ok {
		t.Errorf("a trace the proxy started has a parent span: %v", lines[1])
	}
}

// TestFailureReasons: requests that fail say why, in the access log and
// in the metrics' response_flags.
func TestFailureReasons(t *testing.T) {
	log := &lockedBuffer{}
	dead := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEPAddr(t, deadAddr(t))}}}}
	tb := newTestBed(t, bedOptions{cla: dead, opts: []func(*Options){withAccessLog(log)}})
	if code, _, _ := tb.get(t, "/"); code != 503 {
		t.Fatalf("dead endpoint: %d", code)
	}
	tb2 := newTestBed(t, bedOptions{cla: &endpointv3.ClusterLoadAssignment{ClusterName: "c"}, opts: []func(*Options){withAccessLog(log)}})
	if code, _, _ := tb2.get(t, "/"); code != 503 {
		t.Fatalf("no endpoints: %d", code)
	}
	var reasons []string
	for _, l := range log.lines(t) {
		reasons = append(reasons, l["response_flags"].(string)+" "+l["reason"].(string))
	}
	if want := []string{"UF upstream_connect_failure", "UH no_healthy_upstream"}; strings.Join(reasons, "; ") != strings.Join(want, "; ") {
		t.Errorf("reasons %q, want %q", reasons, want)
	}
	if text := metricsText(t, tb.p); !strings.Contains(text, `response_code="503",grpc_response_status="",response_flags="UF"} 1`) {
		t.Errorf("metrics lack the UF request:\n%s", text)
	}

	// A fault abort.
	fb, _ := faultBed(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 418}}})
	if code, _, _ := fb.get(t, "/faulty"); code != 418 {
		t.Fatal(code)
	}
	if text := metricsText(t, fb.p); !strings.Contains(text, `response_code="418",grpc_response_status="",response_flags="FI"} 1`) {
		t.Errorf("metrics lack the FI request:\n%s", text)
	}
}

func lbEPAddr(t *testing.T, addr string) *endpointv3.LbEndpoint {
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return lbEP(host, uint32(n))
}

// TestStatsPort: probes are forwarded to the app's declared ports only,
// and the app's metrics follow the proxy's.
func TestStatsPort(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if r.Header.Get("X-Probe") != "kubelet" {
				w.WriteHeader(500)
			}
			io.WriteString(w, "ok "+r.URL.RawQuery)
		case "/metrics":
			io.WriteString(w, "# TYPE app_things_total counter\napp_things_total 7\n")
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(app.Close)
	host, portStr, _ := net.SplitHostPort(app.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	p := testProxy(t, func(o *Options) {
		o.Registration.AppAddress = host
		o.Registration.Ports = []nodemeta.Port{{Name: "http", Port: uint32(port), Protocol: "HTTP"}}
		o.AppMetricsURL = app.URL + "/metrics"
	})
	get := func(path string, hdr ...string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		for _, h := range hdr {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		p.statsHandler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/app-health/"+portStr+"/healthz?x=1", "X-Probe: kubelet"); code != 200 || body != "ok x=1" {
		t.Errorf("probe: %d %q", code, body)
	}
	if code, _ := get("/app-health/" + portStr + "/missing"); code != 404 {
		t.Errorf("probe of a missing path: %d, want the app's 404", code)
	}
	if code, _ := get("/app-health/1/healthz"); code != 404 {
		t.Errorf("probe of an undeclared port: %d, want 404", code)
	}
	_, text := get("/stats/prometheus")
	if i, j := strings.Index(text, "trellis_rbac_decisions_total"), strings.Index(text, "app_things_total 7"); i < 0 || j < i {
		t.Errorf("want the proxy's metrics, then the app's:\n%s", text)
	}
	if code, _ := get("/healthz/ready"); code != 503 {
		t.Errorf("ready before any config: %d", code)
	}
}

func TestParseTraceparent(t *testing.T) {
	for in, ok := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra":  false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":        false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":        false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":           false,
		"": false,
	} {
		var tc traceContext
		if got := parseTraceparent(in, &tc); got != ok {
			t.Errorf("parseTraceparent(%q) = %v, want %v", in, got, ok)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"b\s`, "ctl\x00\x1f\x7f", "ünï", "bad\xff"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Errorf("%q: %v", s, err)
		}
		if s != "bad\xff" && back != s {
			t.Errorf("%q came back as %q", s, back)
		}
	}
}

// TestTCPAndGRPCProbes: tcpSocket and grpc probes, rewritten to the stats
// port, open a connection to the app's port and ask its gRPC health
// service.
func TestTCPAndGRPCProbes(t *testing.T) {
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(grpcLn)
	t.Cleanup(gs.Stop)
	// A port that was declared but where nothing listens.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	grpcPort := grpcLn.Addr().(*net.TCPAddr).Port
	p := testProxy(t, func(o *Options) {
		o.Registration.AppAddress = "127.0.0.1"
		o.Registration.Ports = []nodemeta.Port{{Name: "grpc", Port: uint32(grpcPort), Protocol: "GRPC"}, {Name: "tcp", Port: uint32(closedPort), Protocol: "TCP"}}
	})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		p.statsHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{fmt.Sprintf("/app-tcp/%d", grpcPort), 200},
		{fmt.Sprintf("/app-tcp/%d", closedPort), 503},
		{"/app-tcp/1", 404},
		{fmt.Sprintf("/app-grpc/%d", grpcPort), 200},
		{fmt.Sprintf("/app-grpc/%d/shop.Cart", grpcPort), 503},
		{fmt.Sprintf("/app-grpc/%d/shop.Unknown", grpcPort), 503},
		{fmt.Sprintf("/app-grpc/%d", closedPort), 503},
	} {
		if code, body := get(tc.path); code != tc.want {
			t.Errorf("GET %s: %d %q, want %d", tc.path, code, body, tc.want)
		}
	}
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_SERVING)
	if code, body := get(fmt.Sprintf("/app-grpc/%d/shop.Cart", grpcPort)); code != 200 {
		t.Errorf("a service back to SERVING: %d %q", code, body)
	}
}
