package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "/",
		"/":                  "/",
		"/a/b":               "/a/b",
		"/a/../admin":        "/admin",
		"/a/./b":             "/a/b",
		"/admin/.":           "/admin/",
		"/admin/..":          "/",
		"/../../x":           "/x",
		"/xyz/.././":         "/",
		"/a/%2e%2e/admin":    "/admin",
		"/a/%2E%2e/admin":    "/admin",
		"/a/.%2e/admin":      "/admin",
		"/a/%2e/b":           "/a/b",
		"/a/..%2fadmin":      "/a/..%2fadmin",
		"/a/...":             "/a/...",
		"/a/..b":             "/a/..b",
		"/a.b/c":             "/a.b/c",
		"/%61dmin":           "/admin",
		"/%7Euser/%2D%5F":    "/~user/-_",
		"/a%2Fb":             "/a%2Fb",
		"/a%2fb":             "/a%2fb",
		"/a%20b":             "/a%20b",
		"/a b":               "/a%20b",
		"/a\"<>`{}|^b":       "/a%22%3C%3E%60%7B%7D%7C%5Eb",
		"/a;x=1/b":           "/a;x=1/b",
		"/a\\..\\admin":      "/admin",
		"\\a":                "/a",
		"a/b":                "/a/b",
		"/caf\xc3\xa9":       "/caf%C3%A9",
		"/ADMIN":             "/ADMIN",
		"//admin":            "//admin",
		"/a/b/../../../../c": "/c",
	} {
		got, ok := canonicalPath(in)
		if !ok || got != want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/a%00b", "/a\x00", "/a%zz", "/a%4"} {
		if got, ok := canonicalPath(in); ok {
			t.Errorf("canonicalPath(%q) = %q, want it refused", in, got)
		}
	}
}

func TestPathNormalization(t *testing.T) {
	safe := pathNormalization{normalize: true, mergeSlashes: true, rejectEscapedSlashes: true}
	for _, tc := range []struct {
		pn         pathNormalization
		target     string
		want       string // RequestURI after; "" when refused
		wantPath   string // URL.Path after
		wantEscape string // URL.EscapedPath() after
	}{
		{safe, "/a/../admin", "/admin", "/admin", "/admin"},
		{safe, "//admin", "/admin", "/admin", "/admin"},
		{safe, "/a//b///c/", "/a/b/c/", "/a/b/c/", "/a/b/c/"},
		{safe, "/%61dmin?x=/../y", "/admin?x=/../y", "/admin", "/admin"},
		{safe, "/admin?x", "/admin?x", "/admin", "/admin"},
		{safe, "/a%20b", "/a%20b", "/a b", "/a%20b"},
		{safe, "/admin%2F", "", "", ""},
		{safe, "/admin%5csecret", "", "", ""},
		{safe, "/admin%252F", "/admin%252F", "/admin%2F", "/admin%252F"},
		{safe, "/admin#x", "", "", ""},
		{pathNormalization{}, "/admin#x", "", "", ""},
		{pathNormalization{}, "/a/../b", "/a/../b", "/a/../b", "/a/../b"},
		{pathNormalization{normalize: true}, "/a%2Fb/../c", "/c", "/c", "/c"},
		{pathNormalization{normalize: true}, "/a%2Fb", "/a%2Fb", "/a/b", "/a%2Fb"},
		{pathNormalization{mergeSlashes: true}, "//a/../b", "/a/../b", "/a/../b", "/a/../b"},
		{safe, "*", "*", "*", "*"},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://x/", nil)
		r.RequestURI = tc.target
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		r.URL = u
		ok := tc.pn.apply(r)
		if tc.want == "" {
			if ok {
				t.Errorf("%+v %q: accepted as %q, want refused", tc.pn, tc.target, r.RequestURI)
			}
			continue
		}
		if !ok || r.RequestURI != tc.want || r.URL.Path != tc.wantPath || r.URL.EscapedPath() != tc.wantEscape {
			t.Errorf("%+v %q: ok %v, RequestURI %q, Path %q, EscapedPath %q; want %q, %q, %q",
				tc.pn, tc.target, ok, r.RequestURI, r.URL.Path, r.URL.EscapedPath(), tc.want, tc.wantPath, tc.wantEscape)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/a/../b", "/%2e%2e/x", "//a/./b/", "/a%2Fb", "\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		out, ok := canonicalPath(p)
		if !ok {
			return
		}
		again, ok := canonicalPath(out)
		if !ok || again != out {
			t.Fatalf("canonicalPath(%q) = %q is not a fixed point: %q, %v", p, out, again, ok)
		}
		if out == "" || out[0] != '/' {
			t.Fatalf("canonicalPath(%q) = %q does not start with /", p, out)
		}
	})
}

// TestNormalizationLeavesConnectAlone: a CONNECT request has no path to
// normalize, and must not get one.
func TestNormalizationLeavesConnectAlone(t *testing.T) {
	r := httptest.NewRequest(http.MethodConnect, "http://cart:80", nil)
	r.RequestURI = "cart:80"
	r.URL = &url.URL{Host: "cart:80"}
	if !(pathNormalization{normalize: true, mergeSlashes: true}).apply(r) || r.URL.Path != "" {
		t.Fatalf("CONNECT: path %q", r.URL.Path)
	}
	abs := httptest.NewRequest(http.MethodGet, "http://cart/a/../b", nil)
	abs.RequestURI = "http://cart/a/../b"
	abs.URL, _ = url.ParseRequestURI(abs.RequestURI)
	if !(pathNormalization{normalize: true}).apply(abs) || abs.URL.EscapedPath() != "/b" || abs.RequestURI != "http://cart/a/../b" {
		t.Fatalf("absolute URI: path %q, RequestURI %q", abs.URL.EscapedPath(), abs.RequestURI)
	}
}
