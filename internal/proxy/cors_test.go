package proxy

import (
	"net/http"
	"testing"
)

const corsPolicyType = `"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"`

func corsRoutes() string {
	return routes(
		`{"match":{"prefix":"/strict"},"route":{"cluster":"c"},"typed_per_filter_config":{"envoy.filters.http.cors":{`+corsPolicyType+`,
		  "allow_origin_string_match":[{"exact":"https://app.example"},{"safe_regex":{"regex":"https://.*\\.apps\\.example"}}],
		  "allow_methods":"GET, PUT","allow_headers":"x-a, x-b","expose_headers":"x-exposed","max_age":"3600",
		  "allow_credentials":true,"forward_not_matching_preflights":false}}}`,
		`{"match":{"prefix":"/any"},"route":{"cluster":"c"},"typed_per_filter_config":{"envoy.filters.http.cors":{`+corsPolicyType+`,
		  "allow_origin_string_match":[{"exact":"*"}],"allow_methods":"*","allow_headers":"*"}}}`,
		`{"match":{"prefix":"/"},"route":{"cluster":"c"}}`)
}

func TestCORSPreflight(t *testing.T) {
	b := newBackend(t, echo("app"))
	h := newHarness(t, corsRoutes(), map[string][]string{"c": {b.addr()}}, true)
	for _, tc := range []struct {
		name     string
		target   string
		headers  []string
		want     map[string]string // "" means absent
		upstream bool              // the preflight reaches the app
	}{
		{name: "allowed", target: "/strict", headers: []string{"Origin: https://app.example", "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: x-a"},
			want: map[string]string{headerAllowOrigin: "https://app.example", headerAllowMethods: "GET, PUT", headerAllowHeaders: "x-a, x-b",
				headerMaxAge: "3600", headerAllowCredentials: "true", headerExposeHeaders: "x-exposed"}},
		{name: "regex origin", target: "/strict", headers: []string{"Origin: https://x.y.apps.example", "Access-Control-Request-Method: GET"},
			want: map[string]string{headerAllowOrigin: "https://x.y.apps.example"}},
		{name: "origin not allowed, not forwarded", target: "/strict", headers: []string{"Origin: https://evil.example", "Access-Control-Request-Method: GET"},
			want: map[string]string{headerAllowOrigin: "", headerAllowMethods: "GET, PUT", headerAllowCredentials: "true", headerExposeHeaders: ""}},
		{name: "wildcards echo the request", target: "/any", headers: []string{"Origin: https://o.example", "Access-Control-Request-Method: PATCH", "Access-Control-Request-Headers: x-z"},
			want: map[string]string{headerAllowOrigin: "https://o.example", headerAllowMethods: "PATCH", headerAllowHeaders: "x-z", headerAllowCredentials: ""}},
		{name: "no policy", target: "/other", headers: []string{"Origin: https://app.example", "Access-Control-Request-Method: GET"},
			want: map[string]string{headerAllowOrigin: ""}, upstream: true},
		{name: "not a preflight", target: "/strict", headers: []string{"Origin: https://app.example"},
			want: map[string]string{headerAllowOrigin: "https://app.example", headerExposeHeaders: "x-exposed"}, upstream: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.n.Load()
			resp, body := h.do(t, http.MethodOptions, tc.target, "", tc.headers...)
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
			for k, v := range tc.want {
				if got := resp.Header.Get(k); got != v || (v == "" && len(resp.Header.Values(k)) > 0) {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if reached := b.n.Load() > before; reached != tc.upstream {
				t.Errorf("reached the app: %v (body %q), want %v", reached, body, tc.upstream)
			}
		})
	}
}

func TestCORSActualRequest(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerAllowOrigin, "https://from-the-app")
		w.Write([]byte("ok"))
	})
	h := newHarness(t, corsRoutes(), map[string][]string{"c": {b.addr()}}, true)
	resp, body := h.do(t, "GET", "/strict", "", "Origin: https://app.example")
	if body != "ok" || resp.Header.Get(headerAllowOrigin) != "https://app.example" ||
		resp.Header.Get(headerAllowCredentials) != "true" || resp.Header.Get(headerExposeHeaders) != "x-exposed" {
		t.Errorf("allowed origin: %q %v", body, resp.Header)
	}
	resp, _ = h.do(t, "GET", "/strict", "", "Origin: https://evil.example")
	if got := resp.Header.Get(headerAllowOrigin); got != "https://from-the-app" || resp.Header.Get(headerAllowCredentials) != "" {
		t.Errorf("origin not allowed: the app's headers must pass untouched: %v", resp.Header)
	}
	// A local reply to a cross-origin request carries the headers too.
	h = newHarness(t, corsRoutes(), map[string][]string{"c": {deadAddr(t)}}, true)
	resp, _ = h.do(t, "GET", "/strict", "", "Origin: https://app.example")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(headerAllowOrigin) != "https://app.example" {
		t.Errorf("local reply: %d %v", resp.StatusCode, resp.Header)
	}
}

// Without the CORS filter in the connection manager, route policies have
// no effect, as in Envoy.
func TestCORSNeedsTheFilter(t *testing.T) {
	b := newBackend(t, echo("app"))
	h := newHarness(t, corsRoutes(), map[string][]string{"c": {b.addr()}}, false)
	resp, _ := h.do(t, http.MethodOptions, "/strict", "", "Origin: https://app.example", "Access-Control-Request-Method: PUT")
	if resp.Header.Get(headerAllowOrigin) != "" || b.n.Load() != 1 {
		t.Errorf("preflight without the filter: %v, app requests %d", resp.Header, b.n.Load())
	}
}
