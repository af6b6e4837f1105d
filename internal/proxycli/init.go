package proxycli

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/capture"
	"trellis.dev/trellis/internal/usage"
)

// initCommand is `trellis-proxy init`: transparent capture rules in the
// workload's network namespace.
func initCommand(stdout io.Writer, run capture.Runner) *cobra.Command {
	var (
		clean                                           bool
		mode, ipv6                                      string
		proxyUID                                        int
		proxyMark                                       uint32
		outboundPort, inboundPort                       uint16
		excludeOut, excludeIn, inboundPorts, excludeNet []string
	)
	c := &cobra.Command{
		Use:   "init",
		Short: "Install (or with --clean remove) the transparent capture rules",
		Long: `init installs iptables or nftables rules in the current network namespace
(run it in the workload's, as root): outbound TCP is redirected to the
proxy's outbound capture port (15001), except the proxy's own traffic (by
--proxy-uid or --proxy-mark), loopback and the excluded ports and CIDRs;
inbound TCP is redirected to the inbound capture port (15006), except the
proxy's own ports (15000, 15008, 15020, 15021) and the excluded ones.
Running it again replaces the rules; --clean removes them.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v6 := capture.HasIPv6()
			switch ipv6 {
			case "auto":
			case "true":
				v6 = true
			case "false":
				v6 = false
			default:
				return usage.Errorf("--ipv6 %q: want auto, true or false", ipv6)
			}
			if clean {
				if err := capture.Clean(run, mode, v6); err != nil {
					return err
				}
				_, err := fmt.Fprintln(stdout, "capture rules removed")
				return err
			}
			cfg := capture.Config{
				Mode: mode, ProxyUID: proxyUID, ProxyMark: proxyMark,
				OutboundPort: outboundPort, InboundPort: inboundPort, IPv6: v6,
			}
			var err error
			if cfg.ExcludeOutboundPorts, err = parsePorts("--exclude-outbound-ports", excludeOut); err != nil {
				return err
			}
			if cfg.ExcludeInboundPorts, err = parsePorts("--exclude-inbound-ports", excludeIn); err != nil {
				return err
			}
			if cfg.InboundPorts, err = parsePorts("--inbound-ports", inboundPorts); err != nil {
				return err
			}
			for _, s := range excludeNet {
				p, err := netip.ParsePrefix(strings.TrimSpace(s))
				if err != nil {
					if a, aerr := netip.ParseAddr(strings.TrimSpace(s)); aerr == nil {
						p = netip.PrefixFrom(a, a.BitLen())
					} else {
						return usage.Errorf("--exclude-outbound-cidrs %q: %v", s, err)
					}
				}
				cfg.ExcludeOutboundCIDRs = append(cfg.ExcludeOutboundCIDRs, p)
			}
			if err := cfg.Validate(); err != nil {
				return usage.Wrap(err)
			}
			if err := capture.Install(run, cfg); err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "capture rules installed (%s, IPv6 %t)\n", mode, v6)
			return err
		},
	}
	fl := c.Flags()
	fl.BoolVar(&clean, "clean", false, "remove the rules init installed, and nothing else")
	fl.StringVar(&mode, "mode", capture.ModeIPTables, "rule backend: iptables or nftables")
	fl.StringVar(&ipv6, "ipv6", "auto", "also capture IPv6: auto (when the namespace has IPv6), true or false")
	fl.IntVar(&proxyUID, "proxy-uid", -1, "uid the proxy runs as; its traffic is not captured")
	fl.Uint32Var(&proxyMark, "proxy-mark", 0, "socket mark of the proxy's upstream connections (trellis-proxy --socket-mark); marked traffic is not captured")
	fl.Uint16Var(&outboundPort, "outbound-port", capture.DefaultOutboundPort, "the proxy's outbound capture port")
	fl.Uint16Var(&inboundPort, "inbound-port", capture.DefaultInboundPort, "the proxy's inbound capture port")
	fl.StringSliceVar(&excludeOut, "exclude-outbound-ports", nil, "destination ports not captured (comma-separated)")
	fl.StringSliceVar(&excludeIn, "exclude-inbound-ports", nil, "inbound ports not captured besides the proxy's own (comma-separated)")
	fl.StringSliceVar(&inboundPorts, "inbound-ports", nil, "capture only these inbound ports (default: all)")
	fl.StringSliceVar(&excludeNet, "exclude-outbound-cidrs", nil, "destination CIDRs not captured (comma-separated)")
	return c
}

func parsePorts(flag string, list []string) ([]uint16, error) {
	var out []uint16
	for _, s := range list {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil || n == 0 {
			return nil, usage.Errorf("%s %q: want port numbers from 1 to 65535", flag, s)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}
