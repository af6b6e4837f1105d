package jointoken

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/store"
)

// Prefix is where tokens live in the store: their own prefix, not a
// resource kind, so that nothing that reads resources sees them.
const Prefix = "tokens/"

// Bounds of a Spec.
const (
	MinTTL     = time.Second
	MaxTTL     = 366 * 24 * time.Hour
	DefaultTTL = time.Hour
	MaxUses    = 1_000_000
	// MaxCreate is how many tokens one Create makes at most.
	MaxCreate = 10_000
)

// createBatch is how many tokens one etcd transaction creates: under the
// 128 operations an external etcd allows by default.
const createBatch = 100

// swapAttempts bounds how often Consume and Revoke read a token again
// after losing a race to change it.
const swapAttempts = 20

// Log keys.
const (
	logKeyToken    = "token_id"
	logKeyIdentity = "identity"
	logKeyUsesLeft = "uses_left"
	logKeyExpiry   = "expiry"
	logKeyCount    = "count"
)

// Spec asks for a token.
type Spec struct {
	Namespace      string
	ServiceAccount string
	// TTL is how long the token is valid; zero means DefaultTTL.
	TTL time.Duration
	// Uses is how many certificates the token gets; zero means one.
	Uses int
}

// State is where a token is in its life.
type State string

// States of a token.
const (
	Active  State = "active"
	Used    State = "used"
	Revoked State = "revoked"
	Expired State = "expired"
)

// Info describes a stored token; never its secret.
type Info struct {
	ID         string
	Identity   identity.ID
	CreatedAt  time.Time
	ExpiresAt  time.Time
	Uses       int
	UsesLeft   int
	RevokedAt  time.Time
	LastUsedAt time.Time
	State      State
}

// Created is a new token: its description and the token itself, which
// exists nowhere else.
type Created struct {
	Info
	Token string
}

// record is a token as stored, JSON under Prefix+ID.
type record struct {
	ID             string    `json:"id"`
	Namespace      string    `json:"namespace"`
	ServiceAccount string    `json:"serviceAccount"`
	SecretSHA256   string    `json:"secretSHA256"`
	CreatedAt      time.Time `json:"createdAt"`
	ExpiresAt      time.Time `json:"expiresAt"`
	Uses           int       `json:"uses"`
	UsesLeft       int       `json:"usesLeft"`
	RevokedAt      time.Time `json:"revokedAt,omitzero"`
	LastUsedAt     time.Time `json:"lastUsedAt,omitzero"`
}

func (r *record) info(td string, now time.Time) Info {
	in := Info{
		ID:         r.ID,
		Identity:   identity.ID{TrustDomain: td, Namespace: r.Namespace, ServiceAccount: r.ServiceAccount},
		CreatedAt:  r.CreatedAt,
		ExpiresAt:  r.ExpiresAt,
		Uses:       r.Uses,
		UsesLeft:   r.UsesLeft,
		RevokedAt:  r.RevokedAt,
		LastUsedAt: r.LastUsedAt,
	}
	switch {
	case !r.RevokedAt.IsZero():
		in.State = Revoked
	case !now.Before(r.ExpiresAt):
		in.State = Expired
	case r.UsesLeft <= 0:
		in.State = Used
	default:
		in.State = Active
	}
	return in
}

// Options configure a Store.
type Options struct {
	// TrustDomain of the identities tokens are for. Empty means
	// identity.DefaultTrustDomain.
	TrustDomain string
	// Logger receives every use of a token. Nil discards.
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Store keeps join tokens in the control plane's store. It is safe for
// concurrent use, also by several control planes sharing one etcd.
type Store struct {
	st     *store.Store
	td     string
	log    *slog.Logger
	now    func() time.Time
	random io.Reader
}

// New returns a Store of tokens in st.
func New(st *store.Store, opts Options) *Store {
	s := &Store{st: st, td: opts.TrustDomain, log: opts.Logger, now: opts.Now, random: rand.Reader}
	if s.td == "" {
		s.td = identity.DefaultTrustDomain
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// TrustDomain is the trust domain of the identities the tokens are for.
func (s *Store) TrustDomain() string { return s.td }

// Validate checks specs, with defaults applied, and returns every problem
// at once, each naming the spec (by index when there are several) and the
// field.
func (s *Store) Validate(specs []Spec) []error {
	var errs []error
	if len(specs) == 0 {
		return []error{errors.New("no token asked for")}
	}
	if len(specs) > MaxCreate {
		return []error{fmt.Errorf("%d tokens asked for; at most %d at once", len(specs), MaxCreate)}
	}
	for i, sp := range specs {
		where := ""
		if len(specs) > 1 {
			where = fmt.Sprintf("tokens[%d].", i)
		}
		sp = sp.withDefaults()
		if sp.Namespace == "" {
			errs = append(errs, fmt.Errorf("%snamespace: required", where))
		}
		if sp.ServiceAccount == "" {
			errs = append(errs, fmt.Errorf("%sserviceAccount: required", where))
		}
		if sp.Namespace != "" && sp.ServiceAccount != "" {
			id := identity.ID{TrustDomain: s.td, Namespace: sp.Namespace, ServiceAccount: sp.ServiceAccount}
			if err := id.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%snamespace/serviceAccount: %v", where, err))
			}
		}
		if sp.TTL < MinTTL || sp.TTL > MaxTTL {
			errs = append(errs, fmt.Errorf("%sttl: %v is outside [%v, %v]", where, sp.TTL, MinTTL, MaxTTL))
		}
		if sp.Uses < 1 || sp.Uses > MaxUses {
			errs = append(errs, fmt.Errorf("%suses: %d is outside [1, %d]", where, sp.Uses, MaxUses))
		}
	}
	return errs
}

func (sp Spec) withDefaults() Spec {
	if sp.TTL == 0 {
		sp.TTL = DefaultTTL
	}
	if sp.Uses == 0 {
		sp.Uses = 1
	}
	return sp
}

// Create makes a token for each spec and returns them in order. Tokens are
// written in batches, each in one transaction under one etcd lease per TTL;
// if a batch fails, the tokens of earlier batches exist but were never
// shown to anyone, and expire unused.
func (s *Store) Create(ctx context.Context, specs []Spec) ([]Created, error) {
	if errs := s.Validate(specs); len(errs) > 0 {
		return nil, &SpecError{Errs: errs}
	}
	now := s.now()
	out := make([]Created, len(specs))
	// Batches share a TTL, so that one lease serves each exactly.
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(specs[a].withDefaults().TTL, specs[b].withDefaults().TTL)
	})
	for start := 0; start < len(order); {
		ttl := specs[order[start]].withDefaults().TTL
		end := start
		var writes []store.Write
		for end < len(order) && end-start < createBatch && specs[order[end]].withDefaults().TTL == ttl {
			i := order[end]
			sp := specs[i].withDefaults()
			id, secret, err := generate(s.random)
			if err != nil {
				return nil, err
			}
			r := &record{
				ID: id, Namespace: sp.Namespace, ServiceAccount: sp.ServiceAccount,
				SecretSHA256: hashSecret(secret),
				CreatedAt:    now, ExpiresAt: now.Add(sp.TTL),
				Uses: sp.Uses, UsesLeft: sp.Uses,
			}
			value, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			writes = append(writes, store.Write{Key: Prefix + id, Value: value})
			out[i] = Created{Info: r.info(s.td, now), Token: id + "." + secret}
			end++
		}
		if _, err := s.st.CreateExpiring(ctx, writes, ttl); err != nil {
			return nil, fmt.Errorf("jointoken: storing %d tokens: %w", len(writes), err)
		}
		start = end
	}
	for _, c := range out {
		s.log.Info("join token created", logKeyToken, c.ID, logKeyIdentity, c.Identity.String(),
			logKeyUsesLeft, c.UsesLeft, logKeyExpiry, c.ExpiresAt)
	}
	return out, nil
}

// SpecError lists what is wrong with the specs given to Create.
type SpecError struct{ Errs []error }

func (e *SpecError) Error() string { return errors.Join(e.Errs...).Error() }

// List returns every stored token, oldest first. Tokens etcd deleted at
// their expiry are gone; those that expired moments ago may still be
// listed, as expired.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	items, _, err := s.st.List(ctx, Prefix)
	if err != nil {
		return nil, fmt.Errorf("jointoken: %w", err)
	}
	now := s.now()
	out := make([]Info, 0, len(items))
	for _, it := range items {
		var r record
		if err := json.Unmarshal(it.Value, &r); err != nil {
			s.log.Error("stored join token does not decode; ignoring it", "key", it.Key, "err", err)
			continue
		}
		out = append(out, r.info(s.td, now))
	}
	slices.SortStableFunc(out, func(a, b Info) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Revoke marks the token id revoked: it gets no certificate any more. A
// revoked token stays listed until it expires. Revoking twice is not an
// error. An unknown ID is a *RefusedError wrapping ErrUnknown.
func (s *Store) Revoke(ctx context.Context, id string) (Info, error) {
	if err := CheckID(id); err != nil {
		return Info{}, err
	}
	for range swapAttempts {
		it, r, err := s.get(ctx, id)
		if err != nil {
			return Info{}, err
		}
		now := s.now()
		if !r.RevokedAt.IsZero() {
			return r.info(s.td, now), nil
		}
		r.RevokedAt = now
		value, err := json.Marshal(r)
		if err != nil {
			return Info{}, err
		}
		ok, err := s.st.PutIf(ctx, it.Key, value, it.Revision)
		if err != nil {
			return Info{}, fmt.Errorf("jointoken: %w", err)
		}
		if ok {
			s.log.Info("join token revoked", logKeyToken, id, logKeyIdentity, r.info(s.td, now).Identity.String())
			return r.info(s.td, now), nil
		}
	}
	return Info{}, fmt.Errorf("jointoken: token %s changed %d times while being revoked; try again", id, swapAttempts)
}

// get reads one token.
func (s *Store) get(ctx context.Context, id string) (store.Item, *record, error) {
	it, err := s.st.Get(ctx, Prefix+id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Item{}, nil, &RefusedError{ID: id, Reason: ErrUnknown,
			msg: "is unknown: it was never created here, or it expired and was deleted; create a new one with `trellis token create`"}
	}
	if err != nil {
		return store.Item{}, nil, fmt.Errorf("jointoken: %w", err)
	}
	var r record
	if err := json.Unmarshal(it.Value, &r); err != nil {
		return store.Item{}, nil, fmt.Errorf("jointoken: stored token %s does not decode: %w", id, err)
	}
	return it, &r, nil
}

// Consume spends one use of token for a certificate for want. It checks,
// in this order, the token's form, that it exists, its secret, that it is
// not revoked, not expired and has uses left, and that it is for exactly
// want; then it decrements the uses left in a transaction that succeeds
// only if nobody changed the token since it was read, else it reads it
// again. A refusal is a *RefusedError and changes nothing; other errors
// are failures of the store.
func (s *Store) Consume(ctx context.Context, token string, want identity.ID) (Info, error) {
	id, secret, problem := parse(token)
	if problem != "" {
		return Info{}, &RefusedError{Reason: ErrMalformed, msg: "is malformed: " + problem}
	}
	for range swapAttempts {
		it, r, err := s.get(ctx, id)
		if err != nil {
			return Info{}, err
		}
		now := s.now()
		if err := s.check(id, secret, r, want, now); err != nil {
			return Info{}, err
		}
		r.UsesLeft--
		r.LastUsedAt = now
		value, err := json.Marshal(r)
		if err != nil {
			return Info{}, err
		}
		ok, err := s.st.PutIf(ctx, it.Key, value, it.Revision)
		if err != nil {
			return Info{}, fmt.Errorf("jointoken: %w", err)
		}
		if ok {
			info := r.info(s.td, now)
			s.log.Info("join token used", logKeyToken, id, logKeyIdentity, want.String(), logKeyUsesLeft, r.UsesLeft)
			return info, nil
		}
	}
	return Info{}, fmt.Errorf("jointoken: token %s changed %d times while being used; try again", id, swapAttempts)
}

// check judges a stored token against a request.
func (s *Store) check(id, secret string, r *record, want identity.ID, now time.Time) error {
	refuse := func(reason error, format string, args ...any) error {
		return &RefusedError{ID: id, Reason: reason, msg: fmt.Sprintf(format, args...)}
	}
	// The secret first: who does not hold it learns nothing else.
	if !secretMatches(secret, r.SecretSHA256) {
		return refuse(ErrSecret, "does not match: the secret is wrong; copy the whole token `trellis token create` printed")
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case !r.RevokedAt.IsZero():
		return refuse(ErrRevoked, "was revoked at %s; create a new one with `trellis token create`", ts(r.RevokedAt))
	case !now.Before(r.ExpiresAt):
		return refuse(ErrExpired, "expired at %s; create a new one with `trellis token create`", ts(r.ExpiresAt))
	case r.UsesLeft <= 0:
		return refuse(ErrUsed, "has no uses left (used %d of %d, last at %s): a replayed token; create a new one, with --uses for several proxies",
			r.Uses, r.Uses, ts(r.LastUsedAt))
	}
	if got := (identity.ID{TrustDomain: s.td, Namespace: r.Namespace, ServiceAccount: r.ServiceAccount}); got != want {
		return refuse(ErrIdentity, "is for %s only, not %s", got, want)
	}
	return nil
}

// RefusedError is a token that cannot be used, and why. It never holds the
// secret.
type RefusedError struct {
	// ID is the token's ID; empty for a malformed token.
	ID string
	// Reason is one of ErrMalformed, ErrUnknown, ErrSecret, ErrRevoked,
	// ErrExpired, ErrUsed, ErrIdentity.
	Reason error
	msg    string
}

func (e *RefusedError) Error() string {
	if e.ID == "" {
		return "join token " + e.msg
	}
	return "join token " + e.ID + " " + e.msg
}

func (e *RefusedError) Unwrap() error { return e.Reason }

// TokenID returns the ID of the refused token, for logs.
func (e *RefusedError) TokenID() string { return e.ID }
