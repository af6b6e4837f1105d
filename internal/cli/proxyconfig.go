package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/usage"
)

// configTypes maps the names proxy-config accepts to xDS types.
var configTypes = map[string]string{
	"listeners": "LDS", "listener": "LDS", "lds": "LDS",
	"routes": "RDS", "route": "RDS", "rds": "RDS",
	"clusters": "CDS", "cluster": "CDS", "cds": "CDS",
	"endpoints": "EDS", "endpoint": "EDS", "eds": "EDS",
	"secrets": "SDS", "secret": "SDS", "sds": "SDS",
	"all": "",
}

func proxyConfigCommand(g *globals) *cobra.Command {
	var output string
	var acked bool
	c := &cobra.Command{
		Use:   "proxy-config PROXY listeners|routes|clusters|endpoints|secrets|all",
		Short: "Show the config the control plane sent to a proxy, or what the proxy acknowledged",
		Long: `Show one proxy's config of one xDS type as the control plane last sent it (or,
with --acked, as the proxy last acknowledged it: what it serves now), read
from the control plane. Secrets show certificates, never private keys: those
never leave the proxy.`,
		Args: argsBetween(2, 2, "a proxy ID and a type"),
		RunE: func(c *cobra.Command, args []string) error {
			typ, ok := configTypes[strings.ToLower(args[1])]
			if !ok {
				return usage.Errorf("proxy-config: unknown type %q; use listeners, routes, clusters, endpoints, secrets or all", args[1])
			}
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			configs, err := client.ProxyConfig(c.Context(), args[0], typ)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.stdout, configs)
			}
			for i, pc := range configs {
				if i > 0 {
					fmt.Fprintln(g.stdout)
				}
				vc, which := pc.Sent, "sent"
				if acked {
					vc, which = pc.Acked, "acknowledged"
				}
				fmt.Fprintf(g.stdout, "# %s of %s: version %s %s (%s; sent %s, acknowledged %s)\n",
					pc.Type, pc.Proxy, orDash(vc.Version), which, pc.State, orDash(pc.Sent.Version), orDash(pc.Acked.Version))
				if err := printConfig(g.stdout, pc.Type, vc.Resources); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	c.Flags().BoolVar(&acked, "acked", false, "show what the proxy acknowledged instead of what was sent")
	return c
}

// printConfig prints resources of one type as a table.
func printConfig(w io.Writer, typ string, raw []json.RawMessage) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	decode := func(b json.RawMessage, m proto.Message) error {
		return protojson.Unmarshal(b, m)
	}
	switch typ {
	case "LDS":
		fmt.Fprintln(tw, "NAME\tADDRESS\tMATCH\tFILTER")
		for _, b := range raw {
			var l listenerv3.Listener
			if err := decode(b, &l); err != nil {
				return err
			}
			for _, fc := range l.GetFilterChains() {
				match := "all"
				if names := fc.GetFilterChainMatch().GetServerNames(); len(names) > 0 {
					match = "SNI " + strings.Join(names, ",")
				}
				if fc.GetTransportSocket() != nil {
					match += " (mTLS)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.GetName(), address(l.GetAddress()), match, filterSummary(fc))
			}
		}
	case "RDS":
		fmt.Fprintln(tw, "ROUTE CONFIG\tVIRTUAL HOST\tDOMAINS\tMATCH\tACTION")
		for _, b := range raw {
			var rc routev3.RouteConfiguration
			if err := decode(b, &rc); err != nil {
				return err
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), strings.Join(vh.GetDomains(), ","), routeMatch(r.GetMatch()), routeAction(r))
				}
			}
		}
	case "CDS":
		fmt.Fprintln(tw, "NAME\tTYPE\tLB\tTRANSPORT")
		for _, b := range raw {
			var c clusterv3.Cluster
			if err := decode(b, &c); err != nil {
				return err
			}
			transport := "plaintext"
			for _, m := range c.GetTransportSocketMatches() {
				var ctx tlsv3.UpstreamTlsContext
				if m.GetTransportSocket().GetTypedConfig().UnmarshalTo(&ctx) == nil {
					transport = fmt.Sprintf("mTLS to %s endpoints (SNI %s)", m.GetName(), ctx.GetSni())
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetName(), c.GetType(), c.GetLbPolicy(), transport)
		}
	case "EDS":
		fmt.Fprintln(tw, "CLUSTER\tENDPOINT\tHEALTH\tLOCALITY\tTRANSPORT")
		for _, b := range raw {
			var cla endpointv3.ClusterLoadAssignment
			if err := decode(b, &cla); err != nil {
				return err
			}
			if len(cla.GetEndpoints()) == 0 {
				fmt.Fprintf(tw, "%s\t(none)\t\t\t\n", cla.GetClusterName())
			}
			for _, loc := range cla.GetEndpoints() {
				locality := strings.Trim(strings.Join([]string{loc.GetLocality().GetRegion(), loc.GetLocality().GetZone(), loc.GetLocality().GetSubZone()}, "/"), "/")
				for _, ep := range loc.GetLbEndpoints() {
					transport := "plaintext"
					if md := ep.GetMetadata().GetFilterMetadata()["envoy.transport_socket_match"]; md != nil {
						transport = md.GetFields()["tlsMode"].GetStringValue()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cla.GetClusterName(), address(ep.GetEndpoint().GetAddress()), ep.GetHealthStatus(), orDash(locality), transport)
				}
			}
		}
	case "SDS":
		fmt.Fprintln(tw, "NAME\tKIND\tCERTIFICATE\tSERIAL\tNOT AFTER")
		for _, b := range raw {
			var s tlsv3.Secret
			if err := decode(b, &s); err != nil {
				return err
			}
			kind, pemBytes := "", []byte(nil)
			switch {
			case s.GetTlsCertificate() != nil:
				kind, pemBytes = "certificate chain", s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
			case s.GetValidationContext() != nil:
				kind, pemBytes = "trust bundle", s.GetValidationContext().GetTrustedCa().GetInlineBytes()
			}
			for _, cert := range parseCerts(pemBytes) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.GetName(), kind, certName(cert), cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
			}
		}
	}
	return nil
}

func address(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "-"
	}
	return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
}

func filterSummary(fc *listenerv3.FilterChain) string {
	var parts []string
	for _, f := range fc.GetFilters() {
		var hcm hcmv3.HttpConnectionManager
		var tcp tcpproxyv3.TcpProxy
		switch {
		case f.GetTypedConfig().UnmarshalTo(&hcm) == nil:
			if hcm.GetRds() != nil {
				parts = append(parts, "HTTP routes "+hcm.GetRds().GetRouteConfigName())
			} else {
				parts = append(parts, "HTTP inline routes "+hcm.GetRouteConfig().GetName())
			}
		case f.GetTypedConfig().UnmarshalTo(&tcp) == nil:
			parts = append(parts, "TCP to "+tcp.GetCluster())
		default:
			parts = append(parts, f.GetName())
		}
	}
	return strings.Join(parts, "; ")
}

func routeMatch(m *routev3.RouteMatch) string {
	var s string
	switch {
	case m.GetPath() != "":
		s = "path " + m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		s = "prefix " + m.GetPathSeparatedPrefix() + "/"
	case m.GetSafeRegex() != nil:
		s = "regex " + m.GetSafeRegex().GetRegex()
	default:
		s = "prefix " + m.GetPrefix()
	}
	for _, h := range m.GetHeaders() {
		s += fmt.Sprintf(" %s=%s", h.GetName(), h.GetStringMatch().GetExact()+h.GetStringMatch().GetSafeRegex().GetRegex())
	}
	for _, q := range m.GetQueryParameters() {
		s += fmt.Sprintf(" ?%s=%s", q.GetName(), q.GetStringMatch().GetExact()+q.GetStringMatch().GetSafeRegex().GetRegex())
	}
	return s
}

func routeAction(r *routev3.Route) string {
	switch {
	case r.GetDirectResponse() != nil:
		return fmt.Sprintf("respond %d", r.GetDirectResponse().GetStatus())
	case r.GetRedirect() != nil:
		return "redirect"
	case r.GetRoute().GetCluster() != "":
		return r.GetRoute().GetCluster()
	}
	var parts []string
	for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
		parts = append(parts, fmt.Sprintf("%s (%d)", wc.GetName(), wc.GetWeight().GetValue()))
	}
	return strings.Join(parts, ", ")
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func certName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.String()
}
