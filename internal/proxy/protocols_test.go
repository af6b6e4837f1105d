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

// TestHTTP1Protocols sends HTTP/1.1 edge cases through a proxy: keep-alive
// connections carrying several requests, chunked bodies both ways,
// Expect: 100-continue, and an Upgrade (a WebSocket-like echo protocol
// after 101 Switching Protocols).
func TestHTTP1Protocols(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upgrade":
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
				return
			}
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			rw.Flush()
			for {
				line, err := rw.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprint(rw, "echo: "+line)
				rw.Flush()
			}
		default:
			body, _ := io.ReadAll(r.Body)
			// A chunked response: flushed in parts, no Content-Length.
			fmt.Fprintf(w, "te=%v expect=%q ", r.TransferEncoding, r.Header.Get("Expect"))
			w.(http.Flusher).Flush()
			fmt.Fprintf(w, "body=%s", body)
		}
	}))
	defer backend.Close()
	h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"b"}}`),
		map[string][]string{"b": {strings.TrimPrefix(backend.URL, "http://")}}, false)

	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	read := func() (*http.Response, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
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

	// Keep-alive: two requests on one connection, the first with a
	// chunked body.
	fmt.Fprint(conn, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
	resp, body := read()
	if resp.StatusCode != 200 || body != `te=[chunked] expect="" body=abcdef` || resp.ContentLength != -1 {
		t.Errorf("chunked request: %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	// Expect: 100-continue: the proxy says go ahead before the body is
	// sent.
	fmt.Fprint(conn, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("100-continue: got %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100-continue: %q after the interim response", blank)
	}
	fmt.Fprint(conn, "hello")
	if resp, body := read(); resp.StatusCode != 200 || body != `te=[] expect="" body=hello` {
		t.Errorf("after 100-continue: %d %q", resp.StatusCode, body)
	}

	// Upgrade: after 101 the connection carries the new protocol both
	// ways.
	up, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(20 * time.Second))
	ubr := bufio.NewReader(up)
	fmt.Fprint(up, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err = http.ReadResponse(ubr, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"one", "two"} {
		fmt.Fprint(up, msg+"\n")
		if got, err := ubr.ReadString('\n'); err != nil || got != "echo: "+msg+"\n" {
			t.Errorf("upgraded connection: %q, %v", got, err)
		}
	}
}
