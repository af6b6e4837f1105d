package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"

	"trellis.dev/trellis/internal/control"
)

// controlEnv carries the options of a profiled control plane (JSON): with
// -profile the benchmark runs control.Run in this binary, with CPU
// profiles, instead of `trellis control`, because the control plane serves
// no /debug/pprof.
const controlEnv = "TRELLIS_BENCH_CONTROL"

type controlConfig struct {
	DataDir      string `json:"dataDir"`
	XDSAddress   string `json:"xdsAddress"`
	DebugAddress string `json:"debugAddress"`
	// Profile is the prefix of the CPU profile files, one per phase:
	// Profile.<phase>.
	Profile string `json:"profile"`
	// PhaseAddress serves POST /phase?name=NAME, which ends the current
	// profile and starts Profile.NAME.
	PhaseAddress string `json:"phaseAddress"`
}

// profiler writes one CPU profile per phase, and a heap profile at the
// end of each.
type profiler struct {
	prefix string
	mu     sync.Mutex
	f      *os.File
	name   string
}

func (p *profiler) phase(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
	p.name = name
	f, err := os.Create(p.prefix + "." + name)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	p.f = f
	return nil
}

func (p *profiler) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *profiler) stopLocked() {
	if p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	p.f.Close()
	p.f = nil
	if f, err := os.Create(p.prefix + ".heap." + p.name); err == nil {
		runtime.GC()
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}

func controlMain(raw string) int {
	var cfg controlConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		return 2
	}
	prof := &profiler{prefix: cfg.Profile}
	defer prof.stop()
	if err := prof.phase("setup"); err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.PhaseAddress)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/phase" {
			http.NotFound(w, r)
			return
		}
		if err := prof.phase(r.URL.Query().Get("name")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = control.Run(ctx, control.Options{
		DataDir: cfg.DataDir, XDSAddress: cfg.XDSAddress, DebugAddress: cfg.DebugAddress,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		return 1
	}
	return 0
}

// profilePhase tells a profiled control plane that a phase begins; a no-op
// otherwise.
func (cp *controlProc) profilePhase(ctx context.Context, name string) error {
	if cp.phaseAddr == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cp.phaseAddr+"/phase?name="+name, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profiling phase %s: %w", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling phase %s: %s", name, resp.Status)
	}
	return nil
}
