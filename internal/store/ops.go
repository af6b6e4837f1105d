package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Item is a stored value.
type Item struct {
	// Key is relative to Prefix.
	Key   string
	Value []byte
	// Revision is the etcd revision of the last change to the key, and
	// CreateRevision that of its creation.
	Revision       int64
	CreateRevision int64
}

// Write is one change of an atomic batch: a put, or a delete when Delete
// is set.
type Write struct {
	Key    string
	Value  []byte
	Delete bool
}

func item(kv *mvccpb.KeyValue) Item {
	return Item{
		Key:            strings.TrimPrefix(string(kv.Key), Prefix),
		Value:          kv.Value,
		Revision:       kv.ModRevision,
		CreateRevision: kv.CreateRevision,
	}
}

// Get returns the item at key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (Item, error) {
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Get(rctx, Prefix+key)
	if err != nil {
		return Item{}, s.fail(ctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return Item{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return item(resp.Kvs[0]), nil
}

// TxnOps is how many operations a transaction of GetMany holds at most:
// etcd's default limit (--max-txn-ops), which an external cluster may keep.
const TxnOps = 128

// GetMany returns the items stored at keys, by key; keys that hold nothing
// are left out. One read serves TxnOps keys.
func (s *Store) GetMany(ctx context.Context, keys []string) (map[string]Item, error) {
	out := make(map[string]Item, len(keys))
	for chunk := range slices.Chunk(keys, TxnOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = clientv3.OpGet(Prefix + k)
		}
		rctx, cancel := s.request(ctx)
		resp, err := s.client.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, s.fail(ctx, fmt.Sprintf("reading %d keys", len(chunk)), err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().GetKvs() {
				it := item(kv)
				out[it.Key] = it
			}
		}
	}
	return out, nil
}

// List returns every item under prefix, in key order, and the revision the
// listing was read at.
func (s *Store) List(ctx context.Context, prefix string) ([]Item, int64, error) {
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Get(rctx, Prefix+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.fail(ctx, "list "+prefix, err)
	}
	items := make([]Item, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		items[i] = item(kv)
	}
	return items, resp.Header.Revision, nil
}

// Apply performs every write in one transaction: all of them happen, or
// none. It returns the new revision.
func (s *Store) Apply(ctx context.Context, writes []Write) (int64, error) {
	ops := make([]clientv3.Op, len(writes))
	for i, w := range writes {
		if w.Delete {
			ops[i] = clientv3.OpDelete(Prefix + w.Key)
		} else {
			ops[i] = clientv3.OpPut(Prefix+w.Key, string(w.Value))
		}
	}
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Txn(rctx).Then(ops...).Commit()
	if err != nil {
		return 0, s.fail(ctx, fmt.Sprintf("writing %d changes", len(writes)), err)
	}
	return resp.Header.Revision, nil
}

// Delete removes key; it reports whether the key existed.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.client.Delete(rctx, Prefix+key)
	if err != nil {
		return false, s.fail(ctx, "delete "+key, err)
	}
	return resp.Deleted > 0, nil
}

// Event is a change seen by Watch. Value is nil for a deletion.
type Event struct {
	Item
	Deleted bool
}

// Watch calls fn with the changes under prefix after revision rev, in
// order, until ctx is done. While etcd is unreachable the watch waits and
// then resumes where it was; a compacted revision or a member without a
// leader makes it return an error, and the caller lists again and
// rewatches.
func (s *Store) Watch(ctx context.Context, prefix string, rev int64, fn func([]Event)) error {
	ctx = clientv3.WithRequireLeader(ctx)
	wch := s.client.Watch(ctx, Prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("store: watch %s: %w", prefix, err)
		}
		events := make([]Event, len(resp.Events))
		for i, ev := range resp.Events {
			events[i] = Event{Item: item(ev.Kv), Deleted: ev.Type == clientv3.EventTypeDelete}
		}
		fn(events)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("store: watch %s closed", prefix)
}

// PutIf writes key only if its last change is at revision rev (Item.Revision;
// 0 for a key that does not exist), and reports whether it did: a
// compare-and-swap for values several control planes change. An existing
// key keeps its lease if it has one (a join token expires as it did). On
// false the key changed or is gone, and the caller reads it again.
func (s *Store) PutIf(ctx context.Context, key string, value []byte, rev int64) (bool, error) {
	rctx, cancel := s.request(ctx)
	defer cancel()
	put := clientv3.OpPut(Prefix+key, string(value))
	if rev != 0 {
		put = clientv3.OpPut(Prefix+key, string(value), clientv3.WithIgnoreLease())
	}
	resp, err := s.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(Prefix+key), "=", rev)).
		Then(put).
		Commit()
	if err != nil {
		return false, s.fail(ctx, "put "+key, err)
	}
	return resp.Succeeded, nil
}
