package proxy

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/rbac"
)

// The RBAC filters: envoy.extensions.filters.http.rbac.v3.RBAC before the
// router, envoy.extensions.filters.network.rbac.v3.RBAC before a chain's
// terminal filter. Denials and audited requests are logged with the
// caller's identity from the TLS handshake (never from a header), the
// destination, the policy and the decision, and counted (AccessStats).

func init() {
	registerHTTPFilter(&httprbacv3.RBAC{}, compileHTTPRBAC)
	registerConnFilter(&netrbacv3.RBAC{}, compileNetworkRBAC)
}

// Log keys of access decisions.
const (
	logDecision    = "decision"
	logPolicy      = "policy"
	logSource      = "source"
	logDestination = "destination"
	logFilter      = "filter"
	logListener    = "listener"
	logMethod      = "method"
	logPath        = "path"
	logRemote      = "remote"
)

// Decisions, as logged.
const (
	decisionDeny  = "deny"
	decisionAudit = "audit"
)

// AccessStats counts access decisions since the proxy started.
type AccessStats struct {
	// Denied counts requests and connections an RBAC filter refused.
	Denied uint64
	// Audited counts requests and connections a LOG policy matched.
	Audited uint64
}

// accessCounters is the counter hook of the RBAC filters.
type accessCounters struct {
	denied, audited atomic.Uint64
}

// AccessStats returns the access decisions counted so far.
func (p *Proxy) AccessStats() AccessStats {
	return AccessStats{Denied: p.access.denied.Load(), Audited: p.access.audited.Load()}
}

// rbacFilter is a compiled HTTP or network RBAC filter. A nil engine (no
// rules) enforces nothing, as in Envoy.
type rbacFilter struct {
	name   string
	engine *rbac.Engine
}

func compileHTTPRBAC(name string, c *httprbacv3.RBAC) (httpFilter, error) {
	if err := unsupported(c, "rules"); err != nil {
		return nil, err
	}
	if err := noUnknownFields(c); err != nil {
		return nil, err
	}
	f, err := compileRBAC(name, c.GetRules())
	if err != nil {
		return nil, err
	}
	return f, nil
}

func compileNetworkRBAC(name string, c *netrbacv3.RBAC) (connFilter, error) {
	if err := unsupported(c, "rules", "stat_prefix", "enforcement_type"); err != nil {
		return nil, err
	}
	if err := noUnknownFields(c); err != nil {
		return nil, err
	}
	if err := c.ValidateAll(); err != nil {
		return nil, err
	}
	// ONE_TIME_ON_FIRST_BYTE, the default: the connection is judged once.
	// This proxy judges it right after the handshake, before reading the
	// first byte or connecting upstream: nothing it needs comes later.
	if c.GetEnforcementType() != netrbacv3.RBAC_ONE_TIME_ON_FIRST_BYTE {
		return nil, fmt.Errorf("enforcement_type %s is not supported", c.GetEnforcementType())
	}
	f, err := compileRBAC(name, c.GetRules())
	if err != nil {
		return nil, err
	}
	return f, nil
}

// noUnknownFields refuses fields newer than the compiled-in protos.
func noUnknownFields(m proto.Message) error {
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return fmt.Errorf("%s: fields unknown to this proxy (newer API than the proxy's?)", m.ProtoReflect().Descriptor().Name())
	}
	return nil
}

func compileRBAC(name string, rules *rbacconfigv3.RBAC) (*rbacFilter, error) {
	f := &rbacFilter{name: name}
	if rules == nil {
		return f, nil
	}
	e, err := rbac.Compile("rules", rules)
	if err != nil {
		return nil, err
	}
	f.engine = e
	return f, nil
}

// accessInfo is what a decision is logged with.
type accessInfo struct {
	l      *listener
	chain  *filterChain
	peer   *x509.Certificate
	remote string
	// method and path are empty for a connection.
	method, path string
}

func (f *rbacFilter) decodeHeaders(s *httpStream) bool {
	if f.engine == nil {
		return true
	}
	r := s.r
	req := &rbac.Request{TLS: r.TLS != nil, HTTP: r}
	if r.TLS != nil {
		req.Peer = peerOf(r.TLS.PeerCertificates)
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		req.DestinationPort = portOf(a)
	}
	d := f.engine.Evaluate(req)
	f.record(s.p, d, accessInfo{l: s.l, chain: s.chain, peer: req.Peer, remote: r.RemoteAddr, method: r.Method, path: r.URL.EscapedPath()})
	if d.Allowed {
		return true
	}
	s.setFlag(flagDeniedRBAC)
	// Envoy's answer, word for word.
	s.w.Header().Set("Content-Type", "text/plain")
	s.w.Header().Set("X-Trellis-Local-Reply", "true")
	s.w.WriteHeader(http.StatusForbidden)
	io.WriteString(s.w, "RBAC: access denied")
	return false
}

func (f *rbacFilter) onNewConnection(s *connStream) bool {
	if f.engine == nil {
		return true
	}
	req := &rbac.Request{TLS: s.conn.tls != nil, DestinationPort: portOf(s.conn.local)}
	if s.conn.tls != nil {
		req.Peer = peerOf(s.conn.tls.PeerCertificates)
	}
	a := accessInfo{l: s.l, chain: s.chain, peer: req.Peer}
	if s.conn.remote != nil {
		a.remote = s.conn.remote.String()
	}
	d := f.engine.Evaluate(req)
	f.record(s.p, d, a)
	return d.Allowed
}

// record logs and counts a denial, or a LOG policy that matched; other
// decisions are neither.
func (f *rbacFilter) record(p *Proxy, d rbac.Decision, a accessInfo) {
	var decision string
	switch {
	case !d.Allowed:
		decision = decisionDeny
		p.access.denied.Add(1)
	case f.engine.Action() == rbac.Log && d.Policy != "":
		decision = decisionAudit
		p.access.audited.Add(1)
	default:
		return
	}
	attrs := []any{
		logDecision, decision,
		logPolicy, d.Policy,
		logSource, sourceOf(a.peer),
		logDestination, a.chain.name,
		logListener, a.l.name,
		logFilter, f.name,
		logRemote, a.remote,
	}
	if a.method != "" {
		attrs = append(attrs, logMethod, a.method, logPath, a.path)
	}
	p.log.Info("access "+decision, attrs...)
}

// sourceOf names the caller: the URI SAN of its certificate (its SPIFFE
// ID), "" without a certificate.
func sourceOf(c *x509.Certificate) string {
	if c == nil || len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

// peerOf returns the verified leaf certificate of a handshake's peer.
func peerOf(certs []*x509.Certificate) *x509.Certificate {
	if len(certs) == 0 {
		return nil
	}
	return certs[0]
}

func portOf(a net.Addr) uint32 {
	if t, ok := a.(*net.TCPAddr); ok {
		return uint32(t.Port)
	}
	return 0
}
