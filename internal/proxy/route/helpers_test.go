package route

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// parse reads a RouteConfiguration from protojson text.
func parse(t testing.TB, js string) *routev3.RouteConfiguration {
	t.Helper()
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal([]byte(js), rc); err != nil {
		t.Fatalf("bad test config: %v\n%s", err, js)
	}
	return rc
}

// mustCompile compiles protojson text and fails the test on error.
func mustCompile(t testing.TB, js string) *Table {
	t.Helper()
	tbl, err := Compile(parse(t, js))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

// oneRoute is a config with a virtual host "v" for "*" and one route "r"
// built from the given route JSON members, e.g. `"match":{...},"route":{...}`.
func oneRoute(members string) string {
	return fmt.Sprintf(`{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"name":"r",%s}]}]}`, members)
}

// withMatch is oneRoute with the given match and a cluster action.
func withMatch(match string) string {
	return oneRoute(`"match":` + match + `,"route":{"cluster":"c"}`)
}

// request builds a server-side request as net/http would parse it from the
// wire: method, request target (e.g. "/a?b=c"), Host, and header lines
// "Name: value".
func request(t testing.TB, method, host, target string, headers ...string) *http.Request {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		t.Fatalf("bad test request: %v", err)
	}
	return r
}

func get(t testing.TB, host, target string, headers ...string) *http.Request {
	t.Helper()
	return request(t, http.MethodGet, host, target, headers...)
}

// routeName returns the matched route's "vhost/route" or "" for none.
func routeName(r *Route) string {
	if r == nil {
		return ""
	}
	return r.VirtualHost + "/" + r.Name
}
