package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/secrets"
)

const (
	namespace   = "bench"
	trustDomain = identity.DefaultTrustDomain
)

// certifyResult is the certification of N proxies at once.
type certifyResult struct {
	Proxies       int     `json:"proxies"`
	TokensSeconds float64 `json:"tokensSeconds"`
	// Seconds from the start until the last proxy installed its
	// certificate.
	Seconds float64 `json:"seconds"`
	// Latency of each proxy's Renew (key, CSR, connection, request,
	// install), in seconds.
	Latency dist `json:"latency"`
	// ControlCPUSeconds is the control plane's CPU time during the
	// certification; ClientCPUSeconds this process's (the proxies' side).
	ControlCPUSeconds float64 `json:"controlCPUSeconds"`
	ClientCPUSeconds  float64 `json:"clientCPUSeconds"`
	PerSecond         float64 `json:"certificatesPerSecond"`
}

// certify makes n join tokens, then has n proxies obtain their first
// certificates at once.
func certify(ctx context.Context, c *control, n int) (*certifyResult, error) {
	res := &certifyResult{Proxies: n}
	start := time.Now()
	specs := make([]controlapi.TokenSpec, n)
	for i := range specs {
		specs[i] = controlapi.TokenSpec{Namespace: namespace, ServiceAccount: fmt.Sprintf("proxy-%d", i)}
	}
	tokens, err := c.API.CreateTokens(ctx, specs)
	if err != nil {
		return nil, fmt.Errorf("making join tokens: %w", err)
	}
	res.TokensSeconds = time.Since(start).Seconds()
	pemBundle, err := os.ReadFile(c.bundle)
	if err != nil {
		return nil, fmt.Errorf("the trust bundle: %w", err)
	}
	bundle, err := secrets.ParseBundle(pemBundle)
	if err != nil {
		return nil, err
	}

	managers := make([]*secrets.Manager, n)
	for i := range managers {
		managers[i] = secrets.New(identity.ID{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: specs[i].ServiceAccount}, bundle, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var (
		wg        sync.WaitGroup
		release   = make(chan struct{})
		latencies = make([]float64, n)
		errs      = make([]error, n)
	)
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			t0 := time.Now()
			errs[i] = m.Renew(ctx, firstContact(c.XDS, tokens[i].Token, fmt.Sprintf("proxy-%d", i), m))
			latencies[i] = time.Since(t0).Seconds()
		}()
	}
	cpu0, err := benchproc.CPUSeconds(c.Pid())
	if err != nil {
		return nil, err
	}
	self0, _ := benchproc.CPUSeconds(os.Getpid())
	start = time.Now()
	close(release)
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	cpu1, err := benchproc.CPUSeconds(c.Pid())
	if err != nil {
		return nil, err
	}
	self1, _ := benchproc.CPUSeconds(os.Getpid())
	res.ControlCPUSeconds, res.ClientCPUSeconds = cpu1-cpu0, self1-self0
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("proxy %d: %w", i, err)
		}
		if managers[i].ValidCertificate() == nil {
			return nil, fmt.Errorf("proxy %d has no valid certificate", i)
		}
	}
	res.Latency = distOf(latencies)
	res.PerSecond = float64(n) / res.Seconds
	return res, nil
}

// firstContact is the issuer of a proxy without a certificate, as
// trellis-proxy's: a connection of its own, the control plane verified by
// its SPIFFE ID, no client certificate, the join token in the request.
func firstContact(addr, token, node string, m *secrets.Manager) secrets.Issuer {
	return secrets.IssuerFunc(func(ctx context.Context, csr []byte) ([][]byte, []*x509.Certificate, error) {
		want := identity.ControlPlane(trustDomain)
		conf := m.ClientConfig("", secrets.AllowIDs(trustDomain, want))
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tls.Certificate{}, nil
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			return nil, nil, err
		}
		defer conn.Close()
		resp, err := capb.NewCertificateServiceClient(conn).CreateCertificate(ctx,
			&capb.CreateCertificateRequest{Csr: string(csr), NodeId: node, Token: token})
		if err != nil {
			return nil, nil, err
		}
		return secrets.ParseIssued(resp.GetCertChain(), resp.GetTrustBundle())
	})
}
