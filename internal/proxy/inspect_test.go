package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// clientHello returns the first record a TLS client sends.
func clientHello(t *testing.T, serverName string, alpn ...string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
		c.Close()
	}()
	buf := make([]byte, 0, maxPeek)
	chunk := make([]byte, 4096)
	for {
		n, err := s.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil || len(buf) >= 5 && len(buf) >= 5+int(buf[3])<<8|int(buf[4]) {
			return buf
		}
	}
}

func TestDecide(t *testing.T) {
	hello := clientHello(t, "outbound_.80_._.web.demo.svc.cluster.local", "h2")
	for _, tc := range []struct {
		name       string
		in         []byte
		tls, http  bool
		done       bool
		transport  string
		serverName string
		protocols  []string
	}{
		{"hello", hello, true, true, true, transportTLS, "outbound_.80_._.web.demo.svc.cluster.local", []string{"h2"}},
		{"partial hello", hello[:20], true, true, false, "", "", nil},
		{"http get", []byte("GET / HTTP/1.1\r\n"), true, true, true, transportRaw, "", []string{protoHTTP11}},
		{"partial method", []byte("PO"), false, true, false, "", "", nil},
		{"h2c preface", []byte(http2Preface), false, true, true, "", "", []string{protoH2C}},
		{"partial preface", []byte("PRI * HT"), false, true, false, "", "", nil},
		{"mysql-ish", []byte{0x4a, 0, 0, 0, 0x0a}, true, true, true, transportRaw, "", nil},
		{"smtp client", []byte("EHLO x\r\n"), false, true, true, "", "", nil},
		{"tls only, plaintext", []byte("GET /"), true, false, true, transportRaw, "", nil},
	} {
		var m connMatch
		done := decide(tc.in, tc.tls, tc.http, &m)
		if done != tc.done || m.transport != tc.transport || m.serverName != tc.serverName || !slices.Equal(m.protocols, tc.protocols) {
			t.Errorf("%s: done %v, %+v; want done %v, transport %q, server name %q, protocols %q",
				tc.name, done, m, tc.done, tc.transport, tc.serverName, tc.protocols)
		}
	}
}

// TestInspectTimeout: a client that sends nothing (a server-first
// protocol) is let through after the bounded wait, with nothing found.
func TestInspectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dc := &downConn{Conn: s, local: s.LocalAddr()}
	m, err := inspect(dc, true, true, time.Now().Add(20*time.Millisecond))
	if err != errInspectTimeout || m.transport != "" || len(m.protocols) != 0 {
		t.Errorf("inspect = %+v, %v; want nothing found and a timeout", m, err)
	}
	// The connection still works afterwards, and what was peeked is
	// replayed.
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := dc.Read(buf); err != nil || string(buf) != "hello" {
		t.Errorf("read after inspect: %q, %v", buf, err)
	}
}

func TestMatch(t *testing.T) {
	ch := func(name string, m chainMatch) *filterChain { return &filterChain{name: name, match: m} }
	pfx := netip.MustParsePrefix
	lc := &listenerConfig{
		chains: []*filterChain{
			ch("pod-a", chainMatch{port: 8080, prefixes: []netip.Prefix{pfx("10.0.0.5/32")}}),
			ch("subnet", chainMatch{port: 8080, prefixes: []netip.Prefix{pfx("10.0.0.0/24")}}),
			ch("port-8080-any", chainMatch{port: 8080}),
			ch("9000-tls", chainMatch{port: 9000, transport: transportTLS, serverNames: []string{"a.example"}}),
			ch("9000-tls-wild", chainMatch{port: 9000, transport: transportTLS, serverNames: []string{"*.example"}}),
			ch("9000-raw", chainMatch{port: 9000, transport: transportRaw}),
			ch("7000-http", chainMatch{port: 7000, protocols: []string{protoHTTP11, protoH2C}}),
			ch("7000-tcp", chainMatch{port: 7000}),
		},
		defaultChain: ch("passthrough", chainMatch{}),
	}
	addr := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tc := range []struct {
		m    connMatch
		want string
	}{
		{connMatch{dst: addr("10.0.0.5:8080")}, "pod-a"},
		{connMatch{dst: addr("10.0.0.6:8080")}, "subnet"},
		{connMatch{dst: addr("10.9.0.6:8080")}, "port-8080-any"},
		{connMatch{dst: addr("10.0.0.5:8081")}, "passthrough"},
		{connMatch{dst: addr("10.0.0.5:9000"), transport: transportTLS, serverName: "a.example"}, "9000-tls"},
		{connMatch{dst: addr("10.0.0.5:9000"), transport: transportTLS, serverName: "b.example"}, "9000-tls-wild"},
		{connMatch{dst: addr("10.0.0.5:9000"), transport: transportTLS, serverName: "other"}, "passthrough"},
		{connMatch{dst: addr("10.0.0.5:9000"), transport: transportRaw}, "9000-raw"},
		{connMatch{dst: addr("10.0.0.5:7000"), protocols: []string{protoH2C}}, "7000-http"},
		{connMatch{dst: addr("10.0.0.5:7000")}, "7000-tcp"},
	} {
		got := lc.match(tc.m)
		if got == nil || got.name != tc.want {
			t.Errorf("match(%+v) = %v, want %s", tc.m, got, tc.want)
		}
	}
}

// FuzzDecide feeds the inspectors arbitrary first bytes: they never
// panic, never claim TLS for bytes that are not a handshake record, and
// once decided stay decided as more bytes arrive.
func FuzzDecide(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"), true, true)
	f.Add([]byte(http2Preface), false, true)
	f.Add([]byte{0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0}, true, false)
	f.Add([]byte{0x16, 3, 1, 0xff, 0xff}, true, true)
	f.Fuzz(func(t *testing.T, b []byte, tlsOn, httpOn bool) {
		if len(b) > maxPeek {
			b = b[:maxPeek]
		}
		var m connMatch
		done := decide(b, tlsOn, httpOn, &m)
		if m.transport == transportTLS && (len(b) == 0 || b[0] != 0x16) {
			t.Fatalf("TLS claimed for %q", b)
		}
		if done {
			var again connMatch
			if !decide(append(b[:len(b):len(b)], "more"...), tlsOn, httpOn, &again) {
				t.Fatalf("decided on %q, undecided with more bytes", b)
			}
		}
	})
}
