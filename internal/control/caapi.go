package control

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/controlapi"
)

// caRoutes adds the CA's API: its status, rotation requests and the
// trust bundle.
func (cp *controlPlane) caRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+controlapi.PathCA, func(w http.ResponseWriter, r *http.Request) {
		// Another control plane may have changed the CA since the last
		// round: show the latest.
		if changed, err := cp.ca.Reload(r.Context()); err == nil && changed {
			cp.trust.follow()
			cp.trust.poke()
		}
		st, err := cp.caStatus(r)
		if err != nil {
			writeErrors(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET "+controlapi.PathCABundle, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, controlapi.CABundle{PEM: string(cp.ca.BundlePEM())})
	})
	mux.HandleFunc("POST "+controlapi.PathCARotate, cp.handleRotate)
}

func (cp *controlPlane) handleRotate(w http.ResponseWriter, r *http.Request) {
	var req controlapi.RotateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, "rotate: malformed request: "+err.Error())
		return
	}
	ctx := r.Context()
	var msg string
	switch req.Action {
	case controlapi.RotateStart, controlapi.RotateStep:
		rot := cp.ca.State().Rotation
		if req.Action == controlapi.RotateStep && rot != nil {
			code, m := cp.step(r, rot)
			if code != http.StatusOK {
				writeErrors(w, code, m)
				return
			}
			msg = m
			break
		}
		next, err := cp.rotateTo(req)
		if err != nil {
			writeErrors(w, http.StatusBadRequest, err.Error())
			return
		}
		o := ca.RotateOptions{Manual: req.Manual || req.Action == controlapi.RotateStep, Next: next, Generate: req.Generate}
		s, err := cp.ca.StartRotation(ctx, o)
		switch {
		case errors.Is(err, ca.ErrRotationRunning):
			writeErrors(w, http.StatusConflict, err.Error())
			return
		case err != nil:
			writeErrors(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		msg = fmt.Sprintf("started %s: the new root %s joins the trust bundle", s.Rotation.ID, ca.ShortFingerprint(s.Rotation.To))
	case controlapi.RotateAbort:
		prev := cp.ca.State().Rotation
		s, err := cp.ca.AbortRotation(ctx)
		switch {
		case err == nil && prev != nil && prev.Aborted:
			msg = fmt.Sprintf("%s was aborted already; it is returning to root %s (phase %d %s)",
				prev.ID, ca.ShortFingerprint(prev.To), prev.Phase.Number(), prev.Phase)
		case errors.Is(err, ca.ErrNoRotation):
			msg = "no root rotation is running; nothing to abort"
		case errors.Is(err, ca.ErrAbortTooLate):
			writeErrors(w, http.StatusConflict, err.Error())
			return
		case err != nil:
			writeErrors(w, http.StatusServiceUnavailable, err.Error())
			return
		case s.Rotation == nil:
			msg = "rotation aborted: the new root leaves the trust bundle"
		default:
			msg = "rotation aborted: the old root signs again; proxies renew to it, then the new root leaves the trust bundle"
		}
	default:
		writeErrors(w, http.StatusBadRequest, fmt.Sprintf("rotate: unknown action %q: want %s, %s or %s",
			req.Action, controlapi.RotateStart, controlapi.RotateStep, controlapi.RotateAbort))
		return
	}
	cp.trust.follow()
	cp.trust.reportControlPlane(ctx)
	cp.trust.poke()
	st, err := cp.caStatus(r)
	if err != nil {
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	st.Message = msg
	writeJSON(w, st)
}

// rotateTo loads the CA a rotation request names, or returns nil to
// generate one.
func (cp *controlPlane) rotateTo(req controlapi.RotateRequest) (*ca.Authority, error) {
	switch {
	case req.CACert == "" && req.CAKey == "":
		return nil, nil
	case req.CACert == "" || req.CAKey == "":
		return nil, errors.New("rotate: --ca-cert and --ca-key go together")
	case !filepath.IsAbs(req.CACert) || !filepath.IsAbs(req.CAKey):
		return nil, errors.New("rotate: --ca-cert and --ca-key must be absolute paths on the control plane's host")
	}
	return ca.LoadSupplied(req.CACert, req.CAKey, cp.opts.TrustDomain, time.Now(), cp.log)
}

// step advances a manual rotation by one phase if the phase is complete.
func (cp *controlPlane) step(r *http.Request, rot *ca.Rotation) (int, string) {
	if !rot.Manual {
		return http.StatusConflict, fmt.Sprintf("%s advances by itself (it was not started with --step); follow it with `trellis ca status`", rot.ID)
	}
	v, err := cp.trust.view(r.Context())
	if err != nil {
		return http.StatusServiceUnavailable, err.Error()
	}
	if !v.complete() {
		var b strings.Builder
		fmt.Fprintf(&b, "phase %d (%s) is not complete: %d of %d proxies done", rot.Phase.Number(), rot.Phase, v.progress.Done, v.progress.Total)
		for _, w := range v.progress.Waiting {
			b.WriteString("\n  " + w)
		}
		for _, l := range v.lagging {
			b.WriteString("\n  control plane " + l + " does not use the latest CA state yet")
		}
		b.WriteString("\nnothing changed; step again when `trellis ca status` shows the phase complete")
		return http.StatusConflict, b.String()
	}
	s, err := cp.ca.Advance(r.Context(), rot.Phase)
	switch {
	case errors.Is(err, ca.ErrPhaseChanged):
		return http.StatusConflict, err.Error() + "; see `trellis ca status`"
	case err != nil:
		return http.StatusServiceUnavailable, err.Error()
	case s.Rotation == nil:
		return http.StatusOK, fmt.Sprintf("%s completed: the old root is gone", rot.ID)
	}
	return http.StatusOK, fmt.Sprintf("%s: phase %d, %s", rot.ID, s.Rotation.Phase.Number(), s.Rotation.Phase.Describe())
}

// caStatus describes the CA, the rotation and the proxies.
func (cp *controlPlane) caStatus(r *http.Request) (*controlapi.CAStatus, error) {
	v, err := cp.trust.view(r.Context())
	if err != nil {
		return nil, err
	}
	s := v.state
	out := &controlapi.CAStatus{
		TrustDomain: s.TrustDomain,
		Storage:     cp.ca.Storage().String(),
		Generation:  s.Generation,
	}
	bundle := s.Bundle()
	addRoot := func(a *ca.Authority, state string) {
		if a == nil || slices.ContainsFunc(out.Roots, func(r controlapi.CARoot) bool { return r.Fingerprint == ca.Fingerprint(a.Root) }) {
			return
		}
		out.Roots = append(out.Roots, controlapi.CARoot{
			Fingerprint: ca.Fingerprint(a.Root), Subject: a.Root.Subject.String(),
			NotBefore: a.Root.NotBefore, NotAfter: a.Root.NotAfter,
			State: state, InBundle: slices.ContainsFunc(bundle, a.Root.Equal), Source: string(a.Source),
		})
	}
	addRoot(s.Active, "active")
	addRoot(s.Next, "new")
	addRoot(s.Previous, "old")
	a := s.Active
	out.Intermediate = controlapi.CACertificate{
		Fingerprint: ca.Fingerprint(a.Signer), Subject: a.Signer.Subject.String(), Issuer: a.Signer.Issuer.String(),
		NotAfter: a.Signer.NotAfter, Root: ca.Fingerprint(a.Root), Renewable: a.RootKey != nil,
	}
	if rot := s.Rotation; rot != nil {
		out.Rotation = &controlapi.CARotation{
			ID: rot.ID, Phase: string(rot.Phase), PhaseNumber: rot.Phase.Number(), Description: rot.Phase.Describe(),
			Manual: rot.Manual, Aborted: rot.Aborted, From: rot.From, To: rot.To, StartedAt: rot.StartedAt, PhaseSince: rot.PhaseSince,
			Total: v.progress.Total, Done: v.progress.Done, Waiting: v.progress.Waiting, Lagging: v.lagging, Complete: v.complete(),
		}
	}
	if l := s.Last; l != nil {
		out.LastRotation = &controlapi.CALastRotation{ID: l.ID, Outcome: l.Outcome, From: l.From, To: l.To, StartedAt: l.StartedAt, EndedAt: l.EndedAt}
	}
	active := ca.Fingerprint(a.Root)
	current := fingerprintSet(bundle)
	for _, pt := range v.proxies {
		p := &out.Proxies
		p.Registered++
		if !pt.Reported {
			continue
		}
		p.Reported++
		if pt.TakesBundle {
			p.TakingBundle++
			if sameSet(pt.Bundle, current) {
				p.BundleCurrent++
			}
		}
		switch pt.CertRoot {
		case active:
			p.OnActiveRoot++
		case "":
			p.CertUnknown++
		default:
			p.OnOtherRoot++
		}
	}
	for id, gen := range v.controlPlanes {
		out.ControlPlanes = append(out.ControlPlanes, controlapi.CAControlPlane{ID: id, Generation: gen, Current: gen >= s.Generation})
	}
	slices.SortFunc(out.ControlPlanes, func(a, b controlapi.CAControlPlane) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func fingerprintSet(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, ca.Fingerprint(c))
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
