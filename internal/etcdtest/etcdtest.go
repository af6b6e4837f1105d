// Package etcdtest runs real etcd clusters for tests. Every member is an
// etcd server process, built from the go.etcd.io/etcd/server/v3 module that
// go.mod requires (the same etcd the control plane embeds), listening on
// loopback addresses the test chooses:
//
//	c := etcdtest.Start(t, "127.9.8.21", "127.9.8.22", "127.9.8.23")
//	store.Open(ctx, store.Options{Endpoints: c.Endpoints()})
//	c.Kill(c.Leader(t))  // quorum survives
//	c.Kill(0, 1, 2)      // etcd unavailable
//	c.Restart(0, 1, 2)   // back, with its data
//
// The server is built once into the user's cache directory; later builds
// find it up to date and take a fraction of a second. Members are killed
// when the test ends, and on Linux also when the test process dies.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Ports of every member, on its own address.
const (
	ClientPort = "2379"
	PeerPort   = "2380"
)

// serverPackage is the etcd server's main package.
const serverPackage = "go.etcd.io/etcd/server/v3"

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of the etcd server, building it on first use.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildServer() })
	if build.err != nil {
		t.Fatalf("etcdtest: %v", build.err)
	}
	return build.path
}

func buildServer() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "trellis-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building etcd needs the go command: %w", err)
	}
	// Test processes of several packages may build at once.
	unlock, err := lockFile(filepath.Join(dir, "etcd.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	path := filepath.Join(dir, "etcd")
	// go build leaves an up-to-date binary alone, so only the first build
	// (or one after go.mod changed etcd's version) takes time.
	cmd := exec.Command(goBin, "build", "-o", path, serverPackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", serverPackage, err, out)
	}
	return path, nil
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	Members []*Member
	// initial and token are the cluster's --initial-cluster and
	// --initial-cluster-token.
	initial, token string
}

// Member is one etcd server of a cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string

	dir     string
	logPath string
	// exited is closed when the process of the current run has exited;
	// nil while the member is stopped.
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs a cluster of one member per IP address (client port 2379,
// peer port 2380 on each), waits until every member is healthy, and stops
// the cluster when the test ends.
func Start(t testing.TB, ips ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t)}
	base := t.TempDir()
	var initial []string
	for i, ip := range ips {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + net.JoinHostPort(ip, ClientPort),
			PeerURL:   "http://" + net.JoinHostPort(ip, PeerPort),
			dir:       filepath.Join(base, fmt.Sprintf("m%d", i)),
		}
		m.logPath = filepath.Join(m.dir, "etcd.log")
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	t.Cleanup(c.cleanup)
	c.initial = strings.Join(initial, ",")
	c.token = fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.Members {
		c.start(m)
	}
	c.waitHealthy(c.all()...)
	return c
}

// Endpoints are the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

func (c *Cluster) all() []int {
	out := make([]int, len(c.Members))
	for i := range out {
		out[i] = i
	}
	return out
}

func (c *Cluster) start(m *Member) {
	c.t.Helper()
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logFile.Close()
	// The initial cluster flags are read only on the first start; later
	// starts find the membership in the data directory.
	cmd := exec.Command(c.bin,
		"--name", m.Name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", c.token,
		// As the embedded store: an apply is one transaction.
		"--max-txn-ops", "10000",
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("etcdtest: starting %s: %v", m.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
}

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool { return c.Members[i].cmd != nil }

// Kill stops the given members at once (SIGKILL) and waits for them.
func (c *Cluster) Kill(members ...int) {
	c.t.Helper()
	for _, i := range members {
		m := c.Members[i]
		if m.cmd == nil {
			c.t.Fatalf("etcdtest: %s is not running", m.Name)
		}
		_ = m.cmd.Process.Kill()
	}
	for _, i := range members {
		m := c.Members[i]
		<-m.exited
		m.cmd, m.exited = nil, nil
	}
}

// Restart starts the given stopped members again on their data and waits
// until they are healthy (which needs a quorum of the cluster running).
func (c *Cluster) Restart(members ...int) {
	c.t.Helper()
	for _, i := range members {
		m := c.Members[i]
		if m.cmd != nil {
			c.t.Fatalf("etcdtest: %s is running", m.Name)
		}
		c.start(m)
	}
	c.waitHealthy(members...)
}

// waitHealthy waits until each member answers its /health with a leader.
func (c *Cluster) waitHealthy(members ...int) {
	c.t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for _, i := range members {
		m := c.Members[i]
		for {
			err := health(client, m)
			if err == nil {
				break
			}
			select {
			case <-m.exited:
				c.t.Fatalf("etcdtest: %s exited:\n%s", m.Name, tail(m.logPath))
			default:
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("etcdtest: %s not healthy after 60s: %v\n%s", m.Name, err, tail(m.logPath))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func health(client *http.Client, m *Member) error {
	resp, err := client.Get(m.ClientURL + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(body.String()))
	}
	return nil
}

// Leader returns the index of the current leader, waiting for one.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	var running []string
	for _, m := range c.Members {
		if m.cmd != nil {
			running = append(running, m.ClientURL)
		}
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: running, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, m := range c.Members {
			if m.cmd == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := client.Status(ctx, m.ClientURL)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("etcdtest: no leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) cleanup() {
	for _, m := range c.Members {
		if m.cmd != nil {
			_ = m.cmd.Process.Kill()
			<-m.exited
			m.cmd, m.exited = nil, nil
		}
	}
	if c.t.Failed() {
		for _, m := range c.Members {
			c.t.Logf("etcd member %s (%s) log:\n%s", m.Name, m.ClientURL, tail(m.logPath))
		}
	}
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "(no log)"
	}
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
