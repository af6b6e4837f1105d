package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A root rotation replaces the active root without a moment in which two
// proxies do not trust each other:
//
//	idle          bundle [old]        signer old   ─StartRotation─┐
//	1 adding      bundle [old, new]   signer old   every proxy acknowledged a bundle with new
//	2 reissuing   bundle [new, old]   signer new   every proxy holds a certificate of new
//	3 removing    bundle [new]        signer new   every proxy acknowledged a bundle without old
//	                                               (the old root's keys are dropped at the end)
//	idle          bundle [new]        signer new
//
// The state machine is part of the State, so it survives restarts and is
// shared by the control planes that share the CA. The CA only moves
// between phases; the control plane, which knows the proxies, decides
// when a phase is complete (Progress) and calls Advance.
//
// The bundle lists the active root first. A proxy whose certificate does
// not chain to the first root of its bundle renews it early: that is how
// phase 2 gets every workload certificate reissued.
//
// Abort in phase 1 drops the new root. Abort in phase 2 runs the rotation
// back: the old root becomes active again, proxies renew to it, and phase
// 3 removes the new root. In phase 3 the old root is already leaving the
// bundles, so abort is refused.

// Phase is the phase of a root rotation.
type Phase string

// Phases, in order.
const (
	PhaseAdding    Phase = "adding"
	PhaseReissuing Phase = "reissuing"
	PhaseRemoving  Phase = "removing"
)

// Number is the phase's position, 1 to 3.
func (p Phase) Number() int {
	switch p {
	case PhaseAdding:
		return 1
	case PhaseReissuing:
		return 2
	case PhaseRemoving:
		return 3
	}
	return 0
}

// Describe says what happens in the phase.
func (p Phase) Describe() string {
	switch p {
	case PhaseAdding:
		return "new root added to the trust bundle; waiting for every proxy to acknowledge it"
	case PhaseReissuing:
		return "new root signs; waiting for every proxy to hold a certificate from it"
	case PhaseRemoving:
		return "old root removed from the trust bundle; waiting for every proxy to acknowledge it"
	}
	return string(p)
}

// Rotation is a root rotation in progress.
type Rotation struct {
	ID    string `json:"id"`
	Phase Phase  `json:"phase"`
	// Manual rotations advance only when asked to (trellis ca rotate
	// --step), one phase at a time.
	Manual bool `json:"manual,omitempty"`
	// Aborted is set when an abort in phase 2 turned the rotation back:
	// To is then the root it started from.
	Aborted bool `json:"aborted,omitempty"`
	// From is the fingerprint of the root being replaced, To that of the
	// root replacing it.
	From       string    `json:"from"`
	To         string    `json:"to"`
	StartedAt  time.Time `json:"startedAt"`
	PhaseSince time.Time `json:"phaseSince"`
}

// RotationRecord is how a rotation ended.
type RotationRecord struct {
	ID string `json:"id"`
	// Outcome is "completed" or "aborted".
	Outcome   string    `json:"outcome"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt"`
}

// Errors of rotation requests.
var (
	ErrRotationRunning = errors.New("ca: a root rotation is already running")
	ErrNoRotation      = errors.New("ca: no root rotation is running")
	ErrAbortTooLate    = errors.New("ca: the old root is already being removed from the trust bundles; let the rotation finish, then rotate again to go back")
	ErrPhaseChanged    = errors.New("ca: the rotation is no longer in that phase")
)

// check verifies that the rotation (nil: none) matches the authorities of
// s.
func (r *Rotation) check(s *State) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("CA state: rotation: %s", fmt.Sprintf(format, args...))
	}
	if r == nil {
		if s.Next != nil || s.Previous != nil {
			return fail("next or previous authority without a rotation")
		}
		return nil
	}
	active := Fingerprint(s.Active.Root)
	switch r.Phase {
	case PhaseAdding:
		if s.Next == nil || s.Previous != nil {
			return fail("phase %s needs a next authority and no previous one", r.Phase)
		}
		if r.From != active || r.To != Fingerprint(s.Next.Root) {
			return fail("phase %s: from/to do not name the active and next roots", r.Phase)
		}
	case PhaseReissuing:
		if s.Previous == nil || s.Next != nil {
			return fail("phase %s needs a previous authority and no next one", r.Phase)
		}
		if r.To != active || r.From != Fingerprint(s.Previous.Root) {
			return fail("phase %s: from/to do not name the previous and active roots", r.Phase)
		}
	case PhaseRemoving:
		if s.Previous == nil || s.Next != nil {
			return fail("phase %s needs a previous authority and no next one", r.Phase)
		}
		if r.To != active || r.From != Fingerprint(s.Previous.Root) {
			return fail("phase %s: from/to do not name the previous and active roots", r.Phase)
		}
	default:
		return fail("unknown phase %q", r.Phase)
	}
	return nil
}

// startRotation begins a rotation to next.
func startRotation(s *State, next *Authority, manual bool, now time.Time) (*State, error) {
	if s.Rotation != nil {
		return nil, fmt.Errorf("%w (%s, phase %d %s); follow it with `trellis ca status`, or abort it with `trellis ca rotate --abort`",
			ErrRotationRunning, s.Rotation.ID, s.Rotation.Phase.Number(), s.Rotation.Phase)
	}
	n := s.clone()
	n.Next = next
	n.Rotation = &Rotation{
		ID:     "rotation-" + now.UTC().Format("20060102T150405Z"),
		Phase:  PhaseAdding,
		Manual: manual,
		From:   Fingerprint(s.Active.Root), To: Fingerprint(next.Root),
		StartedAt: now, PhaseSince: now,
	}
	return n, nil
}

// advanceRotation moves the rotation from phase from to the next one, or
// ends it after phase 3.
func advanceRotation(s *State, from Phase, now time.Time) (*State, error) {
	if s.Rotation == nil {
		return nil, ErrNoRotation
	}
	if s.Rotation.Phase != from {
		return nil, fmt.Errorf("%w: it is in phase %s, not %s", ErrPhaseChanged, s.Rotation.Phase, from)
	}
	n := s.clone()
	r := n.Rotation
	r.PhaseSince = now
	switch from {
	case PhaseAdding:
		n.Previous, n.Active, n.Next = s.Active, s.Next, nil
		r.Phase = PhaseReissuing
	case PhaseReissuing:
		// The previous authority stays until the end, to name the root
		// proxies still hold; it is out of the bundle.
		r.Phase = PhaseRemoving
	case PhaseRemoving:
		outcome := "completed"
		if r.Aborted {
			outcome = "aborted"
		}
		n.end(outcome, now)
	}
	return n, nil
}

// end records how the rotation ended and forgets it.
func (s *State) end(outcome string, now time.Time) {
	r := s.Rotation
	s.Last = &RotationRecord{ID: r.ID, Outcome: outcome, From: r.From, To: r.To, StartedAt: r.StartedAt, EndedAt: now}
	if r.From != r.To && r.From != Fingerprint(s.Active.Root) {
		s.Retired = append(s.Retired, r.From)
		if len(s.Retired) > maxRetired {
			s.Retired = s.Retired[len(s.Retired)-maxRetired:]
		}
	}
	s.Rotation, s.Next, s.Previous = nil, nil, nil
}

// abortRotation stops a rotation in phase 1, or turns one in phase 2 back
// to the root it started from. Aborting an aborted rotation changes
// nothing.
func abortRotation(s *State, now time.Time) (*State, error) {
	r := s.Rotation
	switch {
	case r == nil:
		return nil, ErrNoRotation
	case r.Aborted:
		return s, nil
	case r.Phase == PhaseRemoving:
		return nil, ErrAbortTooLate
	}
	n := s.clone()
	switch r.Phase {
	case PhaseAdding:
		n.end("aborted", now)
	case PhaseReissuing:
		n.Active, n.Previous = s.Previous, s.Active
		n.Rotation.From, n.Rotation.To = r.To, r.From
		n.Rotation.Aborted = true
		n.Rotation.PhaseSince = now
	}
	return n, nil
}

// ProxyTrust is what the control planes know of one proxy's trust: the
// input of Progress.
type ProxyTrust struct {
	ID string
	// Reported is false while no control plane has reported on the proxy.
	Reported bool
	// TakesBundle is set for proxies that get the trust bundle over SDS
	// (sidecars and gateways; proxyless gRPC applications read theirs from
	// files).
	TakesBundle bool
	// Bundle are the fingerprints of the roots in the last trust bundle
	// the proxy acknowledged.
	Bundle []string
	// CertRoot is the fingerprint of the root the proxy's certificate
	// chains to; empty when unknown.
	CertRoot string
}

// Progress is how far the proxies are with the current phase.
type Progress struct {
	Total int `json:"total"`
	Done  int `json:"done"`
	// Waiting names each proxy the phase waits for, and why.
	Waiting []string `json:"waiting,omitempty"`
}

// Complete reports whether every proxy is done with the phase.
func (p Progress) Complete() bool { return p.Done == p.Total }

// Progress judges the proxies against the rotation's current phase.
func (r *Rotation) Progress(proxies []ProxyTrust) Progress {
	p := Progress{Total: len(proxies)}
	for _, pt := range proxies {
		if why := r.waitingFor(pt); why != "" {
			p.Waiting = append(p.Waiting, pt.ID+": "+why)
			continue
		}
		p.Done++
	}
	slices.Sort(p.Waiting)
	return p
}

func (r *Rotation) waitingFor(pt ProxyTrust) string {
	if !pt.Reported {
		return "no control plane has reported on it yet"
	}
	switch r.Phase {
	case PhaseAdding:
		if pt.TakesBundle && !slices.Contains(pt.Bundle, r.To) {
			return "has not acknowledged a trust bundle with the new root " + ShortFingerprint(r.To)
		}
	case PhaseReissuing:
		switch pt.CertRoot {
		case r.To:
		case "":
			return "holds a certificate of an unknown root"
		default:
			return "holds a certificate of root " + ShortFingerprint(pt.CertRoot)
		}
	case PhaseRemoving:
		if pt.TakesBundle && r.From != r.To && slices.Contains(pt.Bundle, r.From) {
			return "has not acknowledged a trust bundle without the old root " + ShortFingerprint(r.From)
		}
	}
	return ""
}

// String describes the rotation in one line.
func (r *Rotation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: phase %d/3 %s (%s)", r.ID, r.Phase.Number(), r.Phase, r.Phase.Describe())
	if r.Aborted {
		b.WriteString(", aborted: returning to the root it started from")
	}
	return b.String()
}

// RotateOptions configure StartRotation.
type RotateOptions struct {
	// Manual rotations advance one phase per Advance request of an
	// operator; others advance as soon as a phase is complete.
	Manual bool
	// Next is the authority to rotate to (LoadSupplied). Nil generates a
	// new root and intermediate.
	Next *Authority
	// Generate allows generating a new root when the active one was
	// supplied by an operator: without it, such a CA rotates only to
	// another supplied root or intermediate.
	Generate bool
}

// StartRotation begins a root rotation (phase 1: the new root joins the
// trust bundle). It fails with ErrRotationRunning while one runs.
func (c *CA) StartRotation(ctx context.Context, o RotateOptions) (*State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	s, err := c.updateLocked(ctx, func(s *State) (*State, error) {
		if s.Rotation != nil {
			return startRotation(s, nil, false, now)
		}
		next := o.Next
		switch {
		case next != nil && next.Root.Equal(s.Active.Root) && (next.Source == SourceRoot || next.Signer.Equal(s.Active.Signer)):
			return nil, errors.New("ca: the supplied CA is the active one already; nothing to rotate to")
		case next == nil && s.Active.Source != SourceGenerated && !o.Generate:
			return nil, fmt.Errorf("ca: the active CA was supplied (%s); rotate to another supplied root or intermediate (--ca-cert, --ca-key), or let Trellis generate a root (--generate)", s.Active.Source)
		case next == nil:
			var err error
			if next, err = c.generate(now); err != nil {
				return nil, err
			}
		case next.Signer == nil:
			var err error
			if next, err = c.issueIntermediate(next, now); err != nil {
				return nil, err
			}
		}
		return startRotation(s, next, o.Manual, now)
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("root rotation started", logKeyRotation, s.Rotation.String(),
		"from", ShortFingerprint(s.Rotation.From), "to", ShortFingerprint(s.Rotation.To))
	return s, nil
}

// Advance moves the rotation from phase from to the next phase, or ends it
// after phase 3. The caller has checked that the proxies completed the
// phase (Rotation.Progress). It fails with ErrPhaseChanged when the
// rotation is no longer in phase from (another control plane advanced it).
func (c *CA) Advance(ctx context.Context, from Phase) (*State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.updateLocked(ctx, func(s *State) (*State, error) {
		return advanceRotation(s, from, c.now())
	})
	if err != nil {
		return nil, err
	}
	if s.Rotation != nil {
		c.log.Info("root rotation advanced", logKeyRotation, s.Rotation.String())
	} else {
		c.log.Info("root rotation ended", "id", s.Last.ID, "outcome", s.Last.Outcome,
			logKeyRoot, ShortFingerprint(Fingerprint(s.Active.Root)))
	}
	return s, nil
}

// AbortRotation stops a rotation in phase 1, or turns one in phase 2 back
// to the root it started from; ErrAbortTooLate in phase 3.
func (c *CA) AbortRotation(ctx context.Context) (*State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.updateLocked(ctx, func(s *State) (*State, error) {
		return abortRotation(s, c.now())
	})
	if err != nil {
		return nil, err
	}
	c.log.Warn("root rotation aborted", logKeyRoot, ShortFingerprint(Fingerprint(s.Active.Root)))
	return s, nil
}
