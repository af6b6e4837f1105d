// Command dev builds, demonstrates and tests Trellis with nothing but Go:
//
//	go run ./hack/dev build   # bin/trellis and bin/trellis-proxy
//	go run ./hack/dev demo    # build, then run `bin/trellis demo`
//	go run ./hack/dev test    # gofmt, go vet, the whole test suite with the race detector, brief fuzzing
//	go run ./hack/dev fuzz    # every fuzz target, longer
//	go run ./hack/dev bench [flags]  # the control plane scale benchmark (bench/scale; -quick, -h)
//	go run ./hack/dev generate  # regenerate protobuf code (needs protoc)
//	go run ./hack/dev crds      # generate the trellis.dev CRDs and deep-copy code (controller-gen), copy the Gateway API CRDs
//	go run ./hack/dev k8s-binaries  # build kube-apiserver and kube-controller-manager for internal/kubetest
//	go run ./hack/dev conformance-images  # build the Gateway API conformance suite's echo images for internal/kubetest
//
// TRELLIS_FUZZTIME sets the time per fuzz target (default 10s for test,
// 60s for fuzz).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const module = "trellis.dev/trellis"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build()
	case "demo":
		err = demo(os.Args[2:])
	case "test":
		err = test(envDuration("TRELLIS_FUZZTIME", 10*time.Second))
	case "fuzz":
		err = fuzz(envDuration("TRELLIS_FUZZTIME", time.Minute))
	case "bench":
		err = run("go", append([]string{"run", "./bench/scale"}, os.Args[2:]...)...)
	case "generate":
		err = generate()
	case "crds":
		err = crds()
	case "k8s-binaries":
		err = k8sBinaries()
	case "conformance-images":
		err = conformanceImages()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go run ./hack/dev build|demo|test|fuzz|bench|generate|crds|k8s-binaries|conformance-images")
	os.Exit(2)
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// run runs a command with the output passed through.
func run(name string, args ...string) error {
	fmt.Fprintf(os.Stderr, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func version() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

// buildTags are the tags of release builds: grpcnotrace leaves out gRPC's
// /debug/requests tracing (golang.org/x/net/trace, html/template), which
// nothing serves, and 2.5 to 3 MB of every sidecar's memory
// (docs/dataplane.md#memory). bench/dataplane builds with the same tags.
const buildTags = "grpcnotrace"

func build() error {
	return run("go", "build", "-tags", buildTags, "-ldflags", "-X "+module+"/internal/version.Version="+version(),
		"-o", "bin/", "./cmd/trellis", "./cmd/trellis-proxy")
}

func demo(args []string) error {
	if err := build(); err != nil {
		return err
	}
	// The demo handles SIGINT itself: stop relaying it to this process.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	cmd := exec.Command(filepath.Join("bin", "trellis"), append([]string{"demo"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

func test(fuzzTime time.Duration) error {
	out, err := exec.Command("gofmt", "-l", ".").Output()
	if err != nil {
		return fmt.Errorf("gofmt: %w", err)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		return fmt.Errorf("gofmt would change:\n%s\n(run gofmt -w on them)", files)
	}
	if err := run("go", "vet", "./..."); err != nil {
		return err
	}
	if err := run("go", "test", "-race", "-timeout", "20m", "./..."); err != nil {
		return err
	}
	return fuzz(fuzzTime)
}

// fuzz runs every Go fuzz target in the module for d each.
func fuzz(d time.Duration) error {
	out, err := exec.Command("go", "test", "-list", "^Fuzz", "./...").Output()
	if err != nil {
		return fmt.Errorf("listing fuzz targets: %w", err)
	}
	var pkg string
	type target struct{ pkg, name string }
	var targets []target
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Fuzz"):
			names = append(names, line)
		case strings.HasPrefix(line, "ok "):
			pkg = strings.Fields(line)[1]
			for _, n := range names {
				targets = append(targets, target{pkg, n})
			}
			names = nil
		}
	}
	for _, t := range targets {
		if err := fuzzTarget(t.pkg, t.name, d); err != nil {
			return err
		}
	}
	return nil
}

// fuzzTarget fuzzes one target for d. Go's fuzzing coordinator may fail a
// run that found nothing with "context deadline exceeded" as -fuzztime
// ends, when its workers are starved of CPU (go.dev/issue/75804, fixed in
// Go 1.27): such a run, which wrote no failing input, is run again, at
// most twice. A run that wrote a failing input fails at once.
func fuzzTarget(pkg, name string, d time.Duration) error {
	dir := filepath.Join(strings.TrimSpace(mustOutput("go", "list", "-f", "{{.Dir}}", pkg)), "testdata", "fuzz", name)
	for attempt := 1; ; attempt++ {
		before := corpusFiles(dir)
		args := []string{"test", "-run", "^$", "-fuzz", "^" + name + "$", "-fuzztime", d.String(), pkg}
		fmt.Fprintf(os.Stderr, "+ go %s\n", strings.Join(args, " "))
		var out bytes.Buffer
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stdout, &out), io.MultiWriter(os.Stderr, &out)
		err := cmd.Run()
		if err == nil {
			return nil
		}
		wrote := len(corpusFiles(dir)) > len(before)
		if wrote || attempt == 3 || !bytes.Contains(out.Bytes(), []byte("\n    context deadline exceeded\n")) {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		fmt.Fprintf(os.Stderr, "dev: %s stopped with go.dev/issue/75804 (no failing input was written); running it again\n", name)
	}
}

// corpusFiles lists the inputs in a fuzz target's corpus directory.
func corpusFiles(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func generate() error {
	if _, err := exec.LookPath("protoc"); err != nil {
		return fmt.Errorf("protoc is not installed (apt-get install protobuf-compiler): %w", err)
	}
	for _, tool := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12", "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"} {
		if err := run("go", "install", tool); err != nil {
			return err
		}
	}
	gobin := strings.TrimSpace(mustOutput("go", "env", "GOPATH")) + "/bin"
	os.Setenv("PATH", gobin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return run("protoc", "--proto_path=internal/ca/capb",
		"--go_out=paths=source_relative:internal/ca/capb",
		"--go-grpc_out=paths=source_relative:internal/ca/capb",
		"internal/ca/capb/ca.proto")
}

func mustOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev:", name, err)
		os.Exit(1)
	}
	return string(out)
}

// gatewayCRDs are the standard-channel CRDs of the kinds Trellis reads,
// as named in sigs.k8s.io/gateway-api's config/crd/standard.
var gatewayCRDs = []string{
	"gateway.networking.k8s.io_backendtlspolicies.yaml",
	"gateway.networking.k8s.io_gatewayclasses.yaml",
	"gateway.networking.k8s.io_gateways.yaml",
	"gateway.networking.k8s.io_grpcroutes.yaml",
	"gateway.networking.k8s.io_httproutes.yaml",
	"gateway.networking.k8s.io_listenersets.yaml",
	"gateway.networking.k8s.io_referencegrants.yaml",
	"gateway.networking.k8s.io_tcproutes.yaml",
	"gateway.networking.k8s.io_tlsroutes.yaml",
}

const crdDir = "internal/schema/crds/gateway-api"

// crds generates the trellis.dev CRDs and deep-copy functions, then
// copies the Gateway API CRDs.
func crds() error {
	if err := trellisCRDs(); err != nil {
		return err
	}
	return gatewayAPICRDs()
}

// codegen is the separate module that pins controller-gen, so that the
// root go.mod stays clean.
const codegen = "hack/codegen"

// trellisCRDDir is where controller-gen writes the trellis.dev CRDs.
const trellisCRDDir = "internal/schema/crds/trellis"

// trellisCRDs builds controller-gen at the version hack/codegen/go.mod
// pins and runs it on api/...: zz_generated.deepcopy.go beside the types,
// and one CRD per kind, from the types' kubebuilder markers, into
// trellisCRDDir (replacing what is there).
func trellisCRDs() error {
	tmp, err := os.MkdirTemp("", "trellis-codegen")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "controller-gen")
	if err := run("go", "build", "-C", codegen, "-o", bin, "sigs.k8s.io/controller-tools/cmd/controller-gen"); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(trellisCRDDir, "*.yaml"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	return run(bin, "object", "crd:crdVersions=v1", "paths=./api/...",
		"output:crd:artifacts:config="+trellisCRDDir)
}

// gatewayAPICRDs copies the Gateway API CRDs of the version in go.mod from
// the module cache into crdDir, removes any other YAML there and writes its
// README.md.
func gatewayAPICRDs() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return fmt.Errorf("go list -m sigs.k8s.io/gateway-api: %w", err)
	}
	dir, ver, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok || dir == "" {
		return fmt.Errorf("sigs.k8s.io/gateway-api is not in the module cache (run go mod download): %q", out)
	}
	if err := os.MkdirAll(crdDir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	for _, f := range old {
		if !slices.Contains(gatewayCRDs, filepath.Base(f)) {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for _, name := range gatewayCRDs {
		b, err := os.ReadFile(filepath.Join(dir, "config", "crd", "standard", name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(crdDir, name), b, 0o644); err != nil {
			return err
		}
	}
	readme := strings.ReplaceAll(crdReadme, "VERSION", ver)
	if err := os.WriteFile(filepath.Join(crdDir, "README.md"), []byte(readme), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "copied %d CRDs of sigs.k8s.io/gateway-api %s into %s\n", len(gatewayCRDs), ver, crdDir)
	return nil
}

const crdReadme = `# Gateway API CRDs

The CustomResourceDefinitions of the Gateway API kinds Trellis reads
(GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute,
ReferenceGrant, BackendTLSPolicy), standard channel, exactly as shipped in
` + "`config/crd/standard/`" + ` of sigs.k8s.io/gateway-api VERSION, the version in go.mod.

Package ` + "`internal/schema`" + ` embeds them and runs their OpenAPI schemas, defaults
and CEL rules with the kube-apiserver's own CRD code, so that Trellis accepts
exactly what a Kubernetes cluster with these CRDs accepts.

They are copyright The Kubernetes Authors and licensed under the Apache
License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0), as is
the rest of sigs.k8s.io/gateway-api.

Do not edit them. After changing the gateway-api version in go.mod,
regenerate them with

    go run ./hack/dev crds

A test in internal/schema fails while they differ from the module's.
`

// k8sTools is the separate module that requires k8s.io/kubernetes, so that
// the root go.mod stays clean.
const k8sTools = "hack/k8s-tools"

// k8sCommands are the Kubernetes commands that internal/kubetest runs.
var k8sCommands = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
}

// k8sBinaries builds kube-apiserver and kube-controller-manager at the
// Kubernetes version matching the client-go in go.mod into
// $TRELLIS_K8S_BIN, or else the user's cache directory under
// trellis/k8s/VERSION (the directory internal/kubetest looks in), unless
// both are there already.
func k8sBinaries() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go").Output()
	if err != nil {
		return fmt.Errorf("go list -m k8s.io/client-go: %w", err)
	}
	clientGo := strings.TrimSpace(string(out))
	ver, ok := strings.CutPrefix(clientGo, "v0.")
	if !ok {
		return fmt.Errorf("unexpected k8s.io/client-go version %q", clientGo)
	}
	ver = "v1." + ver
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	cmd.Dir = k8sTools
	out, err = cmd.Output()
	if err != nil {
		return fmt.Errorf("go list -m k8s.io/kubernetes in %s: %w", k8sTools, err)
	}
	if tools := strings.TrimSpace(string(out)); tools != ver {
		return fmt.Errorf("%s/go.mod requires k8s.io/kubernetes %s but go.mod has k8s.io/client-go %s: "+
			"set k8s.io/kubernetes to %s there and the staging replace lines to %s", k8sTools, tools, clientGo, ver, clientGo)
	}
	dir := os.Getenv("TRELLIS_K8S_BIN")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		dir = filepath.Join(cache, "trellis", "k8s", ver)
	}
	// go build -C resolves -o against the tools module.
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	missing := false
	for _, c := range k8sCommands {
		if _, err := os.Stat(filepath.Join(dir, path.Base(c))); err != nil {
			missing = true
		}
	}
	if !missing {
		fmt.Fprintf(os.Stderr, "Kubernetes %s binaries are in %s already\n", ver, dir)
		return nil
	}
	// The version ldflags: without them the binaries report v0.0.0.
	major, minor, _ := strings.Cut(strings.TrimPrefix(ver, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	ldflags := "-s -w"
	for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		ldflags += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s -X %[1]s.gitTreeState=clean",
			pkg, ver, major, minor)
	}
	// Build beside the final directory and rename, so that an interrupted
	// build leaves nothing that looks complete.
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	start := time.Now()
	args := append([]string{"build", "-C", k8sTools, "-trimpath", "-ldflags", ldflags, "-o", tmp + "/"}, k8sCommands...)
	if err := run("go", args...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "built Kubernetes %s binaries into %s in %s\n", ver, dir, time.Since(start).Round(time.Second))
	return nil
}
