package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
)

// signingResult is the CA's signing throughput against bare signatures.
type signingResult struct {
	Signatures int `json:"signatures"`
	Workers    int `json:"workers"`
	// PerSecond is CA.Sign calls per second; BarePerSecond bare
	// ecdsa.SignASN1 calls with the same key; Ratio bare/CA.
	PerSecond     float64 `json:"perSecond"`
	BarePerSecond float64 `json:"barePerSecond"`
	Ratio         float64 `json:"ratio"`
	// BareMicros is one bare signature's CPU time: the workers' time
	// divided by the signatures.
	BareMicros float64 `json:"bareMicros"`
}

// signing times count CA.Sign calls (rounded to a multiple of 5) of one parsed P-256 CSR on every core,
// then count bare signatures with the CA's intermediate key, the loops of
// BenchmarkSign in internal/ca.
func signing(dir string, count int) (*signingResult, error) {
	c, err := ca.Open(ca.Options{Dir: filepath.Join(dir, "signing-ca")})
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := identity.ID{TrustDomain: c.TrustDomain(), Namespace: namespace, ServiceAccount: "web"}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, err
	}
	csr, err := ca.ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		return nil, err
	}
	signer := c.State().Active.SignerKey
	digest := sha256.Sum256(csr.Raw)
	workers := runtime.GOMAXPROCS(0)

	// Rounds alternate the two loops, so that a change in the machine's
	// load (another benchmark) affects both alike.
	const rounds = 5
	n := max(1, count/rounds)
	count = n * rounds
	res := &signingResult{Signatures: count, Workers: workers}
	var caTime, bareTime time.Duration
	for range rounds {
		d, err := parallel(n, workers, func() error {
			_, err := c.Sign(csr, id, 0)
			return err
		})
		if err != nil {
			return nil, err
		}
		caTime += d
		if d, err = parallel(n, workers, func() error {
			_, err := ecdsa.SignASN1(rand.Reader, signer, digest[:])
			return err
		}); err != nil {
			return nil, err
		}
		bareTime += d
	}
	res.PerSecond = float64(count) / caTime.Seconds()
	res.BarePerSecond = float64(count) / bareTime.Seconds()
	res.BareMicros = bareTime.Seconds() * float64(workers) / float64(count) * 1e6
	res.Ratio = res.BarePerSecond / res.PerSecond
	return res, nil
}

// parallel runs f count times on workers goroutines and returns the wall
// time.
func parallel(count, workers int, f func() error) (time.Duration, error) {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				if err := f(); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}
