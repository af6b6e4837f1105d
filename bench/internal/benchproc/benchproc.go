// Package benchproc is what the benchmark programs under bench/ share to
// run and watch child processes: find a program, start it with a log
// file, wait for it to be ready, stop it (SIGTERM, then SIGKILL), report
// an early exit with the log's tail, and read a process's CPU time (alone
// or with its children) and resident memory from /proc.
package benchproc

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
)

// Proc is a child process whose output goes to Log.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs bin with args, its output in dir/NAME.log; the child dies
// with this process.
func Start(dir, name, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.Log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop ends the process: SIGTERM, then SIGKILL after 5 s.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited returns an error with the end of the log if the process has
// exited, and nil while it runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.Name, p.err, Tail(p.Log, 15))
	default:
		return nil
	}
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CPUSeconds is the user and system CPU time of a process.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the name: state is f[0]; utime and stime are fields 14
	// and 15 of the line, f[11] and f[12] here.
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// RSSMB is a process's resident memory, 0 when it cannot be read.
func RSSMB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// ModuleRoot is the directory of the go.mod of the working directory.
func ModuleRoot() (string, error) {
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

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TreeCPUSeconds is the user and system CPU time of a process and of its
// descendants now running: a server whose workers are child processes
// (nginx's master and workers) is counted whole.
func TreeCPUSeconds(pid int) (float64, error) {
	total, err := CPUSeconds(pid)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return total, nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := ppid(p); ok {
			parent[p] = pp
		}
	}
	for p := range parent {
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				if c, err := CPUSeconds(p); err == nil {
					total += c
				}
				break
			}
		}
	}
	return total, nil
}

// ppid is the parent of a process, from /proc/PID/stat.
func ppid(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}

// Find looks a program up on PATH and then in /usr/sbin and /sbin, where
// Debian puts servers (haproxy, nginx) that a user's PATH may lack; ""
// if it is in none of them.
func Find(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// WaitFor calls f every 100 ms until it returns nil, for at most d; the
// error names what was waited for and f's last error.
func WaitFor(ctx context.Context, d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CPUTimes is, per CPU, the time spent busy (every state but idle and
// iowait) and in all, in clock ticks since boot, from /proc/stat.
type CPUTimes map[int][2]uint64

// ReadCPUTimes reads /proc/stat; nil when it cannot.
func ReadCPUTimes() CPUTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	out := CPUTimes{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var total, idle uint64
		for i, v := range f[1:] {
			x, _ := strconv.ParseUint(v, 10, 64)
			if i >= 8 { // guest and guest_nice are inside user and nice
				break
			}
			total += x
			if i == 3 || i == 4 { // idle, iowait
				idle += x
			}
		}
		out[n] = [2]uint64{total - idle, total}
	}
	return out
}

// Busy is the share of the time the CPUs in cpus were busy between t0
// and t, 0 to 1, whatever ran on them; 0 when unknown.
func (t CPUTimes) Busy(t0 CPUTimes, cpus []int) float64 {
	var busy, total uint64
	for _, c := range cpus {
		busy += t[c][0] - t0[c][0]
		total += t[c][1] - t0[c][1]
	}
	if total == 0 {
		return 0
	}
	return float64(busy) / float64(total)
}
