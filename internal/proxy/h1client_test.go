package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// rawBackend is an HTTP/1.1 server written by hand, to misbehave as real
// servers do: serve is called for each request read on a connection and
// reports whether the connection stays open.
type rawBackend struct {
	ln     net.Listener
	conns  atomic.Int64  // connections accepted
	closed chan struct{} // a connection was closed
}

func newRawBackend(t *testing.T, serve func(r *http.Request, w *bufio.Writer) (keep bool)) *rawBackend {
	t.Helper()
	b := &rawBackend{closed: make(chan struct{}, 1000)}
	b.ln = serveTCP(t, func(c net.Conn) {
		b.conns.Add(1)
		defer func() {
			c.Close()
			b.closed <- struct{}{}
		}()
		br, bw := bufio.NewReader(c), bufio.NewWriter(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			keep := serve(r, bw)
			bw.Flush()
			if !keep {
				return
			}
		}
	})
	return b
}

func (b *rawBackend) assignment(t *testing.T) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{lbEPAddr(t, b.ln.Addr().String())}}}}
}

// TestUpstreamKeepAlive: sequential requests share one upstream
// connection.
func TestUpstreamKeepAlive(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, w *bufio.Writer) bool {
		io.Copy(io.Discard, r.Body)
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	tb := newTestBed(t, bedOptions{cla: be.assignment(t)})
	for range 20 {
		if code, body, _ := tb.get(t, "/"); code != http.StatusOK || body != "ok" {
			t.Fatalf("got %d %q", code, body)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("20 requests opened %d upstream connections, want 1", n)
	}
}

// TestUpstreamClosesKeptAlive: a server that closes each connection after
// its response, without saying so (as servers with short idle timeouts
// do), costs no request once the close has reached the proxy: a closed
// idle connection is not used again, for a POST either (which could not
// be sent again).
func TestUpstreamClosesKeptAlive(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, w *bufio.Writer) bool {
		io.Copy(io.Discard, r.Body)
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	tb := newTestBed(t, bedOptions{cla: be.assignment(t)})
	for i := range 50 {
		if code, body, _ := tb.get(t, "/"); code != http.StatusOK || body != "ok" {
			t.Fatalf("request %d: got %d %q", i, code, body)
		}
		<-be.closed
		resp, err := tb.http.Post(tb.url+"/", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: got %d", i, resp.StatusCode)
		}
		<-be.closed
	}
}

// TestUpstreamAnswersBeforeBody: a server that answers a large upload
// before reading it (413) is heard; the proxy neither hangs on the body nor
// reuses the connection.
func TestUpstreamAnswersBeforeBody(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, w *bufio.Writer) bool {
		if r.ContentLength > 1<<20 || r.ContentLength < 0 {
			w.WriteString("HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
			return false
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + itoa(int64(len(itoa(n)))) + "\r\n\r\n" + itoa(n))
		return true
	})
	tb := newTestBed(t, bedOptions{cla: be.assignment(t)})
	for _, tc := range []struct {
		name string
		body io.Reader
		want int
		resp string
	}{
		{"8 MB", bytes.NewReader(make([]byte, 8<<20)), http.StatusRequestEntityTooLarge, "big"},
		{"chunked", io.MultiReader(strings.NewReader("x"), bytes.NewReader(make([]byte, 4<<20))), http.StatusRequestEntityTooLarge, "big"},
		{"64 KB", bytes.NewReader(make([]byte, 64<<10)), http.StatusOK, "65536"},
		{"1 KB", bytes.NewReader(make([]byte, 1<<10)), http.StatusOK, "1024"},
	} {
		resp, err := tb.http.Post(tb.url+"/", "application/octet-stream", tc.body)
		if err != nil {
			// The client may see its upload cut short; what matters is
			// that the proxy answered.
			if tc.want == http.StatusOK {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || string(got) != tc.resp {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, resp.StatusCode, got, tc.want, tc.resp)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
