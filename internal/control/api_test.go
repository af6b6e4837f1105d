package control

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLocalOnly: on Kubernetes the API answers other callers only for
// readiness and metrics; port-forwarded (loopback) callers get it all.
func TestLocalOnly(t *testing.T) {
	h := localOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		"GET /ready", "GET /metrics")
	for _, tc := range []struct {
		method, path, remote string
		want                 int
	}{
		{"POST", "/api/v1/tokens", "10.1.2.3:40000", http.StatusForbidden},
		{"GET", "/api/v1/tokens", "10.1.2.3:40000", http.StatusForbidden},
		{"GET", "/debug/pprof/", "10.1.2.3:40000", http.StatusForbidden},
		{"GET", "/ready", "10.1.2.3:40000", http.StatusTeapot},
		{"GET", "/metrics", "[fd00::1]:40000", http.StatusTeapot},
		{"POST", "/ready", "10.1.2.3:40000", http.StatusForbidden},
		{"POST", "/api/v1/tokens", "127.0.0.1:40000", http.StatusTeapot},
		{"GET", "/api/v1/proxies", "[::1]:40000", http.StatusTeapot},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.RemoteAddr = tc.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s %s from %s: %d, want %d", tc.method, tc.path, tc.remote, rec.Code, tc.want)
		}
	}
}
