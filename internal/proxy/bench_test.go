package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkHTTPRoute is one request through a route to a cluster of one
// endpoint answering 1 KB, over keep-alive connections: the per-request
// cost of the connection manager, the filters and the router
// (go test -bench HTTPRoute -benchmem -cpuprofile cpu.out ./internal/proxy).
func BenchmarkHTTPRoute(b *testing.B) {
	be := newLBBackend(b, string(make([]byte, 1024)))
	tb := newTestBed(b, bedOptions{cla: assignmentOf("c", []*lbBackend{be})})
	req, _ := http.NewRequest(http.MethodGet, tb.url+"/", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := tb.http.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
