package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"trellis.dev/trellis/bench/internal/benchproc"
)

// planCPUs turns -cpus into where the proxies run and the CPUs left for
// the load generator and the backend ("" when they are not pinned). The
// default, on two CPUs or more, is the proxies on the last CPU with one
// thread each and the rest on the others: a proxy cannot borrow a CPU
// the others lack, and the load never takes the proxy's.
func planCPUs(list string) (pinning, string, error) {
	online := cpusOf()
	switch {
	case list == "all":
		return pinning{Threads: len(online)}, "", nil
	case list == "" && len(online) < 2:
		return pinning{Threads: 1}, "", nil
	case list == "":
		list = strconv.Itoa(online[len(online)-1])
	}
	proxy, err := parseCPUs(list)
	if err != nil {
		return pinning{}, "", fmt.Errorf("-cpus %q: %w", list, err)
	}
	var rest []string
	for _, c := range online {
		if !slices.Contains(proxy, c) {
			rest = append(rest, strconv.Itoa(c))
		}
	}
	return pinning{CPUs: list, Threads: len(proxy)}, strings.Join(rest, ","), nil
}

// cpusOf is the CPUs this process may run on.
func cpusOf() []int {
	if out, err := exec.Command(benchproc.Find("taskset"), "-c", "-p", strconv.Itoa(os.Getpid())).Output(); err == nil {
		if _, l, ok := strings.Cut(strings.TrimSpace(string(out)), ": "); ok {
			if cpus, err := parseCPUs(l); err == nil && len(cpus) > 0 {
				return cpus
			}
		}
	}
	var all []int
	for i := range runtime.NumCPU() {
		all = append(all, i)
	}
	return all
}

// parseCPUs reads a CPU list as taskset -c takes it: 0,2,4-7.
func parseCPUs(list string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CPU number or range", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a CPU range", part)
			}
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// pinSelf moves every thread of this process to cpus; the children it
// starts from now on inherit that. restore puts back what it had.
func pinSelf(cpus string) (restore func(), err error) {
	taskset := benchproc.Find("taskset")
	pid := strconv.Itoa(os.Getpid())
	before := cpusOf()
	if out, err := exec.Command(taskset, "-a", "-c", "-p", cpus, pid).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("taskset -a -c -p %s: %w\n%s", cpus, err, out)
	}
	var prev []string
	for _, c := range before {
		prev = append(prev, strconv.Itoa(c))
	}
	return func() { _ = exec.Command(taskset, "-a", "-c", "-p", strings.Join(prev, ","), pid).Run() }, nil
}
