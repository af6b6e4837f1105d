package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyListWatchAndRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	s := open(t, dir)

	_, rev, err := s.List(ctx, "r/")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []Event, 10)
	go s.Watch(ctx, "r/", rev, func(ev []Event) { got <- ev })

	if _, err := s.Apply(ctx, []Write{{Key: "r/a", Value: []byte("1")}, {Key: "r/b", Value: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if len(ev) != 2 || ev[0].Key != "r/a" || string(ev[1].Value) != "2" {
			t.Fatalf("watch events = %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	if ok, err := s.Delete(ctx, "r/a"); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, "r/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get deleted key: %v", err)
	}
	cancel()
	s.Close()

	// The data survives a restart on the same directory.
	s = open(t, dir)
	defer s.Close()
	items, _, err := s.List(context.Background(), "r/")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Key != "r/b" || string(items[0].Value) != "2" {
		t.Fatalf("after restart: %+v", items)
	}
}

func TestLeaseRevokeDeletesKeys(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	l, err := s.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "reg/x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "reg/x"); err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "reg/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after revoke: %v", err)
	}
}

// TestLeaseGrantedAgainAfterExpiry loses a lease as if etcd had been
// unreachable for longer than its TTL: KeepAlive grants a new lease and
// writes the key again.
func TestLeaseGrantedAgainAfterExpiry(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := open(t, t.TempDir())
	defer s.Close()
	l, err := s.Grant(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "reg/x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(ctx) }()
	old := l.current()
	// etcd lets the lease expire: its key goes.
	if _, err := s.client.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		it, err := s.Get(ctx, "reg/x")
		if err == nil && l.current() != old {
			if string(it.Value) != "v" {
				t.Fatalf("value %q after the new lease", it.Value)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key was not written again under a new lease: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := s.client.Get(ctx, Prefix+"reg/x")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(l.current()) {
		t.Fatalf("key is not under the new lease: %+v, %v", resp, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("KeepAlive = %v", err)
	}
	// Revoking the new lease deletes the key for good.
	if err := l.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "reg/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after revoke: %v", err)
	}
}

// TestLeaseRestoreLeavesOthersKeys: a key that another lease took over
// while this one was lost (its proxy moved to another control plane) is
// not taken back.
func TestLeaseRestoreLeavesOthersKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	mine, err := s.Grant(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"reg/a", "reg/b"} {
		if err := mine.Put(ctx, key, []byte("mine")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.client.Revoke(ctx, mine.current()); err != nil {
		t.Fatal(err)
	}
	other, err := s.Grant(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Put(ctx, "reg/b", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := mine.restoreOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"reg/a": "mine", "reg/b": "other"} {
		if it, err := s.Get(ctx, key); err != nil || string(it.Value) != want {
			t.Errorf("%s = %q, %v; want %q", key, it.Value, err, want)
		}
	}
}

// TestUnavailable stops etcd under the store: requests fail after the
// request timeout, saying etcd did not answer, and Health reports it.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), Options{DataDir: t.TempDir(), RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Health(); err != nil {
		t.Fatalf("Health of a running etcd: %v", err)
	}
	s.etcd.Close()
	s.etcd = nil
	start := time.Now()
	_, err = s.Get(context.Background(), "x")
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get with etcd stopped: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Get with etcd stopped took %s", d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Health() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Health still reports etcd available")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Health(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Health = %v, want ErrUnavailable", err)
	}
}

func TestGetMany(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var writes []Write
	var keys []string
	for i := range 300 {
		k := fmt.Sprintf("r/%03d", i)
		keys = append(keys, k)
		if i%3 != 0 {
			writes = append(writes, Write{Key: k, Value: []byte(k)})
		}
	}
	if _, err := s.Apply(ctx, writes); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(writes) {
		t.Fatalf("GetMany found %d keys, want %d", len(got), len(writes))
	}
	for _, w := range writes {
		if it, ok := got[w.Key]; !ok || string(it.Value) != w.Key || it.Revision == 0 {
			t.Errorf("GetMany[%s] = %+v, %v", w.Key, it, ok)
		}
	}
}

// TestCreateExpiringAndPutIf: keys created together exist until their lease
// runs out; an existing key refuses the whole batch; PutIf writes only over
// the revision it read and keeps the lease.
func TestCreateExpiringAndPutIf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()

	if _, err := s.CreateExpiring(ctx, []Write{{Key: "x/a", Value: []byte("1")}, {Key: "x/b", Value: []byte("2")}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateExpiring(ctx, []Write{{Key: "x/c", Value: []byte("3")}, {Key: "x/a", Value: []byte("again")}}, time.Hour)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("creating over an existing key: %v, want ErrExists", err)
	}
	items, _, err := s.List(ctx, "x/")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || string(items[0].Value) != "1" {
		t.Fatalf("after a refused batch: %+v, want only a and b", items)
	}

	a := items[0]
	if ok, err := s.PutIf(ctx, a.Key, []byte("1b"), a.Revision); err != nil || !ok {
		t.Fatalf("PutIf = %v, %v", ok, err)
	}
	// a is stale now: a second swap from the same read loses.
	if ok, err := s.PutIf(ctx, a.Key, []byte("1c"), a.Revision); err != nil || ok {
		t.Fatalf("stale PutIf = %v, %v; want false", ok, err)
	}
	got, err := s.Get(ctx, "x/a")
	if err != nil || string(got.Value) != "1b" {
		t.Fatalf("x/a = %q, %v", got.Value, err)
	}
	resp, err := s.client.Get(ctx, Prefix+"x/a")
	if err != nil || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the swapped key lost its lease: %v", err)
	}

	// A short lease: etcd deletes its key by itself.
	if _, err := s.CreateExpiring(ctx, []Write{{Key: "x/short", Value: []byte("v")}}, time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.Get(ctx, "x/short"); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key of an expired lease is still there")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPutIf(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if ok, err := s.PutIf(ctx, "k", []byte("1"), 0); err != nil || !ok {
		t.Fatalf("create: %v, %v", ok, err)
	}
	if ok, err := s.PutIf(ctx, "k", []byte("x"), 0); err != nil || ok {
		t.Fatalf("create over an existing key: %v, %v", ok, err)
	}
	it, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.PutIf(ctx, "k", []byte("2"), it.Revision); err != nil || !ok {
		t.Fatalf("swap at the current revision: %v, %v", ok, err)
	}
	if ok, err := s.PutIf(ctx, "k", []byte("3"), it.Revision); err != nil || ok {
		t.Fatalf("swap at a stale revision: %v, %v", ok, err)
	}
	if it, _ := s.Get(ctx, "k"); string(it.Value) != "2" {
		t.Errorf("value %q, want 2", it.Value)
	}
}
