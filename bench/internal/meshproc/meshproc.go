// Package meshproc builds and starts the Trellis pieces a benchmark under
// bench/ runs as separate processes, as an operator would: the trellis and
// trellis-proxy binaries of this checkout (the release build's tags), a
// control plane (`trellis control` with its embedded etcd and CA) that is
// waited for, the configuration applied to it, join tokens written to
// files, and the CPU and heap profiles a proxy serves on its admin port.
//
//	Build ──► StartControl ──► Apply, Tokens ──► benchproc.Start(trellis-proxy
//	                                              --control-plane XDS --ca-bundle CABundle(dir)
//	                                              --token-file TokenFile(dir, account) QuietArgs...)
package meshproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/internal/controlapi"
)

// Build builds trellis and trellis-proxy from the module at root into dir
// and returns their paths.
func Build(ctx context.Context, root, dir string) (trellis, proxy string, err error) {
	for _, b := range []struct{ out, pkg string }{{"trellis", "./cmd/trellis"}, {"trellis-proxy", "./cmd/trellis-proxy"}} {
		// The release build's tags (hack/dev's buildTags).
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "trellis"), filepath.Join(dir, "trellis-proxy"), nil
}

// Control is a running `trellis control`.
type Control struct {
	*benchproc.Proc
	// XDS is the xDS and CA address the proxies connect to.
	XDS string
	API *controlapi.Client
	dir string
}

// StartControl starts `trellis control` with its data (embedded etcd, the
// CA) in dir/data, on free loopback ports, and waits until it is ready.
func StartControl(ctx context.Context, dir, trellis string) (*Control, error) {
	xp, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	ap, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	c := &Control{XDS: "127.0.0.1:" + strconv.Itoa(xp), dir: dir}
	api := "127.0.0.1:" + strconv.Itoa(ap)
	c.Proc, err = benchproc.Start(dir, "control", trellis, "control", "--data-dir", filepath.Join(dir, "data"), "--xds-address", c.XDS, "--debug-address", api)
	if err != nil {
		return nil, err
	}
	if c.API, err = controlapi.NewClient(api); err != nil {
		c.Stop()
		return nil, err
	}
	if err := benchproc.WaitFor(ctx, time.Minute, "the control plane", func() error {
		if err := c.Exited(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return c.API.Ready(rctx)
	}); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Apply applies the resources of one YAML file, as trellis apply does.
func (c *Control) Apply(ctx context.Context, name, yaml string) error {
	_, err := c.API.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: name, Content: yaml}}})
	return err
}

// Tokens makes a join token for each service account of namespace, as
// an operator does with trellis token create, and writes each to
// TokenFile(dir, account).
func (c *Control) Tokens(ctx context.Context, namespace string, accounts ...string) error {
	var specs []controlapi.TokenSpec
	for _, a := range accounts {
		specs = append(specs, controlapi.TokenSpec{Namespace: namespace, ServiceAccount: a})
	}
	made, err := c.API.CreateTokens(ctx, specs)
	if err != nil {
		return err
	}
	for i, a := range accounts {
		if err := os.WriteFile(TokenFile(c.dir, a), []byte(made[i].Token+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// TokenFile is where Tokens writes the join token of a service account.
func TokenFile(dir, account string) string { return filepath.Join(dir, account+".token") }

// CABundle is the mesh's root certificate, which the control plane writes
// in its data directory.
func CABundle(dir string) string { return filepath.Join(dir, "data", "ca", "root-cert.pem") }

// QuietArgs turn off the access log of a trellis-proxy that has one: the
// figures are the proxying's; access logs are measured apart.
func QuietArgs(proxy string) []string {
	if help, _ := exec.Command(proxy, "--help").CombinedOutput(); bytes.Contains(help, []byte("--access-log")) {
		return []string{"--access-log", "off"}
	}
	return nil
}

// Profile starts a CPU profile of d of the proxy whose admin endpoint is
// admin (HOST:PORT), written to path; the function returned waits for
// it. A failure only leaves the profile out.
func Profile(admin, path string, d time.Duration) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Save(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, max(1, int(d.Seconds()))), path)
	}()
	return func() { <-done }
}

// Save writes what http://HOSTPORT/PATH answers to a file; it is for
// profiles, which a failure only leaves out.
func Save(url, path string) {
	resp, err := http.Get("http://" + url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(path); err == nil {
		io.Copy(f, resp.Body)
		f.Close()
	}
}
