package store

import (
	"context"
	"errors"
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
