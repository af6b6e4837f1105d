package ca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// sign issues a workload certificate and returns its chain.
func sign(t *testing.T, c *CA) []*x509.Certificate {
	t.Helper()
	chain, _ := signWithKey(t, c)
	return chain
}

func signWithKey(t *testing.T, c *CA) ([]*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newP256(t)
	chain, err := c.Sign(mustParseCSR(t, makeCSR(t, key, testID.String())), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return chain, key
}

// verifies reports whether chain verifies against roots.
func verifies(chain []*x509.Certificate, roots []*x509.Certificate) bool {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: certPool(roots), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func fingerprints(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, Fingerprint(c))
	}
	return out
}

// reopen opens the CA directory again, as a restarted control plane does,
// and checks that it finds the same state.
func reopen(t *testing.T, c *CA, dir string) *CA {
	t.Helper()
	again := openCA(t, Options{Dir: dir, Now: c.now})
	if got, want := fingerprints(again.Roots()), fingerprints(c.Roots()); !slices.Equal(got, want) {
		t.Fatalf("after reopening, bundle %v, want %v", got, want)
	}
	if (again.State().Rotation == nil) != (c.State().Rotation == nil) ||
		(c.State().Rotation != nil && *again.State().Rotation != *c.State().Rotation) {
		t.Fatalf("after reopening, rotation %+v, want %+v", again.State().Rotation, c.State().Rotation)
	}
	return again
}

// TestRotation runs a whole rotation, reopening the directory at each
// phase: the bundle and the signer are what each phase promises, and
// certificates of both roots verify against the bundle whenever both are
// in use.
func TestRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	clk := newClock(time.Now())
	c := openCA(t, Options{Dir: dir, Now: clk.Now})
	oldRoot := c.activeRoot()
	oldCert := sign(t, c)

	s, err := c.StartRotation(t.Context(), RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rotation
	if r.Phase != PhaseAdding || r.From != Fingerprint(oldRoot) || r.Manual {
		t.Fatalf("rotation %+v", r)
	}
	newRoot := s.Next.Root
	if got := fingerprints(c.Roots()); !slices.Equal(got, []string{r.From, r.To}) {
		t.Fatalf("phase 1 bundle %v, want old then new", got)
	}
	if chain := sign(t, c); chain[1].CheckSignatureFrom(oldRoot) != nil {
		t.Fatal("phase 1: certificates must still come from the old root")
	}
	if _, err := c.StartRotation(t.Context(), RotateOptions{}); !errors.Is(err, ErrRotationRunning) {
		t.Errorf("second rotation: %v, want ErrRotationRunning", err)
	}
	if _, err := c.Advance(t.Context(), PhaseReissuing); !errors.Is(err, ErrPhaseChanged) {
		t.Errorf("advance from the wrong phase: %v, want ErrPhaseChanged", err)
	}
	c = reopen(t, c, dir)

	clk.Advance(time.Minute)
	if _, err := c.Advance(t.Context(), PhaseAdding); err != nil {
		t.Fatal(err)
	}
	if got := fingerprints(c.Roots()); !slices.Equal(got, []string{r.To, r.From}) {
		t.Fatalf("phase 2 bundle %v, want new then old", got)
	}
	newCert, newKey := signWithKey(t, c)
	if newCert[1].CheckSignatureFrom(newRoot) != nil {
		t.Fatal("phase 2: certificates must come from the new root")
	}
	if !verifies(newCert, c.Roots()) || !verifies(oldCert, c.Roots()) {
		t.Fatal("phase 2: certificates of both roots must verify against the bundle")
	}
	verifySVID(t, newCert, newKey, c.Roots(), clk.Now())
	c = reopen(t, c, dir)

	if _, err := c.Advance(t.Context(), PhaseReissuing); err != nil {
		t.Fatal(err)
	}
	if got := fingerprints(c.Roots()); !slices.Equal(got, []string{r.To}) {
		t.Fatalf("phase 3 bundle %v, want only the new root", got)
	}
	if verifies(oldCert, c.Roots()) || !verifies(newCert, c.Roots()) {
		t.Fatal("phase 3: only certificates of the new root may verify")
	}
	if _, err := c.AbortRotation(t.Context()); !errors.Is(err, ErrAbortTooLate) {
		t.Errorf("abort in phase 3: %v, want ErrAbortTooLate", err)
	}
	c = reopen(t, c, dir)

	s, err = c.Advance(t.Context(), PhaseRemoving)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rotation != nil || s.Last == nil || s.Last.Outcome != "completed" || s.Last.From != r.From || s.Last.To != r.To {
		t.Fatalf("after the rotation: rotation %+v, last %+v", s.Rotation, s.Last)
	}
	if !slices.Equal(s.Retired, []string{r.From}) {
		t.Errorf("retired %v, want the old root", s.Retired)
	}
	if _, err := c.Advance(t.Context(), PhaseRemoving); !errors.Is(err, ErrNoRotation) {
		t.Errorf("advance without rotation: %v", err)
	}
	reopen(t, c, dir)
}

func TestRotationAbort(t *testing.T) {
	t.Run("phase 1 drops the new root", func(t *testing.T) {
		c := openCA(t, Options{})
		old := Fingerprint(c.activeRoot())
		if _, err := c.StartRotation(t.Context(), RotateOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := c.AbortRotation(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if s.Rotation != nil || s.Last.Outcome != "aborted" || len(s.Retired) != 0 {
			t.Fatalf("rotation %+v, last %+v, retired %v", s.Rotation, s.Last, s.Retired)
		}
		if got := fingerprints(c.Roots()); !slices.Equal(got, []string{old}) {
			t.Errorf("bundle %v, want only the old root", got)
		}
	})
	t.Run("phase 2 runs back to the old root", func(t *testing.T) {
		c := openCA(t, Options{})
		oldRoot := c.activeRoot()
		s, err := c.StartRotation(t.Context(), RotateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		from, to := s.Rotation.From, s.Rotation.To
		if _, err := c.Advance(t.Context(), PhaseAdding); err != nil {
			t.Fatal(err)
		}
		newCert := sign(t, c)
		s, err = c.AbortRotation(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		r := s.Rotation
		if r == nil || !r.Aborted || r.Phase != PhaseReissuing || r.From != to || r.To != from {
			t.Fatalf("rotation after abort: %+v", r)
		}
		if got := fingerprints(c.Roots()); !slices.Equal(got, []string{from, to}) {
			t.Errorf("bundle %v, want old (active again) then new", got)
		}
		if chain := sign(t, c); chain[1].CheckSignatureFrom(oldRoot) != nil {
			t.Error("after the abort, certificates must come from the old root again")
		}
		if !verifies(newCert, c.Roots()) {
			t.Error("certificates of the new root must verify until it leaves the bundle")
		}
		if again, err := c.AbortRotation(t.Context()); err != nil || again.Generation != s.Generation {
			t.Errorf("second abort: %v (generation %d, want unchanged %d)", err, again.Generation, s.Generation)
		}
		if _, err := c.Advance(t.Context(), PhaseReissuing); err != nil {
			t.Fatal(err)
		}
		if got := fingerprints(c.Roots()); !slices.Equal(got, []string{from}) {
			t.Errorf("bundle %v, want only the old root", got)
		}
		s, err = c.Advance(t.Context(), PhaseRemoving)
		if err != nil {
			t.Fatal(err)
		}
		if s.Last.Outcome != "aborted" || !slices.Equal(s.Retired, []string{to}) {
			t.Errorf("last %+v, retired %v", s.Last, s.Retired)
		}
	})
}

// The control plane's own certificate follows the signer: a new
// intermediate means a new certificate at the next handshake.
func TestServerCertificateFollowsRotation(t *testing.T) {
	c := openCA(t, Options{})
	get := c.ServerCertificateFunc(identity.ControlPlane(testTD), nil, nil)
	first, err := get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartRotation(t.Context(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if again, _ := get(nil); again != first {
		t.Error("phase 1 must not change the server certificate: the signer is the same")
	}
	if _, err := c.Advance(t.Context(), PhaseAdding); err != nil {
		t.Fatal(err)
	}
	renewed, err := get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || renewed.Leaf.CheckSignatureFrom(c.signer()) != nil {
		t.Error("the server certificate was not reissued by the new intermediate")
	}
}

func TestRotationProgress(t *testing.T) {
	const oldFP, newFP = "aaaa", "bbbb"
	proxy := func(id string, bundle []string, certRoot string) ProxyTrust {
		return ProxyTrust{ID: id, Reported: true, TakesBundle: true, Bundle: bundle, CertRoot: certRoot}
	}
	grpcApp := ProxyTrust{ID: "grpc", Reported: true, CertRoot: oldFP}
	for _, tc := range []struct {
		name    string
		phase   Phase
		proxies []ProxyTrust
		done    int
		waiting []string
	}{
		{"adding: one acknowledged, one not", PhaseAdding, []ProxyTrust{
			proxy("a", []string{oldFP, newFP}, oldFP), proxy("b", []string{oldFP}, oldFP),
		}, 1, []string{"b: has not acknowledged a trust bundle with the new root bbbb"}},
		{"adding: proxyless gRPC takes no bundle", PhaseAdding, []ProxyTrust{grpcApp}, 1, nil},
		{"adding: unreported", PhaseAdding, []ProxyTrust{{ID: "c"}}, 0, []string{"c: no control plane has reported on it yet"}},
		{"reissuing", PhaseReissuing, []ProxyTrust{
			proxy("a", []string{newFP, oldFP}, newFP), proxy("b", []string{newFP, oldFP}, oldFP), grpcApp, proxy("d", nil, ""),
		}, 1, []string{
			"b: holds a certificate of root aaaa", "d: holds a certificate of an unknown root", "grpc: holds a certificate of root aaaa",
		}},
		{"removing", PhaseRemoving, []ProxyTrust{
			proxy("a", []string{newFP}, newFP), proxy("b", []string{newFP, oldFP}, newFP),
		}, 1, []string{"b: has not acknowledged a trust bundle without the old root aaaa"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Rotation{Phase: tc.phase, From: oldFP, To: newFP}
			p := r.Progress(tc.proxies)
			if p.Total != len(tc.proxies) || p.Done != tc.done || !slices.Equal(p.Waiting, tc.waiting) {
				t.Errorf("Progress = %+v, want done %d waiting %q", p, tc.done, tc.waiting)
			}
			if p.Complete() != (tc.done == len(tc.proxies)) {
				t.Error("Complete disagrees with Done")
			}
		})
	}
	// A rotation to an intermediate under the same root has nothing to
	// remove.
	same := &Rotation{Phase: PhaseRemoving, From: oldFP, To: oldFP}
	if p := same.Progress([]ProxyTrust{proxy("a", []string{oldFP}, oldFP)}); !p.Complete() {
		t.Errorf("same root: %+v", p)
	}
}

func TestRotationString(t *testing.T) {
	r := &Rotation{ID: "rotation-x", Phase: PhaseReissuing, Aborted: true}
	if s := r.String(); !strings.Contains(s, "phase 2/3 reissuing") || !strings.Contains(s, "aborted") {
		t.Errorf("String() = %q", s)
	}
}

// Control planes sharing a CA may both see a phase complete: only one
// advances it, the other learns that the phase changed.
func TestAdvanceOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a := openCA(t, Options{Dir: dir})
	b := openCA(t, Options{Dir: dir})
	if _, err := a.StartRotation(t.Context(), RotateOptions{Manual: true}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, c := range []*CA{a, b} {
		go func() {
			_, err := c.Advance(t.Context(), PhaseAdding)
			errs <- err
		}()
	}
	var ok, changed int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, ErrPhaseChanged):
			changed++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || changed != 1 {
		t.Errorf("%d advanced, %d found the phase changed; want one each", ok, changed)
	}
	if _, err := b.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := b.State().Rotation; r == nil || r.Phase != PhaseReissuing || !r.Manual {
		t.Errorf("rotation %+v, want a manual rotation in phase 2", r)
	}
}
