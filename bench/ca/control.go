package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"trellis.dev/trellis/internal/controlapi"
)

// control is a running `trellis control`.
type control struct {
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	err    error
	xds    string // the xDS and CA address
	bundle string // the trust bundle the proxies start with
	api    *controlapi.Client
}

// startControl builds trellis from the module at root and starts
// `trellis control` with its data (embedded etcd, the CA) under dir.
func startControl(ctx context.Context, root, dir string) (*control, error) {
	bin := filepath.Join(dir, "trellis")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trellis")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/trellis: %w\n%s", err, out)
	}
	xp, err := freePort()
	if err != nil {
		return nil, err
	}
	ap, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &control{
		log: filepath.Join(dir, "control.log"), done: make(chan struct{}),
		xds: "127.0.0.1:" + strconv.Itoa(xp), bundle: filepath.Join(dir, "data", "ca", "root-cert.pem"),
	}
	api := "127.0.0.1:" + strconv.Itoa(ap)
	f, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(bin, "control", "--data-dir", filepath.Join(dir, "data"), "--xds-address", c.xds, "--debug-address", api)
	c.cmd.Stdout, c.cmd.Stderr = f, f
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting trellis control: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		f.Close()
		close(c.done)
	}()
	if c.api, err = controlapi.NewClient(api); err != nil {
		c.stop()
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := c.exited(); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.api.Ready(rctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("waiting for the control plane: %w", err)
		}
		select {
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return c, nil
}

func (c *control) pid() int { return c.cmd.Process.Pid }

// stop ends the control plane: SIGTERM, then SIGKILL after 5 s.
func (c *control) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *control) exited() error {
	select {
	case <-c.done:
		b, _ := os.ReadFile(c.log)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		return fmt.Errorf("trellis control exited: %v\n%s", c.err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	default:
		return nil
	}
}

// cpuSeconds is the user and system CPU time of a process.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// utime and stime are fields 14 and 15 of the line, f[11] and f[12]
	// after the name.
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run it from inside the trellis module")
	}
	return filepath.Dir(mod), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
