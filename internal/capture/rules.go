package capture

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Chain and table names: Clean removes exactly these.
const (
	ChainInbound  = "TRELLIS_INBOUND"
	ChainOutbound = "TRELLIS_OUTPUT"
	nftTable      = "trellis"
)

// jumps are the hooks into the built-in chains.
var jumps = []struct{ from, to string }{
	{"PREROUTING", ChainInbound},
	{"OUTPUT", ChainOutbound},
}

// family is one IP version of the iptables backend.
type family struct {
	cmd      string
	loopback string
	v6       bool
}

func families(ipv6 bool) []family {
	fams := []family{{cmd: "iptables", loopback: "127.0.0.0/8"}}
	if ipv6 {
		fams = append(fams, family{cmd: "ip6tables", loopback: "::1/128", v6: true})
	}
	return fams
}

func port(p uint16) string { return strconv.FormatUint(uint64(p), 10) }

func inboundExcluded(c Config) []uint16 {
	return append(append([]uint16{}, DefaultExcludeInboundPorts...), c.ExcludeInboundPorts...)
}

// iptablesRules are the iptables arguments (after -w) that install c for
// one family, in order.
func iptablesRules(c Config, fam family) [][]string {
	nat := func(args ...string) []string { return append([]string{"-t", "nat"}, args...) }
	var rules [][]string
	rules = append(rules, nat("-N", ChainInbound), nat("-N", ChainOutbound))

	// Inbound.
	for _, p := range inboundExcluded(c) {
		rules = append(rules, nat("-A", ChainInbound, "-p", "tcp", "--dport", port(p), "-j", "RETURN"))
	}
	to := []string{"-j", "REDIRECT", "--to-ports", port(c.InboundPort)}
	if len(c.InboundPorts) == 0 {
		rules = append(rules, nat(append([]string{"-A", ChainInbound, "-p", "tcp"}, to...)...))
	}
	for _, p := range c.InboundPorts {
		rules = append(rules, nat(append([]string{"-A", ChainInbound, "-p", "tcp", "--dport", port(p)}, to...)...))
	}

	// Outbound.
	if c.ProxyUID >= 0 {
		rules = append(rules, nat("-A", ChainOutbound, "-m", "owner", "--uid-owner", strconv.Itoa(c.ProxyUID), "-j", "RETURN"))
	}
	if c.ProxyMark != 0 {
		rules = append(rules, nat("-A", ChainOutbound, "-m", "mark", "--mark", fmt.Sprintf("%#x", c.ProxyMark), "-j", "RETURN"))
	}
	rules = append(rules, nat("-A", ChainOutbound, "-o", "lo", "-j", "RETURN"))
	rules = append(rules, nat("-A", ChainOutbound, "-d", fam.loopback, "-j", "RETURN"))
	for _, cidr := range c.ExcludeOutboundCIDRs {
		if cidr.Addr().Is6() != fam.v6 {
			continue
		}
		rules = append(rules, nat("-A", ChainOutbound, "-d", cidr.Masked().String(), "-j", "RETURN"))
	}
	for _, p := range c.ExcludeOutboundPorts {
		rules = append(rules, nat("-A", ChainOutbound, "-p", "tcp", "--dport", port(p), "-j", "RETURN"))
	}
	rules = append(rules, nat("-A", ChainOutbound, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(c.OutboundPort)))

	for _, j := range jumps {
		rules = append(rules, nat("-A", j.from, "-p", "tcp", "-j", j.to))
	}
	return rules
}

func portSet(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = port(p)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// nftScript replaces the trellis table with c's rules in one transaction.
func nftScript(c Config) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// Adding first makes the delete succeed on a first install.
	w("add table inet %s", nftTable)
	w("delete table inet %s", nftTable)
	w("table inet %s {", nftTable)
	w("\tchain inbound {")
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	w("\t\ttcp dport %s return", portSet(inboundExcluded(c)))
	if len(c.InboundPorts) == 0 {
		w("\t\tmeta l4proto tcp redirect to :%d", c.InboundPort)
	} else {
		w("\t\ttcp dport %s redirect to :%d", portSet(c.InboundPorts), c.InboundPort)
	}
	w("\t}")
	w("\tchain output {")
	w("\t\ttype nat hook output priority -100; policy accept;")
	if c.ProxyUID >= 0 {
		w("\t\tmeta skuid %d return", c.ProxyUID)
	}
	if c.ProxyMark != 0 {
		w("\t\tmeta mark %#x return", c.ProxyMark)
	}
	w("\t\toifname \"lo\" return")
	w("\t\tip daddr 127.0.0.0/8 return")
	w("\t\tip6 daddr ::1 return")
	for _, cidr := range c.ExcludeOutboundCIDRs {
		if cidr.Addr().Is6() {
			w("\t\tip6 daddr %s return", cidr.Masked())
		} else {
			w("\t\tip daddr %s return", cidr.Masked())
		}
	}
	if len(c.ExcludeOutboundPorts) > 0 {
		w("\t\ttcp dport %s return", portSet(c.ExcludeOutboundPorts))
	}
	w("\t\tmeta l4proto tcp redirect to :%d", c.OutboundPort)
	w("\t}")
	w("}")
	return b.String()
}

// ExecRunner runs the binaries found on PATH.
var ExecRunner Runner = RunnerFunc(func(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
})
