package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrExists is returned by CreateExpiring when a key is already stored.
var ErrExists = errors.New("store: key exists")

// CreateExpiring writes new keys in one transaction, all under one new
// lease of ttl (rounded up to whole seconds; etcd may raise very short
// ones to its minimum): etcd deletes them when the lease runs out, even
// while no control plane runs. If any key exists already nothing is
// written and the error wraps ErrExists. The caller keeps the batch within
// the etcd cluster's --max-txn-ops (128 by default).
func (s *Store) CreateExpiring(ctx context.Context, writes []Write, ttl time.Duration) (int64, error) {
	if len(writes) == 0 {
		return 0, nil
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("store: lease TTL %v is not positive", ttl)
	}
	lease, err := s.grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	conds := make([]clientv3.Cmp, len(writes))
	ops := make([]clientv3.Op, len(writes))
	for i, w := range writes {
		if w.Delete {
			return 0, fmt.Errorf("store: CreateExpiring cannot delete %s", w.Key)
		}
		conds[i] = clientv3.Compare(clientv3.Version(Prefix+w.Key), "=", 0)
		ops[i] = clientv3.OpPut(Prefix+w.Key, string(w.Value), clientv3.WithLease(lease))
	}
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Txn(rctx).If(conds...).Then(ops...).Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("%w: one of %d keys starting with %s", ErrExists, len(writes), writes[0].Key)
	}
	if err != nil {
		// The lease holds nothing: let it go now rather than at its expiry.
		rctx, cancel := s.request(context.WithoutCancel(ctx))
		_, _ = s.client.Revoke(rctx, lease)
		cancel()
		if errors.Is(err, ErrExists) {
			return 0, err
		}
		return 0, s.fail(ctx, fmt.Sprintf("creating %d keys", len(writes)), err)
	}
	return resp.Header.Revision, nil
}

// leaseSeconds is ttl in whole seconds, rounded up, at least one.
func leaseSeconds(ttl time.Duration) int64 {
	s := math.Ceil(ttl.Seconds())
	if s < 1 {
		return 1
	}
	return int64(s)
}
