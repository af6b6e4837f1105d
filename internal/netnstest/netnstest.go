// Package netnstest makes hosts for tests out of network namespaces: each
// gets an address of a /24 (and of an IPv6 /64) that exists only inside
// the namespaces, all joined by a bridge in a namespace of their own.
// Nothing touches the host's network; everything the test created is
// deleted when it ends, also when it fails.
//
//	n := netnstest.New(t)            bridge namespace PREFIX-hub (br0)
//	ns, ip := n.Add("web")           namespace PREFIX-web, eth0 = ip/24, lo up
//	n.Start(n.Command(ns, env, argv...))   a process in it, stopped at the end
//
// Processes run with `ip netns exec`, which runs the binary in place of
// itself, so that signals reach it.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Net is a set of network namespaces on one bridge.
type Net struct {
	t      testing.TB
	prefix string // unique name prefix
	// Subnet is the IPv4 /24 without the host part: "198.18.N".
	Subnet string
	// Subnet6 is the IPv6 prefix of the same link, without the host part.
	Subnet6 string
	hub     string
	link    int

	mu    sync.Mutex
	n     int
	procs []*exec.Cmd
	// siblings counts the Nets made by Sibling.
	siblings int
}

// New creates the bridge namespace, skipping the test without root or
// without ip, iptables and nft.
func New(t testing.TB) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, bin := range []string{"ip", "iptables", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (.ci/run installs iproute2, iptables and nftables)", bin)
		}
	}
	id := fmt.Sprintf("%d%03d", os.Getpid()%100000, time.Now().Nanosecond()%1000)
	link := time.Now().Nanosecond()%250 + 1
	return newNet(t, "trl"+id, link)
}

// newNet creates the bridge namespace of a Net on link (1-250).
func newNet(t testing.TB, prefix string, link int) *Net {
	t.Helper()
	n := &Net{t: t, prefix: prefix, link: link, Subnet: fmt.Sprintf("198.18.%d", link), Subnet6: fmt.Sprintf("fd00:198:18:%x::", link)}
	n.hub = n.prefix + "-hub"
	t.Cleanup(n.cleanup)
	n.IP("netns", "add", n.hub)
	n.IP("-n", n.hub, "link", "add", "br0", "type", "bridge")
	n.IP("-n", n.hub, "link", "set", "br0", "up")
	// A bridge forwards at once, without waiting to learn the topology.
	n.IP("-n", n.hub, "link", "set", "br0", "type", "bridge", "forward_delay", "0")
	return n
}

// IP runs the ip command, failing the test on error.
func (n *Net) IP(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Add creates a namespace on the bridge and returns its name and IPv4
// address; Addr6 gives its IPv6 address.
func (n *Net) Add(name string) (ns, addr string) {
	n.t.Helper()
	n.mu.Lock()
	n.n++
	k := n.n
	n.mu.Unlock()
	ns = n.prefix + "-" + name
	addr = fmt.Sprintf("%s.%d", n.Subnet, k)
	veth := fmt.Sprintf("v%d", k)
	n.IP("netns", "add", ns)
	n.IP("-n", n.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	n.IP("-n", n.hub, "link", "set", veth, "master", "br0", "up")
	n.IP("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
	n.IP("-n", ns, "addr", "add", n.Addr6(k)+"/64", "dev", "eth0", "nodad")
	n.IP("-n", ns, "link", "set", "eth0", "up")
	n.IP("-n", ns, "link", "set", "lo", "up")
	return ns, addr
}

// Sibling creates a second Net, another bridge on another subnet, with
// nothing joining the two: a namespace is on both only when Attach puts
// it there, so that it is the only path between them (a gateway between
// two networks). Its bridge is deleted when the test ends; the
// namespaces attached to it belong to the Net that added them.
//
//	n2 := n.Sibling()
//	gw, gwIP := n.Add("gw")          on n's subnet
//	gwIP2 := n2.Attach(gw)           a second interface, on n2's subnet
func (n *Net) Sibling() *Net {
	n.t.Helper()
	n.mu.Lock()
	n.siblings++
	k := n.siblings
	n.mu.Unlock()
	return newNet(n.t, fmt.Sprintf("%sn%d", n.prefix, k), (n.link+k-1)%250+1)
}

// Attach adds to namespace ns, which another Net created, an interface
// on this Net's bridge (named netN, N the third byte of Subnet) and
// returns its IPv4 address. Namespaces of this Net are added with Add.
func (n *Net) Attach(ns string) (addr string) {
	n.t.Helper()
	n.mu.Lock()
	n.n++
	k := n.n
	n.mu.Unlock()
	dev := fmt.Sprintf("net%d", n.link)
	addr = fmt.Sprintf("%s.%d", n.Subnet, k)
	veth := fmt.Sprintf("v%d", k)
	n.IP("-n", n.hub, "link", "add", veth, "type", "veth", "peer", "name", dev, "netns", ns)
	n.IP("-n", n.hub, "link", "set", veth, "master", "br0", "up")
	n.IP("-n", ns, "addr", "add", addr+"/24", "dev", dev)
	n.IP("-n", ns, "addr", "add", n.Addr6(k)+"/64", "dev", dev, "nodad")
	n.IP("-n", ns, "link", "set", dev, "up")
	return addr
}

// Addr6 is the IPv6 address of the k-th namespace added.
func (n *Net) Addr6(k int) string { return fmt.Sprintf("%s%x", n.Subnet6, k) }

// Command is argv run in namespace ns, with env added to the test's
// environment.
func (n *Net) Command(ns string, env []string, argv ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// Start starts cmd, which runs until the test ends: then it gets SIGTERM,
// and SIGKILL 15 s later.
func (n *Net) Start(cmd *exec.Cmd) {
	n.t.Helper()
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
}

func (n *Net) cleanup() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, c := range procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range procs {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if strings.HasPrefix(name, n.prefix+"-") {
			if err := exec.Command("ip", "netns", "del", name).Run(); err != nil {
				n.t.Errorf("ip netns del %s: %v", name, err)
			}
		}
	}
}
