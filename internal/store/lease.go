package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease keeps a set of keys alive while its owner is.
//
// etcd deletes the keys of a lease that is not renewed within its TTL. If
// etcd stays unreachable for longer than that, the keys may be gone when
// it returns, although their owner is alive: KeepAlive then grants a new
// lease and writes them again.
type Lease struct {
	s   *Store
	ttl time.Duration

	mu      sync.Mutex
	id      clientv3.LeaseID
	keys    map[string][]byte // written under the lease
	revoked bool
}

// Grant creates a lease that expires ttl after its last renewal.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (*Lease, error) {
	id, err := s.grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	return &Lease{s: s, ttl: ttl, id: id, keys: map[string][]byte{}}, nil
}

func (s *Store) grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Grant(rctx, leaseSeconds(ttl))
	if err != nil {
		return 0, s.fail(ctx, "lease", err)
	}
	return resp.ID, nil
}

func (l *Lease) isRevoked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.revoked
}

func (l *Lease) current() clientv3.LeaseID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// Put writes key under the lease.
func (l *Lease) Put(ctx context.Context, key string, value []byte) error {
	rctx, cancel := l.s.request(ctx)
	defer cancel()
	if _, err := l.s.client.Put(rctx, Prefix+key, string(value), clientv3.WithLease(l.current())); err != nil {
		return l.s.fail(ctx, "put "+key, err)
	}
	l.mu.Lock()
	l.keys[key] = value
	l.mu.Unlock()
	return nil
}

// KeepAlive renews the lease until ctx is done. When the lease could not be
// renewed in time (etcd was unreachable for longer than its TTL), it waits
// until etcd answers; if the lease expired meanwhile, it grants a new one
// and writes the keys again, except those that another lease holds now.
// It returns ctx's error, or an error if the store was closed.
func (l *Lease) KeepAlive(ctx context.Context) error {
	for {
		ch, err := l.s.client.KeepAlive(ctx, l.current())
		if err != nil {
			return fmt.Errorf("store: keepalive: %w", err)
		}
		for range ch {
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l.isRevoked() {
			return nil
		}
		// The client gave up on the lease: etcd said it expired, or did not
		// answer within its TTL.
		if err := l.restore(ctx); err != nil {
			return err
		}
	}
}

// restore waits until etcd answers, and grants the lease again if it
// expired. It returns only when the lease is alive or ctx is done.
func (l *Lease) restore(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := l.restoreOnce(ctx)
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		l.s.log.Debug("lease not renewed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (l *Lease) restoreOnce(ctx context.Context) error {
	// Renewing tells whether the lease survived, and keeps it from expiring
	// right after the answer.
	rctx, cancel := l.s.request(ctx)
	_, err := l.s.client.KeepAliveOnce(rctx, l.current())
	cancel()
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, rpctypes.ErrLeaseNotFound):
		return l.s.fail(ctx, "lease", err)
	}
	// The lease expired, and its keys with it.
	id, err := l.s.grant(ctx, l.ttl)
	if err != nil {
		return err
	}
	l.mu.Lock()
	keys := maps.Clone(l.keys)
	l.mu.Unlock()
	for key, value := range keys {
		// Only where the key is missing: a key another lease holds now (its
		// proxy moved to another control plane) is not ours any more.
		rctx, cancel := l.s.request(ctx)
		_, err := l.s.client.Txn(rctx).
			If(clientv3.Compare(clientv3.Version(Prefix+key), "=", 0)).
			Then(clientv3.OpPut(Prefix+key, string(value), clientv3.WithLease(id))).
			Commit()
		cancel()
		if err != nil {
			_ = l.revoke(context.WithoutCancel(ctx), id)
			return l.s.fail(ctx, "put "+key, err)
		}
	}
	l.mu.Lock()
	if l.revoked {
		l.mu.Unlock()
		_ = l.revoke(context.WithoutCancel(ctx), id)
		return nil
	}
	l.id = id
	l.mu.Unlock()
	l.s.log.Info("lease expired while etcd was unreachable; granted it again", "keys", len(keys))
	return nil
}

// Revoke ends the lease now, deleting its keys.
func (l *Lease) Revoke(ctx context.Context) error {
	l.mu.Lock()
	l.revoked = true
	id := l.id
	l.mu.Unlock()
	return l.revoke(ctx, id)
}

func (l *Lease) revoke(ctx context.Context, id clientv3.LeaseID) error {
	rctx, cancel := l.s.request(ctx)
	defer cancel()
	if _, err := l.s.client.Revoke(rctx, id); err != nil {
		return l.s.fail(ctx, "revoke", err)
	}
	return nil
}
