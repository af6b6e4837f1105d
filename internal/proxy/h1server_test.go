package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestH1Server covers what the proxy's own HTTP/1 server does that
// net/http's did for it: framing, keep-alive and its end, request checks,
// trailers, the client going away, and HTTP/2 still served beside it.
func TestH1Server(t *testing.T) {
	gone := make(chan error, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app/fixed":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "fixed")
		case "/app/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		case "/app/stream":
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/app/slow":
			select {
			case <-r.Context().Done():
				gone <- r.Context().Err()
			case <-time.After(20 * time.Second):
				gone <- nil
			}
		default:
			io.WriteString(w, "path="+r.URL.Path)
		}
	}))
	defer backend.Close()
	h := newHarness(t, routes(`{"match":{"prefix":"/app"},"route":{"cluster":"b"}}`),
		map[string][]string{"b": {strings.TrimPrefix(backend.URL, "http://")}}, false)

	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, bufio.NewReader(c)
	}
	read := func(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	closed := func(t *testing.T, br *bufio.Reader) {
		t.Helper()
		if b, err := br.ReadByte(); err == nil {
			t.Errorf("the connection is still open: read %q", b)
		}
	}

	t.Run("pipelined requests are answered in order", func(t *testing.T) {
		c, br := dial(t)
		fmt.Fprint(c, "GET /app/one HTTP/1.1\r\nHost: x\r\n\r\nGET /app/two HTTP/1.1\r\nHost: x\r\n\r\nHEAD /app/fixed HTTP/1.1\r\nHost: x\r\n\r\n")
		for _, want := range []string{"path=/app/one", "path=/app/two"} {
			if resp, body := read(t, br, "GET"); resp.StatusCode != 200 || body != want {
				t.Errorf("got %d %q, want %q", resp.StatusCode, body, want)
			}
		}
		if resp, body := read(t, br, "HEAD"); resp.StatusCode != 200 || body != "" || resp.ContentLength != 5 {
			t.Errorf("HEAD: %d %q length %d", resp.StatusCode, body, resp.ContentLength)
		}
	})
	t.Run("HTTP/1.0 closes unless kept alive with a length", func(t *testing.T) {
		c, br := dial(t)
		fmt.Fprint(c, "GET /app/fixed HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
		if resp, body := read(t, br, "GET"); body != "fixed" || resp.Close {
			t.Errorf("keep-alive with a length: %q, close %v", body, resp.Close)
		}
		// No length known: the body ends with the connection.
		fmt.Fprint(c, "GET /app/stream HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
		if resp, body := read(t, br, "GET"); body != "part one, part two" || !resp.Close || resp.ContentLength != -1 {
			t.Errorf("no length: %q, close %v", body, resp.Close)
		}
		closed(t, br)
		c2, br2 := dial(t)
		fmt.Fprint(c2, "GET /app/fixed HTTP/1.0\r\n\r\n")
		if resp, body := read(t, br2, "GET"); body != "fixed" || !resp.Close {
			t.Errorf("HTTP/1.0: %q, close %v", body, resp.Close)
		}
		closed(t, br2)
	})
	t.Run("malformed requests get 400 and the connection closes", func(t *testing.T) {
		for name, req := range map[string]string{
			"two Host headers": "GET /app/x HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
			"no Host header":   "GET /app/x HTTP/1.1\r\n\r\n",
			"bad Host":         "GET /app/x HTTP/1.1\r\nHost: a b\r\n\r\n",
			"garbage":          "BLAH\r\n\r\n",
			"both framings":    "POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		} {
			c, br := dial(t)
			fmt.Fprint(c, req)
			if resp, _ := read(t, br, "GET"); resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Errorf("%s: %d, close %v", name, resp.StatusCode, resp.Close)
			}
			closed(t, br)
		}
		c, br := dial(t)
		fmt.Fprint(c, "GET /app/x HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n")
		if resp, _ := read(t, br, "GET"); resp.StatusCode != http.StatusExpectationFailed {
			t.Errorf("Expect: something: %d", resp.StatusCode)
		}
	})
	t.Run("a header over 1 MiB gets 431", func(t *testing.T) {
		c, br := dial(t)
		go fmt.Fprintf(c, "GET /app/x HTTP/1.1\r\nHost: a\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2<<20))
		if resp, _ := read(t, br, "GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("got %d", resp.StatusCode)
		}
	})
	t.Run("trailers pass", func(t *testing.T) {
		resp, err := http.Get("http://" + h.addr + "/app/trailer")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("got %q, trailer %v", body, resp.Trailer)
		}
	})
	t.Run("a body the answer did not read is dropped, or the connection closes", func(t *testing.T) {
		c, br := dial(t)
		// No route: the proxy answers itself without reading the body.
		fmt.Fprintf(c, "POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
		if resp, _ := read(t, br, "POST"); resp.StatusCode != http.StatusNotFound || resp.Close {
			t.Errorf("small body: %d, close %v", resp.StatusCode, resp.Close)
		}
		fmt.Fprint(c, "GET /app/next HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := read(t, br, "GET"); body != "path=/app/next" {
			t.Errorf("after a dropped body: %q", body)
		}
		big := 1 << 20
		fmt.Fprintf(c, "POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", big)
		go c.Write(make([]byte, big))
		if resp, _ := read(t, br, "POST"); resp.StatusCode != http.StatusNotFound || !resp.Close {
			t.Errorf("large body: %d, close %v", resp.StatusCode, resp.Close)
		}
	})
	t.Run("the upstream request ends when the client goes away", func(t *testing.T) {
		c, br := dial(t)
		fmt.Fprint(c, "GET /app/slow HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = br
		time.Sleep(200 * time.Millisecond) // past clientGoneAfter: the watch is on
		c.Close()
		select {
		case err := <-gone:
			if err == nil {
				t.Error("the backend's request was not cancelled")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the backend's request is still running")
		}
	})
	t.Run("HTTP/2 with prior knowledge goes to the HTTP/2 server", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		client := &http.Client{Transport: &http.Transport{Protocols: &protos}}
		resp, err := client.Get("http://" + h.addr + "/app/h2")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "path=/app/h2" {
			t.Errorf("got %s %q", resp.Proto, body)
		}
	})
}

// FuzzCountHostHeaders checks the count of Host lines in a buffered
// request header against splitting the header into lines.
func FuzzCountHostHeaders(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nX-Host: a\r\n\r"))
	f.Add([]byte("Host: a\r\n\r\nHost: b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(raw)), 4096)
		br.Peek(1)
		n, counted := countHostHeaders(br)
		buffered, _ := br.Peek(br.Buffered())
		head, _, found := strings.Cut(string(buffered), "\r\n\r\n")
		if counted != found {
			t.Fatalf("counted %v, header end found %v", counted, found)
		}
		want := 0
		if found {
			lines := strings.Split(head+"\r\n", "\n")
			for _, line := range lines[1:] {
				if len(line) >= 5 && strings.EqualFold(line[:5], "host:") {
					want++
				}
			}
		}
		if n != want {
			t.Fatalf("%q: %d Host lines, want %d", raw, n, want)
		}
	})
}
