// Package store keeps Trellis's configuration in etcd: an embedded
// single-node etcd in the control plane's data directory by default, or an
// external etcd cluster, which several control planes share for high
// availability.
//
// Keys live under /trellis/. The store knows nothing about resource kinds:
// it stores bytes under keys, applies many writes in one transaction (all or
// nothing), and watches prefixes. Registrations of proxies are kept under
// leases, so they outlive a control plane restart but not the proxy. Keys
// made with CreateExpiring (join tokens) live under a lease that is never
// renewed: etcd deletes them when it runs out. PutIf changes a key in place,
// keeping its lease, if nobody changed it since it was read.
//
// etcd can become unavailable (quorum lost, every member down). The store
// then fails requests after Options.RequestTimeout instead of waiting, Health
// reports the outage (a probe reads from etcd every second), watches resume
// when etcd answers again, and leases are renewed again, or granted again
// with their keys if etcd let them expire.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Prefix is where every Trellis key lives.
const Prefix = "/trellis/"

// MaxRequestBytes is the largest write the embedded etcd accepts: one
// apply is one transaction. (etcd's default is 1.5 MiB; an external etcd
// needs --max-request-bytes as large for applies this big.)
const MaxRequestBytes = 16 << 20

// ErrNotFound is returned for a missing key.
var ErrNotFound = errors.New("store: not found")

// DefaultRequestTimeout bounds each request to etcd when
// Options.RequestTimeout is zero.
const DefaultRequestTimeout = 5 * time.Second

// Options configure Open.
type Options struct {
	// DataDir holds the embedded etcd's data (DataDir/etcd) and sockets.
	DataDir string
	// Endpoints of an external etcd cluster; when set, nothing is embedded.
	Endpoints []string
	// RequestTimeout bounds every request to etcd whose context does not
	// end sooner (default DefaultRequestTimeout): while etcd is
	// unavailable, callers get an error rather than waiting for it.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Store is a handle on the etcd that holds the config.
type Store struct {
	client    *clientv3.Client
	etcd      *embed.Etcd
	endpoints []string
	timeout   time.Duration
	log       *slog.Logger
	closing   atomic.Bool
	health    health
	// stop ends the health probe; done is closed when it has.
	stop context.CancelFunc
	done chan struct{}
}

// Open starts the embedded etcd (or connects to Endpoints) and returns a
// store ready for use.
func Open(ctx context.Context, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, timeout: opts.RequestTimeout}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	endpoints := opts.Endpoints
	if len(endpoints) == 0 {
		e, endpoint, err := startEmbedded(ctx, opts.DataDir, newEtcdLogger(log, &s.closing))
		if err != nil {
			return nil, err
		}
		s.etcd = e
		endpoints = []string{endpoint}
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		DialTimeout:        5 * time.Second,
		Logger:             zap.NewNop(),
		MaxCallSendMsgSize: MaxRequestBytes + 1<<20,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: connecting to etcd %v: %w", endpoints, err)
	}
	s.client = client
	s.endpoints = endpoints
	// Fail fast if etcd does not answer.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Get(cctx, Prefix+"ping"); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd %v does not answer: %w", endpoints, err)
	}
	pctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go func() {
		defer close(s.done)
		s.probe(pctx)
	}()
	return s, nil
}

// startEmbedded runs a single-node etcd whose client and peer listeners are
// UNIX sockets inside dataDir, so that nothing else on the machine can
// reach it and two control planes never fight over a TCP port.
func startEmbedded(ctx context.Context, dataDir string, logger *zap.Logger) (*embed.Etcd, string, error) {
	if dataDir == "" {
		return nil, "", errors.New("store: no data directory for the embedded etcd")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("store: %w", err)
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("store: %w", err)
	}
	clientSock := filepath.Join(dir, "etcd.sock")
	peerSock := filepath.Join(dir, "etcd-peer.sock")
	// Stale sockets from a crashed run would make the listeners fail.
	_ = os.Remove(clientSock)
	_ = os.Remove(peerSock)

	cfg := embed.NewConfig()
	cfg.Name = "trellis"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	cfg.ListenClientUrls = []url.URL{{Scheme: "unix", Path: clientSock}}
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: "unix", Host: "localhost:0", Path: clientSock}}
	cfg.ListenPeerUrls = []url.URL{{Scheme: "unix", Host: peerSock}}
	cfg.AdvertisePeerUrls = []url.URL{{Scheme: "unix", Host: "localhost:0"}}
	cfg.InitialCluster = cfg.Name + "=unix://localhost:0"
	cfg.MaxTxnOps = 10000
	cfg.MaxRequestBytes = MaxRequestBytes
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "10000"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("store: starting embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("store: embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("store: embedded etcd did not become ready in 60s")
	case <-ctx.Done():
		e.Close()
		return nil, "", ctx.Err()
	}
	return e, "unix://" + clientSock, nil
}

// Close stops the health probe, releases the client and stops the embedded
// etcd.
func (s *Store) Close() error {
	s.closing.Store(true)
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	if s.client != nil {
		s.client.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
	return nil
}
