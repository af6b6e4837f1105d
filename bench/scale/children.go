package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"trellis.dev/trellis/internal/controlapi"
)

// moduleRoot is the directory of the trellis module, and the commit it is
// at ("unknown" outside git).
func moduleRoot(ctx context.Context) (root, commit string, err error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root = filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		return "", "", errors.New("not inside the trellis module: run from the repository")
	}
	commit = "unknown"
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return root, commit, nil
}

// buildTrellis builds the trellis binary of the module at root into dir.
func buildTrellis(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "trellis")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trellis")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/trellis: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// childAttr makes a child process die with the benchmark.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// controlProc is a running control plane.
type controlProc struct {
	cmd     *exec.Cmd
	xds     string
	api     string
	dataDir string
	log     string
	// phaseAddr is where a profiled control plane takes phase changes.
	phaseAddr string
	done      chan struct{}
	err       error
}

func startControl(ctx context.Context, o options, bin, dir string) (*controlProc, error) {
	xds, err := freeAddr()
	if err != nil {
		return nil, err
	}
	api, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cp := &controlProc{xds: xds, api: api, dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "control.log"), done: make(chan struct{})}
	var cmd *exec.Cmd
	if o.Profile != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if cp.phaseAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		cfg, _ := json.Marshal(controlConfig{DataDir: cp.dataDir, XDSAddress: xds, DebugAddress: api,
			Profile: o.Profile + "." + filepath.Base(dir), PhaseAddress: cp.phaseAddr})
		cmd = exec.Command(self)
		cmd.Env = append(os.Environ(), controlEnv+"="+string(cfg))
	} else {
		cmd = exec.Command(bin, "control", "--data-dir", cp.dataDir, "--xds-address", xds, "--debug-address", api)
	}
	logf, err := os.Create(cp.log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cp.cmd = cmd
	go func() {
		cp.err = cmd.Wait()
		logf.Close()
		close(cp.done)
	}()
	client, err := controlapi.NewClient(api)
	if err != nil {
		cp.stop()
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := client.Ready(rctx)
		cancel()
		if err == nil {
			return cp, nil
		}
		select {
		case <-cp.done:
			return nil, fmt.Errorf("the control plane exited: %v (log: %s)\n%s", cp.err, cp.log, tail(cp.log, 20))
		case <-ctx.Done():
			cp.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cp.stop()
			return nil, fmt.Errorf("the control plane was not ready in 2m: %v (log: %s)", err, cp.log)
		}
	}
}

func (cp *controlProc) pid() int { return cp.cmd.Process.Pid }

// stop ends the control plane: SIGTERM, then SIGKILL after 30 s.
func (cp *controlProc) stop() {
	select {
	case <-cp.done:
		return
	default:
	}
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.done:
	case <-time.After(30 * time.Second):
		_ = cp.cmd.Process.Kill()
		<-cp.done
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// loaderProc is the running loader and the orchestrator's end of its
// pipes.
type loaderProc struct {
	cmd *exec.Cmd
	log string

	inMu sync.Mutex
	in   io.WriteCloser

	mu      sync.Mutex
	waiters map[string]chan event
	ready   chan event
	stats   chan event
	dead    chan struct{}
	failure string
	exitErr error
}

func startLoader(cfg loaderConfig, dir string) (*loaderProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	lp := &loaderProc{log: filepath.Join(dir, "loader.log"), waiters: map[string]chan event{},
		ready: make(chan event, 1), stats: make(chan event, 1), dead: make(chan struct{})}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), loaderEnv+"="+string(raw))
	logf, err := os.Create(lp.log)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	if lp.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the loader: %w", err)
	}
	lp.cmd = cmd
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				continue // not ours: a stray print
			}
			lp.dispatch(e)
		}
		lp.exitErr = cmd.Wait()
		logf.Close()
		close(lp.dead)
	}()
	return lp, nil
}

func (lp *loaderProc) dispatch(e event) {
	switch e.Event {
	case "ready":
		lp.ready <- e
	case "stats":
		lp.stats <- e
	case "watching", "done":
		lp.mu.Lock()
		ch := lp.waiters[fmt.Sprintf("%s:%d", e.Event, e.ID)]
		lp.mu.Unlock()
		if ch != nil {
			ch <- e
		}
	case "error":
		lp.mu.Lock()
		lp.failure = e.Error
		lp.mu.Unlock()
	}
}

func (lp *loaderProc) deadErr() error {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	msg := lp.failure
	if msg == "" {
		msg = fmt.Sprint(lp.exitErr)
	}
	return fmt.Errorf("the loader failed: %s (log: %s)\n%s", msg, lp.log, tail(lp.log, 10))
}

func (lp *loaderProc) send(c command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	lp.inMu.Lock()
	defer lp.inMu.Unlock()
	_, err = lp.in.Write(append(b, '\n'))
	return err
}

func (lp *loaderProc) waitReady(ctx context.Context, timeout time.Duration) (event, error) {
	select {
	case e := <-lp.ready:
		return e, nil
	case <-lp.dead:
		return event{}, lp.deadErr()
	case <-ctx.Done():
		return event{}, ctx.Err()
	case <-time.After(timeout):
		return event{}, fmt.Errorf("the loader was not ready in %s (log: %s)", timeout, lp.log)
	}
}

// expect asks the loader to watch for a change and returns, once it
// watches, the channel its result will come on.
func (lp *loaderProc) expect(ctx context.Context, c command) (<-chan event, int, error) {
	c.Op = "expect"
	watching, done := make(chan event, 1), make(chan event, 1)
	lp.mu.Lock()
	lp.waiters[fmt.Sprintf("watching:%d", c.ID)] = watching
	lp.waiters[fmt.Sprintf("done:%d", c.ID)] = done
	lp.mu.Unlock()
	if err := lp.send(c); err != nil {
		return nil, 0, err
	}
	select {
	case e := <-watching:
		lp.mu.Lock()
		delete(lp.waiters, fmt.Sprintf("watching:%d", c.ID))
		lp.mu.Unlock()
		return done, e.Affected, nil
	case <-lp.dead:
		return nil, 0, lp.deadErr()
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, 0, errors.New("the loader did not answer an expect in 30s")
	}
}

// wait returns the result of an expectation.
func (lp *loaderProc) wait(ctx context.Context, id int, done <-chan event, timeout time.Duration) (event, error) {
	defer func() {
		lp.mu.Lock()
		delete(lp.waiters, fmt.Sprintf("done:%d", id))
		lp.mu.Unlock()
	}()
	select {
	case e := <-done:
		return e, nil
	case <-lp.dead:
		return event{}, lp.deadErr()
	case <-ctx.Done():
		return event{}, ctx.Err()
	case <-time.After(timeout + 10*time.Second):
		return event{}, fmt.Errorf("the loader did not report change %d", id)
	}
}

func (lp *loaderProc) getStats(ctx context.Context) (*loaderStats, error) {
	if err := lp.send(command{Op: "stats"}); err != nil {
		return nil, err
	}
	select {
	case e := <-lp.stats:
		return e.Stats, nil
	case <-lp.dead:
		return nil, lp.deadErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, errors.New("the loader did not report its stats in 60s")
	}
}

// stop asks the loader to quit and waits for it.
func (lp *loaderProc) stop() {
	_ = lp.send(command{Op: "quit"})
	lp.inMu.Lock()
	lp.in.Close()
	lp.inMu.Unlock()
	select {
	case <-lp.dead:
	case <-time.After(30 * time.Second):
		_ = lp.cmd.Process.Kill()
		<-lp.dead
	}
}

// applyWithTimeout sends an apply request with its own timeout: the API
// client's 30 s is too short for thousands of resources at once.
func applyWithTimeout(ctx context.Context, api string, req controlapi.ApplyRequest, timeout time.Duration) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+api+controlapi.PathApply, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: timeout}).Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var er controlapi.ErrorResponse
		if json.Unmarshal(data, &er) == nil && len(er.Errors) > 0 {
			msgs := er.Errors
			if len(msgs) > 10 {
				msgs = append(msgs[:10], fmt.Sprintf("… and %d more", len(er.Errors)-10))
			}
			return fmt.Errorf("%s", strings.Join(msgs, "\n"))
		}
		return fmt.Errorf("apply: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return nil
}
