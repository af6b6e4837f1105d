// Package capture installs and removes the transparent capture rules of a
// sidecar in the workload's network namespace: outbound TCP is redirected
// to the proxy's outbound capture port, inbound TCP to its inbound capture
// port. It drives the iptables (and ip6tables) or nft binaries; it holds no
// state between runs: Clean removes exactly the chains or table Install
// adds, whoever added them.
//
//	nat PREROUTING ─► TRELLIS_INBOUND ─► excluded ports (mesh, admin) RETURN
//	                                  └► REDIRECT :15006 (all ports, or --inbound-ports)
//	nat OUTPUT ─────► TRELLIS_OUTPUT  ─► the proxy's uid or mark RETURN
//	                                  ├► loopback, excluded CIDRs and ports RETURN
//	                                  └► REDIRECT :15001
//
// With nftables the same rules live in one table, inet trellis, which
// covers IPv4 and IPv6 at once and is replaced atomically.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Modes: the rule backend.
const (
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
)

// Default ports (DESIGN §4).
const (
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
)

// DefaultExcludeInboundPorts are the proxy's own ports, never captured:
// the mesh port (mesh mTLS arrives there directly), admin, metrics and
// readiness.
var DefaultExcludeInboundPorts = []uint16{15000, 15008, 15020, 15021}

// Config is what Install installs.
type Config struct {
	// Mode is ModeIPTables or ModeNFTables.
	Mode string
	// ProxyUID, when not negative, exempts the traffic of processes
	// running as that uid (the proxy) from outbound capture.
	ProxyUID int
	// ProxyMark, when not zero, exempts packets with that mark (set by the
	// proxy with SO_MARK on its upstream sockets).
	ProxyMark uint32
	// OutboundPort and InboundPort are the proxy's capture ports; zero
	// takes the defaults.
	OutboundPort, InboundPort uint16
	// ExcludeOutboundPorts and ExcludeOutboundCIDRs are destinations not
	// captured.
	ExcludeOutboundPorts []uint16
	ExcludeOutboundCIDRs []netip.Prefix
	// InboundPorts, when set, are the only inbound ports captured;
	// otherwise every port but ExcludeInboundPorts is.
	InboundPorts        []uint16
	ExcludeInboundPorts []uint16
	// IPv6 installs the rules for IPv6 too (ip6tables; nftables covers
	// both families in one table whatever it says).
	IPv6 bool
}

// ErrNoExemption is returned for a config that would capture the proxy's
// own traffic.
var ErrNoExemption = errors.New("capture: neither a proxy uid nor a proxy mark: the proxy's own traffic would loop back to it")

func (c Config) withDefaults() Config {
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	if c.Mode == "" {
		c.Mode = ModeIPTables
	}
	return c
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Mode != ModeIPTables && c.Mode != ModeNFTables && c.Mode != "" {
		errs = append(errs, fmt.Errorf("capture: mode %q: want %s or %s", c.Mode, ModeIPTables, ModeNFTables))
	}
	if c.ProxyUID < 0 && c.ProxyMark == 0 {
		errs = append(errs, ErrNoExemption)
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("capture: excluded CIDR %v is not valid", p))
		}
	}
	return errors.Join(errs...)
}

// HasIPv6 reports whether the current network namespace has IPv6 enabled.
func HasIPv6() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

// Runner runs a command with stdin and returns its combined output.
type Runner interface {
	Run(stdin string, name string, args ...string) (string, error)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(stdin string, name string, args ...string) (string, error)

// Run calls f.
func (f RunnerFunc) Run(stdin string, name string, args ...string) (string, error) {
	return f(stdin, name, args...)
}

// Install replaces any rules an earlier Install left with c's.
func Install(r Runner, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	if c.Mode == ModeNFTables {
		if out, err := r.Run(nftScript(c), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("capture: nft: %w: %s", err, strings.TrimSpace(out))
		}
		return nil
	}
	if err := Clean(r, c.Mode, c.IPv6); err != nil {
		return err
	}
	for _, fam := range families(c.IPv6) {
		for _, args := range iptablesRules(c, fam) {
			if out, err := r.Run("", fam.cmd, append([]string{"-w"}, args...)...); err != nil {
				return fmt.Errorf("capture: %s %s: %w: %s", fam.cmd, strings.Join(args, " "), err, strings.TrimSpace(out))
			}
		}
	}
	return nil
}

// Clean removes what Install added; it is not an error if nothing is
// installed.
func Clean(r Runner, mode string, ipv6 bool) error {
	if mode == ModeNFTables {
		// "add" makes the delete succeed when the table is absent.
		if out, err := r.Run("add table inet "+nftTable+"\ndelete table inet "+nftTable+"\n", "nft", "-f", "-"); err != nil {
			return fmt.Errorf("capture: nft: %w: %s", err, strings.TrimSpace(out))
		}
		return nil
	}
	for _, fam := range families(ipv6) {
		for _, j := range jumps {
			// Remove every copy of the jump, however many runs added it.
			for range 100 {
				if _, err := r.Run("", fam.cmd, "-w", "-t", "nat", "-D", j.from, "-p", "tcp", "-j", j.to); err != nil {
					break
				}
			}
			_, _ = r.Run("", fam.cmd, "-w", "-t", "nat", "-F", j.to)
			_, _ = r.Run("", fam.cmd, "-w", "-t", "nat", "-X", j.to)
		}
	}
	return nil
}
