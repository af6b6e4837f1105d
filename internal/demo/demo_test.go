package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/demo/app"
)

// buildBinaries builds trellis and trellis-proxy into one directory, as
// `make build` does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "trellis.dev/trellis/cmd/trellis", "trellis.dev/trellis/cmd/trellis-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// freeLoopback picks a loopback address whose demo ports are free.
func freeLoopback(t *testing.T) string {
	t.Helper()
	for range 50 {
		ip := fmt.Sprintf("127.%d.%d.1", 64+rand.IntN(180), rand.IntN(256))
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "15012"))
		if err != nil {
			continue
		}
		ln.Close()
		return ip
	}
	t.Fatal("no free loopback address")
	return ""
}

// TestDemo runs `trellis demo` as a user would, and checks what it
// promises: the ingress URL on a line of its own, a call chain across
// three services with the identity each sidecar verified, proxy-status
// reaching the demo's control plane, a second demo refused at once, and a
// clean stop.
func TestDemo(t *testing.T) {
	bin := buildBinaries(t)
	ip := freeLoopback(t)
	cmd := exec.Command(filepath.Join(bin, "trellis"), "demo", "--ip", ip)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ingress, dataDir string
	var output []string
	ingressLine := regexp.MustCompile(`^ingress: (http://127\.[0-9.]+:[0-9]+/)$`)
	timeout := time.After(3 * time.Minute)
	for ingress == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited before printing the ingress line:\n%s\n%s", strings.Join(output, "\n"), stderr.String())
			}
			output = append(output, line)
			if m := ingressLine.FindStringSubmatch(line); m != nil {
				ingress = m[1]
			}
			if d, ok := strings.CutPrefix(line, "starting the control plane (data and logs in "); ok {
				dataDir = strings.TrimSuffix(d, ")")
			}
		case <-timeout:
			t.Fatalf("no ingress line after 3 minutes:\n%s\n%s", strings.Join(output, "\n"), stderr.String())
		}
	}
	if want := "http://" + ip + ":18080/"; ingress != want {
		t.Errorf("ingress URL %q, want %q", ingress, want)
	}

	// The chain, as JSON: three hops, each with the identity its sidecar
	// verified and its own.
	chain := getChain(t, ingress)
	want := []struct{ service, caller, callee string }{
		{"web", "spiffe://cluster.local/ns/demo/sa/ingress", "spiffe://cluster.local/ns/demo/sa/web"},
		{"catalog", "spiffe://cluster.local/ns/demo/sa/web", "spiffe://cluster.local/ns/demo/sa/catalog"},
		{"reviews", "spiffe://cluster.local/ns/demo/sa/catalog", "spiffe://cluster.local/ns/demo/sa/reviews"},
	}
	if len(chain.Hops) != len(want) {
		t.Fatalf("chain has %d hops, want %d: %+v", len(chain.Hops), len(want), chain)
	}
	for i, w := range want {
		h := chain.Hops[i]
		if h.Service != w.service || h.Caller != w.caller || h.Callee != w.callee {
			t.Errorf("hop %d = %s caller %q callee %q, want %s caller %q callee %q", i+1, h.Service, h.Caller, h.Callee, w.service, w.caller, w.callee)
		}
	}
	// Both versions of reviews answer, split by the mesh route.
	versions := map[string]bool{}
	for i := 0; i < 40 && len(versions) < 2; i++ {
		c := getChain(t, ingress)
		versions[c.Hops[2].Version] = true
	}
	if !versions["v1"] || !versions["v2"] {
		t.Errorf("reviews versions seen in 40 requests: %v, want v1 and v2", versions)
	}
	// The page meant for curl names every hop's verified caller.
	page := getText(t, ingress)
	for _, w := range want {
		if !strings.Contains(page, "caller verified by "+w.service+"'s sidecar: "+w.caller) {
			t.Errorf("page does not show %s's verified caller %s:\n%s", w.service, w.caller, page)
		}
	}

	// proxy-status finds the demo's control plane through the environment
	// (the default address is the same with --ip 127.0.0.1).
	ps := exec.Command(filepath.Join(bin, "trellis"), "proxy-status", "-o", "json")
	ps.Env = append(os.Environ(), controlapi.EnvAddress+"="+net.JoinHostPort(ip, "15014"))
	out, err := ps.Output()
	if err != nil {
		t.Fatalf("proxy-status: %v\n%s", err, out)
	}
	var statuses []controlapi.ProxyStatus
	if err := json.Unmarshal(out, &statuses); err != nil {
		t.Fatalf("proxy-status -o json: %v\n%s", err, out)
	}
	if len(statuses) != 5 {
		t.Errorf("proxy-status lists %d proxies, want 5 (ingress and 4 sidecars):\n%s", len(statuses), out)
	}
	for _, s := range statuses {
		for _, ty := range s.Types {
			if ty.Type == "CDS" || ty.Type == "LDS" || ty.Type == "SDS" {
				if ty.State != "SYNCED" {
					t.Errorf("%s %s is %s, want SYNCED", s.ID, ty.Type, ty.State)
				}
			}
		}
	}

	// Every proxy got its first certificate with a join token of its own,
	// made through the API: five tokens, each used once.
	tl := exec.Command(filepath.Join(bin, "trellis"), "token", "list", "-o", "json")
	tl.Env = ps.Env
	out, err = tl.Output()
	if err != nil {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	var tokens []controlapi.TokenInfo
	if err := json.Unmarshal(out, &tokens); err != nil {
		t.Fatalf("token list -o json: %v\n%s", err, out)
	}
	if len(tokens) != 5 {
		t.Errorf("token list shows %d tokens, want 5 (ingress and 4 sidecars):\n%s", len(tokens), out)
	}
	for _, tok := range tokens {
		if tok.State != "used" || tok.UsesLeft != 0 || tok.Namespace != "demo" {
			t.Errorf("token %s for %s is %s with %d uses left, want used", tok.ID, tok.Identity, tok.State, tok.UsesLeft)
		}
	}

	// A second demo on the same address fails at once, saying why.
	start := time.Now()
	second := exec.Command(filepath.Join(bin, "trellis"), "demo", "--ip", ip)
	msg, err := second.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("second demo: %v, want exit code 1\n%s", err, msg)
	}
	if !strings.Contains(string(msg), "in use") || !strings.Contains(string(msg), "another `trellis demo`") {
		t.Errorf("second demo's message does not say the port is in use:\n%s", msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second demo took %s to fail", d)
	}

	// Interrupted, the demo stops every process and removes its data.
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo exited with %v after SIGINT\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of SIGINT")
	}
	if _, err := http.Get(ingress); err == nil {
		t.Error("the ingress still answers after the demo stopped")
	}
	if dataDir == "" {
		t.Error("the demo did not say where its data is")
	} else if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data directory %s is still there after the demo stopped", dataDir)
	}
}

func getChain(t *testing.T, url string) app.Chain {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	var c app.Chain
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return c
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
