package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/nodemeta"
)

// dbService is an opaque TCP service: each connection through the
// sidecars is a new mTLS handshake between them.
const dbService = `
apiVersion: v1
kind: Service
metadata: {name: db, namespace: demo}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432, targetPort: 15432}]
`

// TestRootRotationUnderTraffic runs mTLS traffic of every kind through a
// complete root rotation, with one-minute workload certificates (the CA's
// minimum), and loses no request: HTTP through the web app and its
// sidecar's pooled connections, HTTP through a sidecar on kept-alive and
// on new connections, a new TCP connection (a new handshake between two
// sidecars) per call, and one TCP connection held open from before the
// first renewal to after the old root is gone. Before the rotation every
// proxy renews its certificate at half life under the same traffic.
// Afterwards every proxy holds a certificate of the new root and trusts
// only it.
func TestRootRotationUnderTraffic(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir(), func(o *control.Options) { o.WorkloadTTL = ca.MinWorkloadTTL })
	cp.apply(t, twoServices+"---"+dbService)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	dbIP, clientIP := s.ip(21), s.ip(22)
	echo := lineEcho(t, net.JoinHostPort(dbIP, "15432"))
	startProxy(t, cp, nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "db-1", Namespace: "demo", ServiceAccount: "db",
		Address: dbIP, AppAddress: dbIP, MeshPort: 15008, Labels: map[string]string{"app": "db"},
		Ports: []nodemeta.Port{{Name: "tcp", Port: 15432, Protocol: "TCP"}},
	})
	startProxy(t, cp, nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "client-1", Namespace: "demo", ServiceAccount: "client",
		Address: clientIP, OutboundAddress: clientIP, MeshPort: 15008,
		Upstreams: []nodemeta.Upstream{{Service: "db", Port: 5432, LocalPort: 5432}},
	})
	proxies := map[string]string{ // node ID → admin address
		"web-1.demo": s.ip(11), "catalog-1.demo": s.ip(12), "db-1.demo": dbIP, "client-1.demo": clientIP,
	}
	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	outbound := "http://" + net.JoinHostPort(s.ip(11), "9000") + "/" // web's sidecar, to catalog
	db := net.JoinHostPort(clientIP, "5432")

	eventually(t, 30*time.Second, "web reaches catalog", func() error { _, err := catalogOf(web); return err })
	eventually(t, 30*time.Second, "db reachable through the sidecars", func() error { return tcpCall(db, "ping") })
	checkConnected(t, cp, slices.Collect(maps.Keys(proxies))...)

	held, err := net.Dial("tcp", db)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldR := bufio.NewReader(held)
	keepAlive := &http.Client{Timeout: 5 * time.Second}
	noKeepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var heldMu sync.Mutex
	loops := []*loop{
		startLoop(t, "HTTP through web and two sidecars", func() error { _, err := catalogOf(web); return err }),
		startLoop(t, "HTTP on a kept-alive connection to web's sidecar", func() error { return httpCall(keepAlive, outbound) }),
		startLoop(t, "HTTP on new connections to web's sidecar", func() error { return httpCall(noKeepAlive, outbound) }),
		startLoop(t, "TCP, a new connection (and mTLS handshake) per call", func() error { return tcpCall(db, "call") }),
		startLoop(t, "TCP on one connection held throughout", func() error {
			heldMu.Lock()
			defer heldMu.Unlock()
			return lineRoundTrip(held, heldR, "held")
		}),
	}
	heldConns := echo.accepted()

	// Half-life renewals under traffic, before the rotation.
	oldRoot := rootOf(t, cp)
	first := map[string]string{}
	for id, ip := range proxies {
		first[id] = adminDump(t, ip).Certificate.Serial
	}
	eventually(t, 90*time.Second, "every proxy renewed its certificate at half life", func() error {
		for id, ip := range proxies {
			if adminDump(t, ip).Certificate.Serial == first[id] {
				return fmt.Errorf("%s still has its first certificate", id)
			}
		}
		return nil
	})

	// The whole rotation, as an operator runs it.
	out, errOut, err := trellis(t, cp, "ca", "rotate", "--wait", "--timeout", "3m")
	t.Logf("trellis ca rotate --wait:\n%s%s", out, errOut)
	if err != nil {
		t.Fatalf("trellis ca rotate --wait: %v", err)
	}
	if !strings.Contains(out, "completed; the trust bundle holds only root") {
		t.Errorf("rotate output does not say the rotation completed:\n%s", out)
	}
	for _, l := range loops {
		l.stop(t)
	}
	if got := echo.accepted() - heldConns; got < 10 {
		t.Errorf("only %d new TCP connections reached db during the rotation", got)
	}

	// Where everything ends: one new root, every proxy on it.
	out, _, err = trellis(t, cp, "ca", "status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st controlapi.CAStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	newRoot := st.Roots[0].Fingerprint
	switch {
	case st.Rotation != nil:
		t.Errorf("a rotation still runs: %+v", st.Rotation)
	case len(st.Roots) != 1 || newRoot == oldRoot || st.Roots[0].State != "active":
		t.Errorf("roots %+v: want only a new, active root", st.Roots)
	case st.LastRotation == nil || st.LastRotation.Outcome != "completed" || st.LastRotation.From != oldRoot || st.LastRotation.To != newRoot:
		t.Errorf("last rotation %+v", st.LastRotation)
	case st.Proxies.Registered != 4 || st.Proxies.OnActiveRoot != 4 || st.Proxies.BundleCurrent != 4:
		t.Errorf("proxies %+v: want all 4 on the new root with the new bundle", st.Proxies)
	}
	for id, ip := range proxies {
		d := adminDump(t, ip)
		if got := d.bundle(t); !slices.Equal(got, []string{newRoot}) {
			t.Errorf("%s trusts roots %v, want only the new one %s", id, short16(got), ca.ShortFingerprint(newRoot))
		}
		chain := d.chain(t)
		if len(chain) < 2 || ca.Fingerprint(rootCert(t, cp)) != newRoot || chain[len(chain)-1].CheckSignatureFrom(rootCert(t, cp)) != nil {
			t.Errorf("%s holds a certificate that does not chain to the new root", id)
		}
	}
	bundle, err := os.ReadFile(filepath.Join(cp.caDir, ca.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	if certs := pemCerts(t, bundle); len(certs) != 1 || ca.Fingerprint(certs[0]) != newRoot {
		t.Errorf("%s holds %d roots, want only the new one", ca.BundleFile, len(certs))
	}
	out, _, err = trellis(t, cp, "ca", "status")
	if err != nil || !strings.Contains(out, "none running") || !strings.Contains(out, "4 of 4 acknowledged the current bundle") {
		t.Errorf("trellis ca status: %v\n%s", err, out)
	}
}

// loop calls f every 20 ms in the background and records failures.
type loop struct {
	name     string
	mu       sync.Mutex
	calls    int
	failures []string
	cancel   context.CancelFunc
	done     chan struct{}
}

func startLoop(t *testing.T, name string, f func() error) *loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			err := f()
			l.mu.Lock()
			l.calls++
			if err != nil && ctx.Err() == nil {
				l.failures = append(l.failures, time.Now().Format("15:04:05.000")+": "+err.Error())
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { l.cancel(); <-l.done })
	return l
}

func (l *loop) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	<-l.done
	t.Logf("%s: %d calls", l.name, l.calls)
	if l.calls == 0 {
		t.Errorf("%s: no calls", l.name)
	}
	if len(l.failures) > 0 {
		t.Errorf("%s: %d of %d calls failed:\n%s", l.name, len(l.failures), l.calls, strings.Join(l.failures, "\n"))
	}
}

func httpCall(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// lineEchoServer echoes lines and counts its connections.
type lineEchoServer struct {
	mu sync.Mutex
	n  int
}

func (e *lineEchoServer) accepted() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func lineEcho(t *testing.T, addr string) *lineEchoServer {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &lineEchoServer{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.n++
			e.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return e
}

func tcpCall(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return lineRoundTrip(c, bufio.NewReader(c), msg)
}

func lineRoundTrip(c net.Conn, r *bufio.Reader, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// dump is a proxy's admin /config_dump.
type dump struct {
	Certificate struct {
		Serial string `json:"serial"`
	} `json:"certificate"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

func adminDump(t *testing.T, ip string) dump {
	t.Helper()
	resp, err := http.Get("http://" + net.JoinHostPort(ip, "15000") + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d dump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// secret returns the inline bytes of a secret the proxy applied.
func (d dump) secret(t *testing.T, name string) []byte {
	t.Helper()
	for _, raw := range d.Resources[secretType] {
		var s struct {
			Name              string `json:"name"`
			ValidationContext struct {
				TrustedCa struct {
					InlineBytes string `json:"inlineBytes"`
				} `json:"trustedCa"`
			} `json:"validationContext"`
			TLSCertificate struct {
				CertificateChain struct {
					InlineBytes string `json:"inlineBytes"`
				} `json:"certificateChain"`
			} `json:"tlsCertificate"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if s.Name != name {
			continue
		}
		b64 := s.ValidationContext.TrustedCa.InlineBytes + s.TLSCertificate.CertificateChain.InlineBytes
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("no secret %q applied", name)
	return nil
}

// bundle returns the fingerprints of the roots the proxy trusts.
func (d dump) bundle(t *testing.T) []string {
	var out []string
	for _, c := range pemCerts(t, d.secret(t, "ROOTCA")) {
		out = append(out, ca.Fingerprint(c))
	}
	return out
}

// chain returns the certificate chain the proxy applied.
func (d dump) chain(t *testing.T) []*x509.Certificate { return pemCerts(t, d.secret(t, "default")) }

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// rootCert returns the active root in the control plane's CA directory.
func rootCert(t *testing.T, cp *controlPlane) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cp.caDir, ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	return pemCerts(t, b)[0]
}

func rootOf(t *testing.T, cp *controlPlane) string {
	sum := sha256.Sum256(rootCert(t, cp).Raw)
	return hex.EncodeToString(sum[:])
}

func short16(fps []string) []string {
	var out []string
	for _, fp := range fps {
		out = append(out, ca.ShortFingerprint(fp))
	}
	return out
}

// TestSuppliedCAInStoreRotatedByStep keeps the CA in the store, sealed,
// starting from a supplied root, and rotates it one phase at a time to a
// supplied intermediate of another root, restarting the control plane in
// the middle: the rotation goes on where it was, and traffic never fails.
// A control plane with another encryption key is refused.
func TestSuppliedCAInStoreRotatedByStep(t *testing.T) {
	s := newSubnet(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ca-encryption.key")
	key := make([]byte, 32)
	rand.Read(key)
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600)
	rootCert, rootKey := writeCA(t, dir, "root", nil, nil)
	newRoot, newRootKey := makeCA(t, "Example New Root", nil, nil)
	inter, interKey := makeCA(t, "Example Mesh Intermediate", newRoot, newRootKey)
	interFile, interKeyFile := writePEM(t, dir, "inter", []*x509.Certificate{inter, newRoot}, interKey)

	dataDir := t.TempDir()
	opts := func(o *control.Options) {
		o.WorkloadTTL = ca.MinWorkloadTTL
		o.CACert, o.CAKey = rootCert, rootKey
		o.CAEncryptionKeyFile = keyFile
	}
	cp := startControlPlane(t, s, dataDir, opts)
	if _, err := os.Stat(filepath.Join(cp.caDir, ca.RootKeyFile)); !os.IsNotExist(err) {
		t.Errorf("a key file was written with the CA in the store: %v", err)
	}
	cp.apply(t, twoServices)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	eventually(t, 30*time.Second, "web reaches catalog", func() error { _, err := catalogOf(web); return err })
	supplied := rootOf(t, cp)
	traffic := startLoop(t, "HTTP through web and two sidecars", func() error { _, err := catalogOf(web); return err })

	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := trellis(t, cp, args...)
		if err != nil {
			t.Fatalf("trellis %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	status := func() controlapi.CAStatus {
		t.Helper()
		var st controlapi.CAStatus
		if err := json.Unmarshal([]byte(run("ca", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	phase := func(want string) {
		t.Helper()
		run("ca", "status", "--wait", "--timeout", "2m")
		if st := status(); st.Rotation == nil || st.Rotation.Phase != want || !st.Rotation.Complete || !st.Rotation.Manual {
			t.Fatalf("rotation %+v, want manual phase %s complete", st.Rotation, want)
		}
	}

	// Without a new CA, a supplied one does not rotate to a generated root.
	if _, _, err := trellis(t, cp, "ca", "rotate"); err == nil || !strings.Contains(err.Error(), "--generate") {
		t.Errorf("rotate without --ca-cert: %v", err)
	}
	out := run("ca", "rotate", "--step", "--ca-cert", interFile, "--ca-key", interKeyFile)
	if !strings.Contains(out, "started") {
		t.Errorf("rotate --step output:\n%s", out)
	}
	if _, _, err := trellis(t, cp, "ca", "rotate"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second rotation: %v, want it refused", err)
	}
	phase("adding")
	run("ca", "rotate", "--step")

	// The control plane restarts in phase 2 with the same flags (its
	// --ca-cert is the root being replaced): the rotation is where it was.
	cp.stop()
	cp = startControlPlane(t, s, dataDir, opts)
	if st := status(); st.Rotation == nil || st.Rotation.Phase != "reissuing" || st.Rotation.From != supplied {
		t.Fatalf("after the restart: rotation %+v", st.Rotation)
	}
	phase("reissuing")
	run("ca", "rotate", "--step")
	if _, _, err := trellis(t, cp, "ca", "rotate", "--abort"); err == nil || !strings.Contains(err.Error(), "already being removed") {
		t.Errorf("abort in phase 3: %v, want it refused", err)
	}
	phase("removing")
	out = run("ca", "rotate", "--step")
	if !strings.Contains(out, "completed") {
		t.Errorf("last step output:\n%s", out)
	}
	traffic.stop(t)

	st := status()
	if st.Rotation != nil || len(st.Roots) != 1 || st.Roots[0].Fingerprint != ca.Fingerprint(newRoot) || st.Roots[0].Source != "intermediate" {
		t.Errorf("after the rotation: rotation %+v, roots %+v", st.Rotation, st.Roots)
	}
	if st.Intermediate.Fingerprint != ca.Fingerprint(inter) || st.Intermediate.Renewable {
		t.Errorf("intermediate %+v, want the supplied one, not renewable", st.Intermediate)
	}
	if st.Proxies.OnActiveRoot != 2 || st.Proxies.BundleCurrent != 2 {
		t.Errorf("proxies %+v", st.Proxies)
	}
	if !strings.Contains(st.Storage, "sealed with "+keyFile) {
		t.Errorf("storage %q does not name the sealed store", st.Storage)
	}
	bundle, _ := os.ReadFile(filepath.Join(cp.caDir, ca.BundleFile))
	if certs := pemCerts(t, bundle); len(certs) != 1 || !certs[0].Equal(newRoot) {
		t.Errorf("%s does not hold only the new root", ca.BundleFile)
	}

	// Another encryption key cannot open the CA.
	cp.stop()
	other := filepath.Join(dir, "other.key")
	rand.Read(key)
	os.WriteFile(other, []byte(base64.StdEncoding.EncodeToString(key)), 0o600)
	err := control.Run(t.Context(), control.Options{
		DataDir: dataDir, XDSAddress: net.JoinHostPort(s.ip(1), "15012"), DebugAddress: net.JoinHostPort(s.ip(1), "15014"),
		CAEncryptionKeyFile: other, Logger: testLogger(t, "control"),
	})
	if err == nil || !strings.Contains(err.Error(), "sealed with the key whose ID is") {
		t.Errorf("control plane with another encryption key: %v", err)
	}
}

// makeCA returns a CA certificate and key, self-signed when parent is nil.
func makeCA(t *testing.T, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"Example"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// writeCA writes a new CA to dir and returns its certificate and key files.
func writeCA(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (string, string) {
	c, k := makeCA(t, "Example "+name, parent, parentKey)
	return writePEM(t, dir, name, []*x509.Certificate{c}, k)
}

func writePEM(t *testing.T, dir, name string, certs []*x509.Certificate, key *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRootRotationAcrossControlPlanes runs two control planes on one etcd
// with the CA sealed in it, each serving one of two workloads. A rotation
// started on one completes only as both control planes report their
// proxies, and loses no request.
func TestRootRotationAcrossControlPlanes(t *testing.T) {
	s := newSubnet(t)
	keyFile := filepath.Join(t.TempDir(), "ca-encryption.key")
	key := make([]byte, 32)
	rand.Read(key)
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600)
	dataA := t.TempDir()
	a := startControlPlane(t, s, dataA, func(o *control.Options) {
		o.WorkloadTTL = ca.MinWorkloadTTL
		o.CAEncryptionKeyFile = keyFile
	})
	// B uses A's embedded etcd as its external one.
	b := startControlPlane(t, s, t.TempDir(), func(o *control.Options) {
		o.XDSAddress = net.JoinHostPort(s.ip(2), "15012")
		o.DebugAddress = net.JoinHostPort(s.ip(2), "15014")
		o.EtcdEndpoints = []string{"unix://" + filepath.Join(dataA, "etcd.sock")}
		o.WorkloadTTL = ca.MinWorkloadTTL
		o.CAEncryptionKeyFile = keyFile
	})
	if rootOf(t, a) != rootOf(t, b) {
		t.Fatal("the control planes do not share the CA")
	}
	a.apply(t, twoServices)
	startWorkload(t, s, a, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, b, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	eventually(t, 30*time.Second, "web reaches catalog", func() error { _, err := catalogOf(web); return err })
	checkConnected(t, a, "web-1.demo")
	checkConnected(t, b, "catalog-1.demo")
	old := rootOf(t, a)
	traffic := startLoop(t, "HTTP from a proxy of A to a proxy of B", func() error { _, err := catalogOf(web); return err })

	out, errOut, err := trellis(t, b, "ca", "rotate", "--wait", "--timeout", "3m")
	t.Logf("trellis ca rotate --wait (through B):\n%s%s", out, errOut)
	if err != nil {
		t.Fatal(err)
	}
	traffic.stop(t)
	// The rotation completed through B; A rereads the CA every second and
	// reports the last generation (the old root gone) soon after.
	var st controlapi.CAStatus
	eventually(t, 15*time.Second, "A sees the rotation completed by both control planes", func() error {
		out, _, err := trellis(t, a, "ca", "status", "-o", "json")
		if err != nil {
			return err
		}
		st = controlapi.CAStatus{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Rotation != nil || len(st.Roots) != 1 || st.Roots[0].Fingerprint == old || st.Proxies.OnActiveRoot != 2 || st.Proxies.BundleCurrent != 2 {
			return fmt.Errorf("rotation %+v, roots %+v, proxies %+v", st.Rotation, st.Roots, st.Proxies)
		}
		if len(st.ControlPlanes) != 2 {
			return fmt.Errorf("control planes %+v, want both", st.ControlPlanes)
		}
		for _, cp := range st.ControlPlanes {
			if !cp.Current {
				return fmt.Errorf("control plane %s is behind", cp.ID)
			}
		}
		return nil
	})
	eventually(t, 10*time.Second, "both control planes write the new root to their CA directories", func() error {
		for _, cp := range []*controlPlane{a, b} {
			if got := rootOf(t, cp); got != st.Roots[0].Fingerprint {
				return fmt.Errorf("%s has root %s", cp.caDir, ca.ShortFingerprint(got))
			}
		}
		return nil
	})
}
