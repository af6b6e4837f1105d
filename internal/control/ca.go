package control

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/castore"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/translate"
)

// The control planes of a mesh share one CA and follow it together:
//
//	every caInterval, on each control plane:
//	  CA.Reload ──bundle changed──► push every proxy its new ROOTCA
//	  report its generation          ca/controlplanes/<id>  (its own lease)
//	  report each connected proxy:   ca/proxies/<node>      (the proxy's registration lease)
//	    the roots of the ROOTCA it acknowledged (xds), the root its last
//	    certificate chains to (what the CA issued to it, or presented)
//	  rotation running, automatic, phase complete for every registered
//	  proxy and every control plane on the latest generation ──► CA.Advance
//
// Any control plane may advance a rotation: the CA's storage lets only
// one move each phase (ca.ErrPhaseChanged for the others), so a
// rotation goes on when the control plane that started it stops.

// Store keys of what the control planes report about the CA.
const (
	caControlPlanesPrefix = "ca/controlplanes/"
	caProxiesPrefix       = "ca/proxies/"
)

const (
	// caInterval is how often a control plane rereads the CA, reports
	// and checks the rotation.
	caInterval = time.Second
	// caLeaseTTL bounds how long the report of a control plane that died
	// holds up a rotation.
	caLeaseTTL = 15 * time.Second
)

// proxyTrust is what a control plane reports about one proxy it serves.
type proxyTrust struct {
	// TakesBundle: the proxy gets the trust bundle over SDS.
	TakesBundle bool `json:"takesBundle"`
	// Bundle are the fingerprints of the roots of the ROOTCA secret the
	// proxy acknowledged.
	Bundle []string `json:"bundle,omitempty"`
	// CertRoot is the fingerprint of the root its certificate chains to,
	// empty if unknown.
	CertRoot     string    `json:"certRoot,omitempty"`
	CertNotAfter time.Time `json:"certNotAfter,omitzero"`
	ControlPlane string    `json:"controlPlane"`
}

// controlPlaneReport is what a control plane reports about itself.
type controlPlaneReport struct {
	Generation uint64 `json:"generation"`
}

// openCA opens the CA where opts say: sealed in the store st when
// CAEncryptionKeyFile is set, else in caDir.
func openCA(opts Options, caDir string, st *store.Store, log *slog.Logger) (*ca.CA, error) {
	var supplied *ca.Authority
	switch {
	case opts.CACert != "" && opts.CAKey != "":
		var err error
		if supplied, err = ca.LoadSupplied(opts.CACert, opts.CAKey, opts.TrustDomain, time.Now(), log); err != nil {
			return nil, fmt.Errorf("control: --ca-cert, --ca-key: %w", err)
		}
	case opts.CACert != "" || opts.CAKey != "":
		return nil, errors.New("control: --ca-cert and --ca-key go together: the CA certificate (a root, or an intermediate with its chain) and its key")
	}
	caOpts := ca.Options{TrustDomain: opts.TrustDomain, WorkloadTTL: opts.WorkloadTTL, Supplied: supplied, Logger: log}
	if opts.CAEncryptionKeyFile == "" {
		caOpts.Storage = ca.NewDirStorage(caDir, log)
	} else {
		key, err := castore.ReadKeyFile(opts.CAEncryptionKeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("control: --ca-encryption-key-file: %w", err)
		}
		if caOpts.Storage, err = castore.New(st, key, opts.CAEncryptionKeyFile); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
	}
	authority, err := ca.Open(caOpts)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if opts.CAEncryptionKeyFile != "" {
		// Certificates only: proxies on this host find the bundle where
		// they would with a CA directory.
		if err := os.MkdirAll(caDir, 0o700); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		if err := authority.WriteCertificates(caDir); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
	}
	return authority, nil
}

// caTrust follows the shared CA for one control plane (see above).
type caTrust struct {
	cp *controlPlane
	// ctx bounds the control plane's run: its report's lease lives as
	// long.
	ctx context.Context
	// id names this control plane in ca/controlplanes/.
	id string
	// certDir receives the CA's certificates when the CA is not kept in
	// a directory; empty otherwise.
	certDir string
	kick    chan struct{}

	// reportMu serializes reportControlPlane (the run loop and API
	// requests), so that one lease is granted.
	reportMu sync.Mutex

	mu        sync.Mutex
	lease     *store.Lease
	reported  uint64            // generation last reported
	published map[string][]byte // node → proxyTrust last written
	bundles   map[string]ackedBundle
	chains    map[string]chainRoot
	bundle    []byte // the bundle the proxies were last pushed
	gen       uint64 // the generation the bundle and certificates were taken from
	reloadErr string // the last error rereading the CA, logged once
}

type ackedBundle struct {
	version string
	roots   []string
}

type chainRoot struct {
	chain    []byte
	gen      uint64
	root     string
	notAfter time.Time
}

func newCATrust(ctx context.Context, cp *controlPlane, id, certDir string) *caTrust {
	return &caTrust{
		ctx: ctx, cp: cp, id: id, certDir: certDir, kick: make(chan struct{}, 1),
		published: map[string][]byte{}, bundles: map[string]ackedBundle{}, chains: map[string]chainRoot{},
		bundle: cp.ca.BundlePEM(), gen: cp.ca.State().Generation,
	}
}

// poke runs a round now.
func (t *caTrust) poke() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run follows the CA until ctx is done, then withdraws this control
// plane's report.
func (t *caTrust) run(ctx context.Context) error {
	tick := time.NewTicker(caInterval)
	defer tick.Stop()
	for {
		t.round(ctx)
		select {
		case <-ctx.Done():
			t.mu.Lock()
			lease := t.lease
			t.mu.Unlock()
			if lease != nil {
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = lease.Revoke(rctx)
				cancel()
			}
			return nil
		case <-tick.C:
		case <-t.kick:
		}
	}
}

func (t *caTrust) round(ctx context.Context) {
	_, err := t.cp.ca.Reload(ctx)
	switch {
	case err != nil && ctx.Err() == nil && err.Error() != t.reloadErr:
		t.reloadErr = err.Error()
		t.cp.log.Warn("cannot reread the CA; serving with the state it has", "err", err)
	case err == nil && t.reloadErr != "":
		t.reloadErr = ""
		t.cp.log.Info("rereading the CA works again")
	}
	t.follow()
	t.reportControlPlane(ctx)
	t.reportProxies(ctx)
	t.drive(ctx)
}

// follow pushes every proxy when the trust bundle changed, and writes the
// certificates out when the CA is not a directory.
func (t *caTrust) follow() {
	s := t.cp.ca.State()
	bundle := t.cp.ca.BundlePEM()
	t.mu.Lock()
	changedBundle := !bytes.Equal(bundle, t.bundle)
	changedGen := s.Generation != t.gen
	t.bundle, t.gen = bundle, s.Generation
	t.mu.Unlock()
	if changedGen && t.certDir != "" {
		if err := t.cp.ca.WriteCertificates(t.certDir); err != nil {
			t.cp.log.Warn("writing the CA's certificates", "dir", t.certDir, "err", err)
		}
	}
	if changedBundle {
		t.cp.log.Info("trust bundle changed; pushing it to every proxy", "roots", len(t.cp.ca.Roots()))
		t.cp.mu.Lock()
		t.cp.markDirtyLocked(allProxies)
		t.cp.mu.Unlock()
		t.cp.trigger()
	}
}

// reportControlPlane writes the generation of the CA this control plane
// uses, under a lease of its own.
func (t *caTrust) reportControlPlane(ctx context.Context) {
	t.reportMu.Lock()
	defer t.reportMu.Unlock()
	gen := t.cp.ca.State().Generation
	t.mu.Lock()
	lease, reported := t.lease, t.reported
	t.mu.Unlock()
	if lease != nil && reported == gen {
		return
	}
	if lease == nil {
		var err error
		if lease, err = t.cp.store.Grant(ctx, caLeaseTTL); err != nil {
			return
		}
		t.mu.Lock()
		t.lease = lease
		t.mu.Unlock()
		t.cp.wg.Add(1)
		go func() {
			defer t.cp.wg.Done()
			_ = lease.KeepAlive(t.ctx)
		}()
	}
	b, _ := json.Marshal(controlPlaneReport{Generation: gen})
	if err := lease.Put(ctx, caControlPlanesPrefix+t.id, b); err != nil {
		return
	}
	t.mu.Lock()
	t.reported = gen
	t.mu.Unlock()
}

// reportProxies writes, for each connected proxy whose trust changed,
// what it trusts and holds, under its registration's lease.
func (t *caTrust) reportProxies(ctx context.Context) {
	type node struct {
		id    string
		lease *store.Lease
		kind  string
		chain []byte
	}
	var nodes []node
	t.cp.mu.Lock()
	for id, c := range t.cp.connected {
		n := node{id: id, lease: c.lease, chain: t.cp.chains[id]}
		if m := t.cp.registrations[id]; m != nil {
			n.kind = m.Kind
		}
		nodes = append(nodes, n)
	}
	t.cp.mu.Unlock()

	s := t.cp.ca.State()
	live := map[string]bool{}
	for _, n := range nodes {
		live[n.id] = true
		pt := proxyTrust{
			TakesBundle:  n.kind == nodemeta.KindSidecar || n.kind == nodemeta.KindGateway,
			ControlPlane: t.id,
		}
		if pt.TakesBundle {
			pt.Bundle = t.ackedBundle(n.id)
		}
		pt.CertRoot, pt.CertNotAfter = t.chainRoot(n.id, n.chain, s)
		b, _ := json.Marshal(pt)
		t.mu.Lock()
		same := bytes.Equal(t.published[n.id], b)
		t.mu.Unlock()
		if same {
			continue
		}
		if err := n.lease.Put(ctx, caProxiesPrefix+n.id, b); err != nil {
			continue
		}
		t.mu.Lock()
		t.published[n.id] = b
		t.mu.Unlock()
	}
	t.mu.Lock()
	maps.DeleteFunc(t.published, func(id string, _ []byte) bool { return !live[id] })
	maps.DeleteFunc(t.bundles, func(id string, _ ackedBundle) bool { return !live[id] })
	maps.DeleteFunc(t.chains, func(id string, _ chainRoot) bool { return !live[id] })
	t.mu.Unlock()
}

// ackedBundle returns the fingerprints of the roots in the ROOTCA secret
// the proxy acknowledged last.
func (t *caTrust) ackedBundle(id string) []string {
	version, ok := t.cp.xds.AckedVersion(id, resource.SecretType)
	if !ok {
		return nil
	}
	t.mu.Lock()
	cached, ok := t.bundles[id]
	t.mu.Unlock()
	if ok && cached.version == version {
		return cached.roots
	}
	msg, version, ok := t.cp.xds.Acked(id, resource.SecretType, translate.SecretTrustBundle)
	var roots []string
	if secret, isSecret := msg.(*tlsv3.Secret); ok && isSecret {
		for _, c := range parseCerts(secret.GetValidationContext().GetTrustedCa().GetInlineBytes()) {
			roots = append(roots, ca.Fingerprint(c))
		}
	}
	t.mu.Lock()
	t.bundles[id] = ackedBundle{version: version, roots: roots}
	t.mu.Unlock()
	return roots
}

// chainRoot returns the fingerprint of the CA root a PEM chain (leaf
// first, without root) leads to, among the roots the CA holds, and the
// leaf's expiry.
func (t *caTrust) chainRoot(id string, chain []byte, s *ca.State) (string, time.Time) {
	t.mu.Lock()
	cached, ok := t.chains[id]
	t.mu.Unlock()
	if ok && cached.gen == s.Generation && bytes.Equal(cached.chain, chain) {
		return cached.root, cached.notAfter
	}
	var root string
	var notAfter time.Time
	if certs := parseCerts(chain); len(certs) > 0 {
		notAfter = certs[0].NotAfter
		top := certs[len(certs)-1]
		for _, a := range []*ca.Authority{s.Active, s.Next, s.Previous} {
			if a != nil && top.CheckSignatureFrom(a.Root) == nil {
				root = ca.Fingerprint(a.Root)
				break
			}
		}
	}
	t.mu.Lock()
	t.chains[id] = chainRoot{chain: chain, gen: s.Generation, root: root, notAfter: notAfter}
	t.mu.Unlock()
	return root, notAfter
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// rotationView is where the mesh stands with the CA: every registered
// proxy's trust, as the control planes report it, and the control planes'
// generations.
type rotationView struct {
	state         *ca.State
	proxies       []ca.ProxyTrust
	records       map[string]proxyTrust
	controlPlanes map[string]uint64
	// progress and lagging are those of the current phase, when a
	// rotation runs.
	progress ca.Progress
	lagging  []string
}

// complete reports whether the rotation's current phase is done
// everywhere.
func (v *rotationView) complete() bool {
	return v.state.Rotation != nil && v.progress.Complete() && len(v.lagging) == 0
}

// view reads what the control planes reported.
func (t *caTrust) view(ctx context.Context) (*rotationView, error) {
	s := t.cp.ca.State()
	v := &rotationView{state: s, records: map[string]proxyTrust{}, controlPlanes: map[string]uint64{}}
	items, _, err := t.cp.store.List(ctx, caProxiesPrefix)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		var pt proxyTrust
		if json.Unmarshal(it.Value, &pt) == nil {
			v.records[strings.TrimPrefix(it.Key, caProxiesPrefix)] = pt
		}
	}
	if items, _, err = t.cp.store.List(ctx, caControlPlanesPrefix); err != nil {
		return nil, err
	}
	for _, it := range items {
		var r controlPlaneReport
		if json.Unmarshal(it.Value, &r) == nil {
			v.controlPlanes[strings.TrimPrefix(it.Key, caControlPlanesPrefix)] = r.Generation
		}
	}
	t.cp.mu.Lock()
	regs := maps.Clone(t.cp.registrations)
	t.cp.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(regs)) {
		pt := ca.ProxyTrust{ID: id}
		if r, ok := v.records[id]; ok {
			pt.Reported, pt.TakesBundle, pt.Bundle, pt.CertRoot = true, r.TakesBundle, r.Bundle, r.CertRoot
		}
		v.proxies = append(v.proxies, pt)
	}
	if s.Rotation != nil {
		v.progress = s.Rotation.Progress(v.proxies)
		for _, id := range slices.Sorted(maps.Keys(v.controlPlanes)) {
			if v.controlPlanes[id] < s.Generation {
				v.lagging = append(v.lagging, id)
			}
		}
	}
	return v, nil
}

// drive advances an automatic rotation whose phase is complete.
func (t *caTrust) drive(ctx context.Context) {
	r := t.cp.ca.State().Rotation
	if r == nil || r.Manual {
		return
	}
	v, err := t.view(ctx)
	if err != nil || !v.complete() {
		return
	}
	if _, err := t.cp.ca.Advance(ctx, r.Phase); err != nil {
		if !errors.Is(err, ca.ErrPhaseChanged) && ctx.Err() == nil {
			t.cp.log.Warn("advancing the root rotation", "err", err)
		}
		return
	}
	t.follow()
	t.poke()
}
