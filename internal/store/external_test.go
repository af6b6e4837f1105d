package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"trellis.dev/trellis/internal/etcdtest"
)

// loopbackIP returns a loopback address whose etcd ports are free.
func loopbackIP(t *testing.T) string {
	t.Helper()
	for range 50 {
		ip := fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(180), rand.IntN(256), 1+rand.IntN(250))
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, etcdtest.ClientPort))
		if err != nil {
			continue
		}
		ln.Close()
		return ip
	}
	t.Fatal("no free loopback address")
	return ""
}

// TestLeaseOutlivesOutage stops an external etcd for longer than a lease's
// TTL: when etcd returns, the lease is kept alive again (or granted again)
// and its key stays.
func TestLeaseOutlivesOutage(t *testing.T) {
	t.Parallel()
	etcd := etcdtest.Start(t, loopbackIP(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Open(ctx, Options{Endpoints: etcd.Endpoints(), RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ttl = 2 * time.Second
	l, err := s.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "reg/x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(ctx) }()

	etcd.Kill(0)
	time.Sleep(3 * ttl) // the client gives up on the lease meanwhile
	etcd.Restart(0)
	// Long enough for a lease nobody renews to expire.
	time.Sleep(3 * ttl)
	if _, err := s.Get(ctx, "reg/x"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	cancel()
	<-done
}
