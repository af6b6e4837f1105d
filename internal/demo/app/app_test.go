package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/xfcc"
)

func spiffe(sa string) string { return "spiffe://cluster.local/ns/demo/sa/" + sa }

// xfccFor is the header a sidecar serving self sets for a caller.
func xfccFor(self, caller string) string {
	sum := sha256.Sum256([]byte("leaf of " + caller))
	return xfcc.Element{By: []string{spiffe(self)}, Hash: hex.EncodeToString(sum[:]), URI: []string{spiffe(caller)}}.String()
}

// sidecar stands in for the inbound side of a Trellis sidecar: it replaces
// x-forwarded-client-cert as SANITIZE_SET does and records request ids.
type sidecar struct {
	next   http.Handler
	header string // "" removes the header

	mu     sync.Mutex
	reqIDs []string
}

func (s *sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqIDs = append(s.reqIDs, r.Header.Get(RequestIDHeader))
	s.mu.Unlock()
	r.Header.Del(xfcc.Header)
	if s.header != "" {
		r.Header.Set(xfcc.Header, s.header)
	}
	s.next.ServeHTTP(w, r)
}

func (s *sidecar) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqIDs...)
}

type mesh struct {
	web, catalog, reviews *httptest.Server
	sidecars              []*sidecar // web, catalog, reviews
}

// newMesh wires web → catalog → reviews v2, each behind a fake sidecar.
func newMesh(t *testing.T) *mesh {
	t.Helper()
	m := &mesh{}
	serve := func(opts Options, header string) *httptest.Server {
		sc := &sidecar{next: Handler(opts, nil), header: header}
		m.sidecars = append([]*sidecar{sc}, m.sidecars...)
		srv := httptest.NewServer(sc)
		t.Cleanup(srv.Close)
		return srv
	}
	m.reviews = serve(Options{Service: "reviews", Version: "v2", Namespace: "demo", Workload: "reviews-v2"},
		xfccFor("reviews", "catalog"))
	m.catalog = serve(Options{Service: "catalog", Version: "v1", Namespace: "demo", Workload: "catalog-1", Next: m.reviews.URL},
		xfccFor("catalog", "web"))
	m.web = serve(Options{Service: "web", Version: "v1", Namespace: "demo", Workload: "web-1", Next: m.catalog.URL + "/"},
		xfccFor("web", "ingress"))
	return m
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func getChain(t *testing.T, url string, header ...string) (*http.Response, Chain) {
	t.Helper()
	resp, body := get(t, url, append([]string{"Accept", "application/json"}, header...)...)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, body:\n%s", ct, body)
	}
	var c Chain
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return resp, c
}

func TestChainText(t *testing.T) {
	m := newMesh(t)
	resp, body := get(t, m.web.URL+"/some/page")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s, body:\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	want := `Trellis demo: the request crossed 3 services, each hop over mTLS
  1. web v1 (demo/web-1)
     caller verified by web's sidecar: spiffe://cluster.local/ns/demo/sa/ingress
  2. catalog v1 (demo/catalog-1)
     caller verified by catalog's sidecar: spiffe://cluster.local/ns/demo/sa/web
  3. reviews v2 (demo/reviews-v2)
     caller verified by reviews's sidecar: spiffe://cluster.local/ns/demo/sa/catalog
`
	if body != want {
		t.Errorf("got:\n%s\nwant:\n%s", body, want)
	}
}

func TestChainJSON(t *testing.T) {
	m := newMesh(t)
	for _, tc := range []struct {
		name   string
		url    string
		header []string
	}{
		{"accept", m.web.URL, []string{"Accept", "text/html, application/json;q=0.9"}},
		{"query", m.web.URL + "/?format=json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.url, tc.header...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %q:\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
			}
			var c Chain
			if err := json.Unmarshal([]byte(body), &c); err != nil {
				t.Fatal(err)
			}
			want := []Hop{
				{Service: "web", Version: "v1", Workload: "web-1", Namespace: "demo",
					Caller: spiffe("ingress"), Callee: spiffe("web"), XFCC: xfccFor("web", "ingress")},
				{Service: "catalog", Version: "v1", Workload: "catalog-1", Namespace: "demo",
					Caller: spiffe("web"), Callee: spiffe("catalog"), XFCC: xfccFor("catalog", "web")},
				{Service: "reviews", Version: "v2", Workload: "reviews-v2", Namespace: "demo",
					Caller: spiffe("catalog"), Callee: spiffe("reviews"), XFCC: xfccFor("reviews", "catalog")},
			}
			if c.Error != "" || len(c.Hops) != len(want) {
				t.Fatalf("got %+v", c)
			}
			for i := range want {
				if c.Hops[i] != want[i] {
					t.Errorf("hop %d:\n got %+v\nwant %+v", i+1, c.Hops[i], want[i])
				}
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	m := newMesh(t)
	resp, _ := get(t, m.web.URL, RequestIDHeader, "req-42")
	if got := resp.Header.Get(RequestIDHeader); got != "req-42" {
		t.Errorf("response x-request-id %q", got)
	}
	for i, sc := range m.sidecars {
		if got := sc.seen(); len(got) != 1 || got[0] != "req-42" {
			t.Errorf("sidecar %d saw request ids %q", i, got)
		}
	}
	// Without one, none is made up.
	get(t, m.web.URL)
	if got := m.sidecars[2].seen(); len(got) != 2 || got[1] != "" {
		t.Errorf("reviews' sidecar saw request ids %q", got)
	}
}

func TestNextHopDown(t *testing.T) {
	m := newMesh(t)
	reviewsURL := m.reviews.URL
	m.reviews.Close()

	resp, c := getChain(t, m.web.URL)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %s, want 502", resp.Status)
	}
	if len(c.Hops) != 2 || c.Hops[0].Service != "web" || c.Hops[1].Service != "catalog" {
		t.Errorf("hops %+v, want web and catalog", c.Hops)
	}
	if !strings.Contains(c.Error, "catalog could not reach its next hop") || !strings.Contains(c.Error, reviewsURL) {
		t.Errorf("error %q does not say catalog failed to reach %s", c.Error, reviewsURL)
	}

	resp, body := get(t, m.web.URL)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("text: status %s, want 502", resp.Status)
	}
	for _, want := range []string{
		"Trellis demo: the request crossed 2 services and then failed, each hop over mTLS\n",
		"  2. catalog v1 (demo/catalog-1)\n",
		"  error: catalog could not reach its next hop",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("text lacks %q:\n%s", want, body)
		}
	}
}

func TestNextHopNotAnApp(t *testing.T) {
	// A sidecar with no healthy upstream answers with text, not a chain.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("next hop asked with Accept %q", r.Header.Get("Accept"))
		}
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	}))
	defer up.Close()
	h := Handler(Options{Service: "catalog", Next: up.URL}, up.Client())

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?format=json", nil))
	var c Chain
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusBadGateway || len(c.Hops) != 1 {
		t.Fatalf("%d %+v", rec.Code, c)
	}
	for _, want := range []string{"503 Service Unavailable", `"no healthy upstream"`, up.URL} {
		if !strings.Contains(c.Error, want) {
			t.Errorf("error %q lacks %q", c.Error, want)
		}
	}

	// 200 but not a chain.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>hello</html>")
	}))
	defer bad.Close()
	h = Handler(Options{Service: "catalog", Next: bad.URL}, bad.Client())
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "did not answer with a demo chain") {
		t.Errorf("%d:\n%s", rec.Code, rec.Body)
	}
}

func TestNoXFCC(t *testing.T) {
	h := Handler(Options{Service: "reviews", Version: "v1", Namespace: "demo", Workload: "reviews-v1"}, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	want := `Trellis demo: the request crossed 1 service; no hop had a verified caller
  1. reviews v1 (demo/reviews-v1)
     caller: not verified (no x-forwarded-client-cert)
`
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Errorf("%d:\n%s\nwant:\n%s", rec.Code, rec.Body, want)
	}
}

func TestSomeHopsUnverified(t *testing.T) {
	m := newMesh(t)
	m.sidecars[1].header = "" // catalog's sidecar passes no identity
	_, body := get(t, m.web.URL)
	for _, want := range []string{
		"crossed 3 services; 1 of 3 hops had no verified caller\n",
		"  2. catalog v1 (demo/catalog-1)\n     caller: not verified (no x-forwarded-client-cert)\n",
		"  3. reviews v2 (demo/reviews-v2)\n     caller verified by reviews's sidecar: " + spiffe("catalog") + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("text lacks %q:\n%s", want, body)
		}
	}
}

func TestXFCCParseError(t *testing.T) {
	h := Handler(Options{Service: "reviews"}, nil)
	const bad = `By=spiffe://x;Hash=ab;Subject="unterminated`
	req := httptest.NewRequest(http.MethodGet, "/?format=json", nil)
	req.Header.Set(xfcc.Header, bad)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var c Chain
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	hop := c.Hops[0]
	if hop.Caller != "" || hop.XFCC != bad || !strings.Contains(hop.XFCCError, "unterminated quoted value") {
		t.Errorf("hop %+v", hop)
	}

	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(xfcc.Header, bad)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, want := range []string{
		"no hop had a verified caller",
		"caller: unknown, x-forwarded-client-cert did not parse: xfcc: at byte 30: unterminated quoted value\n",
		`x-forwarded-client-cert: "By=spiffe://x;Hash=ab;Subject=\"unterminated"`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, rec.Body)
		}
	}

	// Parses, but names no caller.
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(xfcc.Header, "Hash=ab;URI=")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if want := `caller: not verified (x-forwarded-client-cert names no URI: "Hash=ab;URI=")`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, rec.Body)
	}
}

func TestLoop(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Handler(Options{Service: "web", Next: srv.URL}, srv.Client()).ServeHTTP(w, r)
	}))
	defer srv.Close()
	start := time.Now()
	resp, c := getChain(t, srv.URL)
	if resp.StatusCode != http.StatusBadGateway || len(c.Hops) != MaxHops ||
		!strings.Contains(c.Error, "does a next hop lead back to an earlier service?") {
		t.Errorf("%s, %d hops, error %q", resp.Status, len(c.Hops), c.Error)
	}
	if d := time.Since(start); d > NextTimeout/2 {
		t.Errorf("loop took %v to fail", d)
	}
}

func TestHealthzAndMethods(t *testing.T) {
	h := Handler(Options{Service: "web", Next: "http://127.0.0.1:1"}, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("healthz: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", rec.Code)
	}
}

func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Service: "reviews", Version: "v1", Listen: addr}) }()

	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err = http.Get("http://" + addr + "/healthz")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		cancel()
		t.Fatalf("app never answered: %v (Run: %v)", err, <-done)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s", resp.Status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(ShutdownTimeout + time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{Listen: "127.0.0.1:0"},
		{Service: "web"},
		{Service: "web", Listen: "127.0.0.1:0", Next: "127.0.0.1:15001"},
	} {
		if err := Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "set Options.") {
			t.Errorf("Run(%+v) = %v, want an error saying what to set", opts, err)
		}
	}
}
