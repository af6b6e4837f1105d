package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type mirrored struct {
	host, path, header, body string
}

// A mirror gets a copy of the request, headers as sent upstream, Host
// suffixed "-shadow", and the body; the client gets the main response.
func TestMirror(t *testing.T) {
	main := newBackend(t, echo("main"))
	got := make(chan mirrored, 10)
	shadow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- mirrored{r.Host, r.URL.Path, r.Header.Get("X-Added"), string(body)}
		w.WriteHeader(http.StatusInternalServerError) // discarded
	})
	h := newHarness(t, routes(`{"match":{"prefix":"/"},"request_headers_to_add":[{"header":{"key":"x-added","value":"1"}}],
	  "route":{"cluster":"main","prefix_rewrite":"/v2/","request_mirror_policies":[{"cluster":"shadow"},{"cluster":"never","runtime_fraction":{"default_value":{"numerator":0}}}]}}`),
		map[string][]string{"main": {main.addr()}, "shadow": {shadow.addr()}, "never": {shadow.addr()}}, false)
	resp, body := h.do(t, "POST", "/x", "hello", "Host: web.demo:8080")
	if resp.StatusCode != 200 || body != "main:hello" {
		t.Fatalf("main response: %d %q", resp.StatusCode, body)
	}
	select {
	case m := <-got:
		want := mirrored{host: "web.demo-shadow:8080", path: "/v2/x", header: "1", body: "hello"}
		if m != want {
			t.Errorf("mirror got %+v, want %+v", m, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got nothing")
	}
	// A request without a body is mirrored too; the 0% mirror never is.
	h.do(t, "GET", "/y", "")
	select {
	case m := <-got:
		if m.path != "/v2/y" || m.body != "" {
			t.Errorf("mirror got %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got nothing")
	}
	time.Sleep(50 * time.Millisecond)
	if len(got) != 0 {
		t.Errorf("unexpected mirrored requests: %d", len(got))
	}
}

// A mirror that never answers delays nothing, and a body above the buffer
// is not mirrored.
func TestMirrorNeverDelaysTheRequest(t *testing.T) {
	main := newBackend(t, echo("main"))
	release := make(chan struct{})
	shadow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"main","request_mirror_policies":[{"cluster":"shadow"}]}}`),
		map[string][]string{"main": {main.addr()}, "shadow": {shadow.addr()}}, false)
	for range 3 {
		if resp, body := h.do(t, "GET", "/", ""); resp.StatusCode != 200 || body != "main:" {
			t.Fatalf("main response while the mirror hangs: %d %q", resp.StatusCode, body)
		}
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for shadow.n.Load() != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := shadow.n.Load(); n != 3 {
		t.Fatalf("mirror got %d requests, want 3", n)
	}
	large := strings.Repeat("L", maxBufferedBody+1)
	if resp, body := h.do(t, "POST", "/", large); resp.StatusCode != 200 || len(body) != len("main:")+len(large) {
		t.Fatalf("large body: %d, %d bytes", resp.StatusCode, len(body))
	}
	time.Sleep(100 * time.Millisecond)
	if n := shadow.n.Load(); n != 3 {
		t.Errorf("a body above the buffer was mirrored (%d requests)", n)
	}
}
