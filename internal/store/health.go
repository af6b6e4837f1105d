package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrUnavailable matches (errors.Is) the errors of Health, and those of
// requests that etcd did not answer in time.
var ErrUnavailable = errors.New("store: etcd unavailable")

// unavailableError is an ErrUnavailable whose message says why, without
// repeating the package name inside another store error.
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string        { return "etcd unavailable" + e.msg }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

func unavailable(format string, args ...any) error {
	return &unavailableError{msg: fmt.Sprintf(format, args...)}
}

// Probe timing: etcd is read every probeInterval; a read that takes longer
// than probeTimeout counts as no answer.
const (
	probeInterval = time.Second
	probeTimeout  = 2 * time.Second
)

// health is the outcome of the last probe.
type health struct {
	mu    sync.Mutex
	err   error     // nil while etcd answers
	since time.Time // when the first failed probe in a row was sent
}

// Health returns nil while etcd answers, and otherwise an ErrUnavailable
// that says for how long and why ("etcd unavailable for 3s: ..."). It
// reports the last probe, at most about three seconds old.
func (s *Store) Health() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.err == nil {
		return nil
	}
	return unavailable(" for %s: %v", time.Since(s.health.since).Round(time.Second), s.health.err)
}

// probe reads a key from etcd every probeInterval until ctx is done. The
// read is linearizable and needs a leader, so it fails as soon as etcd
// could not serve a write either: quorum lost, or no member reachable.
func (s *Store) probe(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), probeTimeout)
		_, err := s.client.Get(pctx, Prefix+"health", clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer from %s within %s", strings.Join(s.endpoints, ", "), probeTimeout)
		}
		s.setHealth(err, start)
	}
}

// setHealth records the outcome of a probe sent at start.
func (s *Store) setHealth(err error, start time.Time) {
	s.health.mu.Lock()
	was := s.health.err
	s.health.err = err
	switch {
	case err != nil && was == nil:
		s.health.since = start
	case err == nil && was != nil:
		down := time.Since(s.health.since).Round(time.Millisecond)
		s.health.mu.Unlock()
		s.log.Info("etcd answers again", "unavailableFor", down)
		return
	}
	s.health.mu.Unlock()
	if err != nil && was == nil {
		s.log.Warn("etcd unavailable; requests to the store fail until it answers again", "err", err)
	}
}

// request bounds a request to etcd by the store's request timeout.
func (s *Store) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// fail wraps the error of a request: a request that timed out while its
// caller still waited says that etcd did not answer.
func (s *Store) fail(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("store: %s: %w", what, unavailable(": no answer from %s within %s", strings.Join(s.endpoints, ", "), s.timeout))
	}
	return fmt.Errorf("store: %s: %w", what, err)
}
