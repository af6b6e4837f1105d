package capture

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// recorder is a Runner that records commands and fails those fail picks.
type recorder struct {
	cmds []string
	fail func(cmd string) bool
}

func (r *recorder) Run(stdin, name string, args ...string) (string, error) {
	cmd := name + " " + strings.Join(args, " ")
	if stdin != "" {
		cmd += " <<\n" + stdin
	}
	r.cmds = append(r.cmds, cmd)
	if r.fail != nil && r.fail(cmd) {
		return "", errors.New("exit status 1")
	}
	return "", nil
}

func TestIPTablesRules(t *testing.T) {
	c := Config{
		ProxyUID: 1337, ExcludeOutboundPorts: []uint16{5432}, ExcludeInboundPorts: []uint16{22},
		ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("fd00::/8")},
		IPv6:                 true,
	}
	r := &recorder{fail: func(cmd string) bool { return strings.Contains(cmd, " -D ") }}
	if err := Install(r, c); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(r.cmds, "\n")
	for _, want := range []string{
		"iptables -w -t nat -A TRELLIS_INBOUND -p tcp --dport 15008 -j RETURN",
		"iptables -w -t nat -A TRELLIS_INBOUND -p tcp --dport 22 -j RETURN",
		"iptables -w -t nat -A TRELLIS_INBOUND -p tcp -j REDIRECT --to-ports 15006",
		"iptables -w -t nat -A TRELLIS_OUTPUT -m owner --uid-owner 1337 -j RETURN",
		"iptables -w -t nat -A TRELLIS_OUTPUT -d 10.1.0.0/16 -j RETURN",
		"iptables -w -t nat -A TRELLIS_OUTPUT -p tcp --dport 5432 -j RETURN",
		"iptables -w -t nat -A TRELLIS_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
		"iptables -w -t nat -A PREROUTING -p tcp -j TRELLIS_INBOUND",
		"iptables -w -t nat -A OUTPUT -p tcp -j TRELLIS_OUTPUT",
		"ip6tables -w -t nat -A TRELLIS_OUTPUT -d fd00::/8 -j RETURN",
		"ip6tables -w -t nat -A TRELLIS_OUTPUT -d ::1/128 -j RETURN",
	} {
		if !strings.Contains(all, want+"\n") {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	if strings.Contains(all, "iptables -w -t nat -A TRELLIS_OUTPUT -d fd00::/8") {
		t.Error("an IPv6 CIDR went to iptables")
	}
	// Install cleans first: the old jumps are removed before the new
	// chains are created.
	if !strings.HasPrefix(r.cmds[0], "iptables -w -t nat -D PREROUTING") {
		t.Errorf("first command %q; want the clean-up", r.cmds[0])
	}
}

func TestNFTScript(t *testing.T) {
	c := Config{ProxyUID: -1, ProxyMark: 0x539, InboundPorts: []uint16{8080, 9090},
		ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}.withDefaults()
	s := nftScript(c)
	for _, want := range []string{
		"add table inet trellis\ndelete table inet trellis\n",
		"tcp dport { 15000, 15008, 15020, 15021 } return",
		"tcp dport { 8080, 9090 } redirect to :15006",
		"meta mark 0x539 return",
		"ip6 daddr fd00::/8 return",
		"meta l4proto tcp redirect to :15001",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	if strings.Contains(s, "skuid") {
		t.Errorf("uid rule without a uid:\n%s", s)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{ProxyUID: -1}).Validate(); !errors.Is(err, ErrNoExemption) {
		t.Errorf("no exemption: %v", err)
	}
	if err := (Config{Mode: "pf", ProxyUID: 0}).Validate(); err == nil {
		t.Error("mode pf accepted")
	}
}

// netnsRunner runs commands in a network namespace.
func netnsRunner(ns string) Runner {
	return RunnerFunc(func(stdin, name string, args ...string) (string, error) {
		return ExecRunner.Run(stdin, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	})
}

// newNetns creates an empty network namespace, deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	ns := fmt.Sprintf("trellis-cap-%d-%d", os.Getpid(), rand.IntN(1<<30))
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// TestInstallClean installs the rules in a fresh namespace twice
// (idempotent), then cleans them, with both backends, and checks that
// nothing is left.
func TestInstallClean(t *testing.T) {
	for _, mode := range []string{ModeIPTables, ModeNFTables} {
		t.Run(mode, func(t *testing.T) {
			bin := map[string]string{ModeIPTables: "iptables", ModeNFTables: "nft"}[mode]
			if _, err := exec.LookPath(bin); err != nil {
				t.Skipf("%s is not installed (.ci/run installs it)", bin)
			}
			ns := newNetns(t)
			r := netnsRunner(ns)
			c := Config{Mode: mode, ProxyUID: 1337, ExcludeOutboundPorts: []uint16{22},
				ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, IPv6: mode == ModeIPTables && hasBinary("ip6tables")}
			for range 2 {
				if err := Install(r, c); err != nil {
					t.Fatal(err)
				}
			}
			dump := rulesOf(t, r, mode, c.IPv6)
			if n := strings.Count(dump, "REDIRECT") + strings.Count(dump, "redirect to"); n < 2 {
				t.Fatalf("after install: want the redirects, got\n%s", dump)
			}
			if mode == ModeIPTables && strings.Count(dump, "-A OUTPUT -p tcp -j TRELLIS_OUTPUT") != len(families(c.IPv6)) {
				t.Errorf("installing twice duplicated the jump:\n%s", dump)
			}
			if err := Clean(r, mode, c.IPv6); err != nil {
				t.Fatal(err)
			}
			if dump := rulesOf(t, r, mode, c.IPv6); strings.Contains(strings.ToLower(dump), "trellis") {
				t.Errorf("after clean, rules are left:\n%s", dump)
			}
			// Cleaning what is not there succeeds.
			if err := Clean(r, mode, c.IPv6); err != nil {
				t.Errorf("second clean: %v", err)
			}
		})
	}
}

func hasBinary(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

func rulesOf(t *testing.T, r Runner, mode string, ipv6 bool) string {
	t.Helper()
	if mode == ModeNFTables {
		out, err := r.Run("", "nft", "list", "ruleset")
		if err != nil {
			t.Fatalf("nft list ruleset: %v: %s", err, out)
		}
		return out
	}
	var all string
	for _, fam := range families(ipv6) {
		out, err := r.Run("", fam.cmd+"-save", "-t", "nat")
		if err != nil {
			t.Fatalf("%s-save: %v: %s", fam.cmd, err, out)
		}
		all += out
	}
	return all
}
