package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/bench/internal/load"
)

// The handshake load: conns workers, each opening a new TCP connection,
// making a full TLS 1.3 handshake (X25519 only, no session cache, so
// never a resumption), sending one request with Connection: close,
// reading the answer and closing, over and over for a duration. fortio
// has no way to choose the key exchange or to check it; this does both
// on every connection, so that each proxy is shown to do the same work.

// handshakeConfig is the client's TLS: TLS 1.3, X25519 only (the servers'
// key share matches the client's: no HelloRetryRequest), HTTP/1.1 by
// ALPN, no session cache. The server must present the run's leaf
// certificate, compared byte for byte rather than verified up to the CA,
// so that the client spends less of the load CPUs per handshake; the
// server's signature over the handshake (CertificateVerify) is checked
// all the same.
func handshakeConfig(c *certs) *tls.Config {
	leaf := c.pair.Certificate[0]
	return &tls.Config{
		ServerName: host, InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("the server's certificate is not the run's")
			}
			return nil
		},
		MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
	}
}

// handshakeOnce makes one connection to addr, one handshake and one
// request, and checks that the handshake was full and as configured.
func handshakeOnce(ctx context.Context, addr string, conf *tls.Config) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, conf)
	if err := tc.Handshake(); err != nil {
		return err
	}
	st := tc.ConnectionState()
	switch {
	case st.Version != tls.VersionTLS13:
		return fmt.Errorf("TLS version %s, not 1.3", tls.VersionName(st.Version))
	case st.CurveID != tls.X25519:
		return fmt.Errorf("key exchange %s, not X25519", st.CurveID)
	case st.DidResume:
		return errors.New("the session was resumed")
	}
	if _, err := io.WriteString(tc, "GET "+reqPath+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || n != load.BodySize {
		return fmt.Errorf("HTTP %d, %d bytes", resp.StatusCode, n)
	}
	return nil
}

// handshakes runs the handshake load on addr for d over conns workers
// and reads the proxies' CPU around it. QPS is handshakes (each with its
// request) per second; the percentiles are of the whole connection,
// from dial to the end of the answer. The first error is returned with
// the measurement, after the run: a handshake that fails because of the
// server's configuration fails them all.
func handshakes(ctx context.Context, addr string, c *certs, conns int, d time.Duration, procs []*benchproc.Proc) (*load.Measurement, error) {
	conf := handshakeConfig(c)
	ctx, cancel := context.WithTimeout(ctx, d+15*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		failures int64
		firstErr error
		wg       sync.WaitGroup
	)
	meter := load.StartCPU(procs...)
	t0 := time.Now()
	end := t0.Add(d)
	for range conns {
		wg.Go(func() {
			var mine []time.Duration
			var bad int64
			var err0 error
			for time.Now().Before(end) && ctx.Err() == nil {
				s := time.Now()
				if err := handshakeOnce(ctx, addr, conf); err != nil {
					bad++
					if err0 == nil {
						err0 = err
					}
					continue
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			lat = append(lat, mine...)
			failures += bad
			if firstErr == nil {
				firstErr = err0
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	cpu, elapsed := meter.Stop()
	m := &load.Measurement{Errors: failures}
	if elapsed > 0 {
		m.QPS = load.Round(float64(len(lat))/elapsed, 1)
		m.CPU = load.Round(cpu/elapsed, 3)
	}
	if m.QPS > 0 {
		m.CPUPer1000 = load.Round(m.CPU/(m.QPS/1000), 3)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := min(len(lat)-1, int(p/100*float64(len(lat))))
		return load.Round(lat[i].Seconds()*1000, 3)
	}
	m.P50ms, m.P90ms, m.P99ms, m.P999ms = pct(50), pct(90), pct(99), pct(99.9)
	if firstErr != nil {
		firstErr = fmt.Errorf("%d of %d handshakes failed, the first: %w", failures, int64(len(lat))+failures, firstErr)
	}
	return m, firstErr
}
