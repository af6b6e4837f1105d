// Command dev builds, demonstrates and tests Trellis with nothing but Go:
//
//	go run ./hack/dev build   # bin/trellis and bin/trellis-proxy
//	go run ./hack/dev demo    # build, then run `bin/trellis demo`
//	go run ./hack/dev test    # gofmt, go vet, the whole test suite with the race detector, brief fuzzing
//	go run ./hack/dev fuzz    # every fuzz target, longer
//	go run ./hack/dev generate  # regenerate protobuf code (needs protoc)
//
// TRELLIS_FUZZTIME sets the time per fuzz target (default 10s for test,
// 60s for fuzz).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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
	case "generate":
		err = generate()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go run ./hack/dev build|demo|test|fuzz|generate")
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

func build() error {
	return run("go", "build", "-ldflags", "-X "+module+"/internal/version.Version="+version(),
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
		if err := run("go", "test", "-run", "^$", "-fuzz", "^"+t.name+"$", "-fuzztime", d.String(), t.pkg); err != nil {
			return err
		}
	}
	return nil
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
