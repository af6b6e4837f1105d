package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/logtest"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/translate"
)

// The access tests run a sidecar with a real certificate, configured by
// the translator from AccessPolicies, and call it over real mTLS with
// certificates of several identities.

// testMeshCA issues SPIFFE certificates.
type testMeshCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestMeshCA(t testing.TB) *testMeshCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mesh root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "cluster.local"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testMeshCA{key: key, cert: cert}
}

var serial atomic.Int64

func (ca *testMeshCA) sign(t testing.TB, pub any, id string) []byte {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + 1),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// client returns a client certificate for SPIFFE ID id.
func (ca *testMeshCA) client(t testing.TB, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{ca.sign(t, &key.PublicKey, id)}, PrivateKey: key}
}

func (ca *testMeshCA) issuer(t testing.TB) secrets.Issuer {
	return secrets.IssuerFunc(func(_ context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
		block, _ := pem.Decode(csrPEM)
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		return [][]byte{ca.sign(t, csr.PublicKey, csr.URIs[0].String())}, []*x509.Certificate{ca.cert}, nil
	})
}

// logRecords returns the JSON log records logged to b so far.
func logRecords(t testing.TB, b *logtest.Buffer) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// startSidecar returns a proxy for spiffe://cluster.local/ns/shop/sa/cart
// holding a certificate from ca; it is never connected to a control
// plane.
func startSidecar(t *testing.T, ca *testMeshCA, logs io.Writer) *Proxy {
	t.Helper()
	p, err := New(Options{
		ControlPlane: "127.0.0.1:1", TrustBundle: []*x509.Certificate{ca.cert}, NodeID: "cart-1.shop",
		Registration: nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: "cart-1", Namespace: "shop", ServiceAccount: "cart", Address: "127.0.0.1"},
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
		DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.secrets.Renew(context.Background(), ca.issuer(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.shutdown(nil) })
	return p
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

func portOfURL(t testing.TB, addr string) uint32 {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return uint32(n)
}

// cartMesh is namespace shop with Service cart (HTTP port 80 to app port
// httpPort, TCP port 5432 to app port tcpPort) and its workload cart-1,
// whose sidecar listens on meshPort.
func cartMesh(httpPort, tcpPort, meshPort uint32, policies ...*model.AccessPolicy) (*model.Config, *model.Proxy) {
	w := &model.Workload{
		Key: model.Key{Namespace: "shop", Name: "cart-1"}, Address: "127.0.0.1", ServiceAccount: "cart",
		Labels: map[string]string{"app": "cart"}, MeshPort: meshPort,
	}
	c := &model.Config{
		Services: []*model.Service{{Key: model.Key{Namespace: "shop", Name: "cart"}, Selector: map[string]string{"app": "cart"},
			Ports: []model.ServicePort{
				{Name: "http", Port: 80, TargetPort: httpPort, Protocol: model.ProtocolHTTP},
				{Name: "db", Port: 5432, TargetPort: tcpPort, Protocol: model.ProtocolTCP},
			}}},
		Workloads:      []*model.Workload{w},
		AccessPolicies: policies,
	}
	c.Sort()
	return c, &model.Proxy{ID: "cart-1.shop", Kind: model.KindSidecar, Workload: *w, AppAddress: "127.0.0.1"}
}

// applyTranslated translates the sidecar's config and applies it.
func applyTranslated(t *testing.T, p *Proxy, c *model.Config, mp *model.Proxy) {
	t.Helper()
	res, problems := translate.Translate(translate.Input{Config: c, Index: model.NewIndex(c), Proxy: mp}, translate.Options{})
	if len(problems) > 0 {
		t.Fatalf("translation problems: %v", problems)
	}
	clusters := map[string]proto.Message{}
	for _, cl := range res.Clusters {
		clusters[cl.Name] = cl
	}
	listeners := map[string]proto.Message{}
	for _, l := range res.Listeners {
		listeners[l.Name] = l
	}
	if err := p.Apply(xdsclient.ClusterType, clusters); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(xdsclient.ListenerType, listeners); err != nil {
		t.Fatal(err)
	}
}

// meshConn opens an mTLS connection to the sidecar as identity id, for
// the service port named by sni.
func meshConn(t *testing.T, ca *testMeshCA, meshPort uint32, sni, id string) *tls.Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", meshPort), &tls.Config{
		ServerName:         sni,
		Certificates:       []tls.Certificate{ca.client(t, id)},
		InsecureSkipVerify: true, // SPIFFE IDs are not host names; the test trusts its own proxy
		MinVersion:         tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// rawRequest sends a request line and headers exactly as given, so that
// paths reach the proxy unaltered.
func rawRequest(t *testing.T, conn *tls.Conn, method, target string, headers ...string) (int, string) {
	t.Helper()
	req := method + " " + target + " HTTP/1.1\r\nHost: cart\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

const (
	webID     = "spiffe://cluster.local/ns/web/sa/frontend"
	webbyID   = "spiffe://cluster.local/ns/webby/sa/frontend"
	opsID     = "spiffe://cluster.local/ns/ops/sa/deployer"
	blockedID = "spiffe://cluster.local/ns/blocked/sa/x"
)

var cartSNI = translate.SNI(80, "cart.shop.svc.cluster.local")

func TestAccessPolicyHTTP(t *testing.T) {
	ca := newTestMeshCA(t)
	var logs logtest.Buffer
	p := startSidecar(t, ca, &logs)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s xfcc=%s", r.URL.EscapedPath(), r.Header.Get("X-Forwarded-Client-Cert"))
	}))
	defer backend.Close()
	httpPort, meshPort := portOfURL(t, backend.URL), freePort(t)
	c, mp := cartMesh(httpPort, freePort(t), meshPort,
		&model.AccessPolicy{
			Key: model.Key{Namespace: "shop", Name: "cart-callers"}, Action: model.AccessAllow,
			Targets: []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "cart"}},
			Rules: []model.AccessRule{
				{From: []model.AccessSource{{Namespaces: []string{"web"}}},
					To: []model.AccessTarget{{Methods: []string{"GET"}, Paths: []string{"/items/*", "/public"}}}},
				{From: []model.AccessSource{{Identities: []string{"spiffe://cluster.local/ns/ops/sa/*"}}}},
			},
		},
		&model.AccessPolicy{
			Key: model.Key{Namespace: "shop", Name: "no-admin"}, Action: model.AccessDeny,
			Rules: []model.AccessRule{{To: []model.AccessTarget{{Paths: []string{"/admin", "/internal/*"}}}}},
		},
		&model.AccessPolicy{
			Key: model.Key{Namespace: "shop", Name: "writes"}, Action: model.AccessAudit,
			Rules: []model.AccessRule{{To: []model.AccessTarget{{Methods: []string{"POST", "DELETE"}}}}},
		},
	)
	applyTranslated(t, p, c, mp)

	do := func(id, method, target string, headers ...string) (int, string) {
		t.Helper()
		conn := meshConn(t, ca, meshPort, cartSNI, id)
		defer conn.Close()
		return rawRequest(t, conn, method, target, headers...)
	}
	for _, tc := range []struct {
		id, method, target string
		want               int
		wantPath           string // the path the app saw, when allowed
	}{
		{webID, "GET", "/items/42", 200, "/items/42"},
		{webID, "GET", "/public", 200, "/public"},
		{webID, "GET", "/public/", 200, "/public/"},
		{webID, "POST", "/items/42", 403, ""},
		{webID, "GET", "/private", 403, ""},
		{webID, "GET", "/items", 403, ""},
		// A namespace is matched whole: "webby" is not "web".
		{webbyID, "GET", "/items/42", 403, ""},
		{blockedID, "GET", "/items/42", 403, ""},
		// ALLOW paths cannot be escaped with dot segments.
		{webID, "GET", "/items/../private", 403, ""},
		{webID, "GET", "/items/%2e%2e/private", 403, ""},
		{webID, "GET", "/items/..%2fprivate", 400, ""},
		{webID, "GET", "/items/..;/private", 403, ""},
		{opsID, "DELETE", "/anything", 200, "/anything"},
		{opsID, "GET", "/admin", 403, ""},
		// The known ways around a DENY on /admin.
		{opsID, "GET", "/a/../admin", 403, ""},
		{opsID, "GET", "/admin/.", 403, ""},
		{opsID, "GET", "//admin", 403, ""},
		{opsID, "GET", "/%61dmin", 403, ""},
		{opsID, "GET", "/admin%2F", 400, ""},
		{opsID, "GET", "/admin%2fx", 400, ""},
		{opsID, "GET", "/admin%5Cx", 400, ""},
		{opsID, "GET", "/admin;x", 403, ""},
		{opsID, "GET", "/admin?x", 403, ""},
		{opsID, "GET", "/admin#x", 400, ""},
		{opsID, "GET", "/x/%2e%2e/admin", 403, ""},
		{opsID, "GET", "/x/%2E%2E/admin", 403, ""},
		{opsID, "GET", "/x/.%2e/admin", 403, ""},
		{opsID, "GET", "/x\\..\\admin", 403, ""},
		{opsID, "GET", "/internal/x", 403, ""},
		{opsID, "GET", "/internal//x", 403, ""},
		// Paths are case-sensitive, by design: /ADMIN is another path.
		{opsID, "GET", "/ADMIN", 200, "/ADMIN"},
		// What the app sees is the normalized path the policy saw.
		{opsID, "GET", "/a/./b//c/../d", 200, "/a/b/d"},
		{opsID, "GET", "/admins", 200, "/admins"},
		// An absolute URI is normalized too.
		{opsID, "GET", "http://cart/a/../admin", 403, ""},
		// Methods are case-sensitive; "delete" is refused rather than
		// left to escape the audit of DELETE.
		{opsID, "delete", "/anything", 400, ""},
	} {
		code, body := do(tc.id, tc.method, tc.target)
		if code != tc.want {
			t.Errorf("%s %s %s: %d %q, want %d", tc.id, tc.method, tc.target, code, body, tc.want)
			continue
		}
		switch {
		case code == 403 && body != "RBAC: access denied":
			t.Errorf("%s %s %s: denial body %q, want Envoy's", tc.id, tc.method, tc.target, body)
		case code == 200 && !strings.HasPrefix(body, "path="+tc.wantPath+" "):
			t.Errorf("%s %s %s: the app saw %q, want path %s", tc.id, tc.method, tc.target, body, tc.wantPath)
		}
	}

	t.Run("identity comes from the handshake, not from headers", func(t *testing.T) {
		forged := "x-forwarded-client-cert: By=spiffe://cluster.local/ns/shop/sa/cart;URI=" + opsID
		if code, body := do(webID, "DELETE", "/anything", forged); code != 403 {
			t.Fatalf("web claiming to be ops in x-forwarded-client-cert: %d %q, want 403", code, body)
		}
		code, body := do(webID, "GET", "/items/1", forged)
		if code != 200 || !strings.Contains(body, "URI="+webID) || strings.Contains(body, opsID) {
			t.Fatalf("the app got %q; want x-forwarded-client-cert naming only the real caller %s", body, webID)
		}
	})

	t.Run("denials and audits are logged", func(t *testing.T) {
		do(opsID, "POST", "/orders")
		do(webID, "GET", "/private")
		do(opsID, "GET", "/admin")
		var audit, denyAllow, denyDeny map[string]any
		for _, r := range logRecords(t, &logs) {
			switch {
			case r[logDecision] == decisionAudit && r[logPath] == "/orders":
				audit = r
			case r[logDecision] == decisionDeny && r[logPath] == "/private" && r[logSource] == webID:
				denyAllow = r
			case r[logDecision] == decisionDeny && r[logPath] == "/admin" && r[logSource] == opsID:
				denyDeny = r
			}
		}
		if audit == nil || audit[logPolicy] != "shop/writes/rules[0]" || audit[logSource] != opsID || audit[logDestination] != cartSNI || audit[logFilter] != translate.AccessFilterAudit {
			t.Errorf("audit record %v", audit)
		}
		if denyAllow == nil || denyAllow[logPolicy] != "" || denyAllow[logFilter] != translate.AccessFilterAllow || denyAllow[logMethod] != "GET" {
			t.Errorf("denial by ALLOW record %v", denyAllow)
		}
		if denyDeny == nil || denyDeny[logPolicy] != "shop/no-admin/rules[0]" || denyDeny[logFilter] != translate.AccessFilterDeny {
			t.Errorf("denial by DENY record %v", denyDeny)
		}
		if st := p.AccessStats(); st.Denied == 0 || st.Audited == 0 {
			t.Errorf("AccessStats %+v, want denials and audits counted", st)
		}
	})
}

// tcpBackend accepts connections and echoes, counting the connections it
// got and the bytes it read.
type tcpBackend struct {
	ln          net.Listener
	conns, read atomic.Int64
}

func startTCPBackend(t *testing.T) *tcpBackend {
	b := &tcpBackend{}
	b.ln = serveTCP(t, func(c net.Conn) {
		b.conns.Add(1)
		defer c.Close()
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			b.read.Add(int64(n))
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	return b
}

func TestAccessPolicyTCP(t *testing.T) {
	ca := newTestMeshCA(t)
	var logs logtest.Buffer
	p := startSidecar(t, ca, &logs)
	backend := startTCPBackend(t)
	tcpPort, meshPort := uint32(backend.ln.Addr().(*net.TCPAddr).Port), freePort(t)
	c, mp := cartMesh(freePort(t), tcpPort, meshPort,
		&model.AccessPolicy{
			Key: model.Key{Namespace: "shop", Name: "db-callers"}, Action: model.AccessAllow,
			Rules: []model.AccessRule{
				// HTTP-only: never matches a TCP connection.
				{From: []model.AccessSource{{Namespaces: []string{"web"}}}, To: []model.AccessTarget{{Methods: []string{"GET"}}}},
				{From: []model.AccessSource{{Namespaces: []string{"ops", "blocked"}}}, To: []model.AccessTarget{{Ports: []uint32{tcpPort}}}},
			},
		},
		&model.AccessPolicy{
			Key: model.Key{Namespace: "shop", Name: "deny-blocked"}, Action: model.AccessDeny,
			// On TCP the path is left out: the rule denies every
			// connection from the namespace.
			Rules: []model.AccessRule{{From: []model.AccessSource{{Namespaces: []string{"blocked"}}}, To: []model.AccessTarget{{Paths: []string{"/x"}}}}},
		},
	)
	applyTranslated(t, p, c, mp)
	sni := translate.SNI(5432, "cart.shop.svc.cluster.local")

	echo := func(id string) (string, error) {
		conn := meshConn(t, ca, meshPort, sni, id)
		defer conn.Close()
		if _, err := io.WriteString(conn, "hello"); err != nil {
			return "", err
		}
		buf := make([]byte, 5)
		_, err := io.ReadFull(conn, buf)
		return string(buf), err
	}
	if got, err := echo(opsID); err != nil || got != "hello" {
		t.Fatalf("ops: %q, %v; want the echo", got, err)
	}
	conns, read := backend.conns.Load(), backend.read.Load()
	for _, id := range []string{webID, blockedID} {
		if got, err := echo(id); err == nil {
			t.Errorf("%s: echo %q, want the connection closed", id, got)
		}
	}
	if backend.conns.Load() != conns || backend.read.Load() != read {
		t.Errorf("denied connections reached the app: %d connections, %d bytes more", backend.conns.Load()-conns, backend.read.Load()-read)
	}
	var byDeny bool
	for _, r := range logRecords(t, &logs) {
		if r[logDecision] == decisionDeny && r[logSource] == blockedID {
			byDeny = r[logPolicy] == "shop/deny-blocked/rules[0]" && r[logDestination] == sni
		}
	}
	if !byDeny {
		t.Errorf("no log of blocked's denial by shop/deny-blocked/rules[0]:\n%v", logRecords(t, &logs))
	}
}

func TestRBACConfigIsChecked(t *testing.T) {
	p := testProxy(t)
	pack := func(m proto.Message) *anypb.Any { a, _ := anypb.New(m); return a }
	hcmWith := func(filters ...*hcmv3.HttpFilter) *listenerv3.Filter {
		h := &hcmv3.HttpConnectionManager{StatPrefix: "x", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeTo("c")}, HttpFilters: filters}
		return &listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(h)}}
	}
	router := &hcmv3.HttpFilter{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: emptyAny("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router")}}
	rbacFilter := func(m proto.Message) *hcmv3.HttpFilter {
		return &hcmv3.HttpFilter{Name: "rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(m)}}
	}
	listener := func(filters ...*listenerv3.Filter) *listenerv3.Listener {
		return &listenerv3.Listener{Name: "l",
			Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}},
			FilterChains: []*listenerv3.FilterChain{{Filters: filters}}}
	}
	netRBAC := func(m *netrbacv3.RBAC) *listenerv3.Filter {
		return &listenerv3.Filter{Name: "rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(m)}}
	}
	for name, tc := range map[string]struct {
		l    *listenerv3.Listener
		want string
	}{
		"shadow rules": {listener(hcmWith(rbacFilter(&httprbacv3.RBAC{ShadowRules: &rbacconfigv3.RBAC{}}), router)), "not supported by this proxy: shadow_rules"},
		"remote_ip principal": {listener(hcmWith(rbacFilter(&httprbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"p": {
			Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
			Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_RemoteIp{RemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.0"}}}},
		}}}}), router)), `rules.policies["p"].principals[0].remote_ip`},
		"router not last": {listener(hcmWith(router, rbacFilter(&httprbacv3.RBAC{}))), "the router must be the last filter"},
		"no router":       {listener(hcmWith(rbacFilter(&httprbacv3.RBAC{}))), "the router filter is required"},
		"network rbac delay_deny": {listener(netRBAC(&netrbacv3.RBAC{StatPrefix: "x", DelayDeny: nil, ShadowRulesStatPrefix: "y"}), hcmWith(router)),
			"not supported by this proxy: shadow_rules_stat_prefix"},
		"network rbac continuous": {listener(netRBAC(&netrbacv3.RBAC{StatPrefix: "x", EnforcementType: netrbacv3.RBAC_CONTINUOUS}), hcmWith(router)),
			"enforcement_type CONTINUOUS"},
		"network rbac without stat prefix": {listener(netRBAC(&netrbacv3.RBAC{}), hcmWith(router)), "StatPrefix"},
		"hcm as a connection filter":       {listener(hcmWith(router), hcmWith(router)), "is not supported before the last filter"},
		"unknown field":                    {listener(hcmWith(rbacFilter(withUnknownField(&httprbacv3.RBAC{})), router)), "unknown to this proxy"},
		"unescape and forward": {listener(&listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(&hcmv3.HttpConnectionManager{
			StatPrefix: "x", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeTo("c")}, HttpFilters: []*hcmv3.HttpFilter{router},
			PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD,
		})}}), "path_with_escaped_slashes_action UNESCAPE_AND_FORWARD is not supported"},
	} {
		t.Run(name, func(t *testing.T) {
			err := p.Apply(xdsclient.ListenerType, map[string]proto.Message{"l": tc.l})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// mustAny packs an empty message of the named type.
// emptyAny is an Any of typeURL with an empty message.
func emptyAny(typeURL string) *anypb.Any { return &anypb.Any{TypeUrl: typeURL} }

// FuzzCompileAccessListener mutates an inbound listener with RBAC filters,
// as the translator builds it: compiling must refuse or accept, never
// panic.
func FuzzCompileAccessListener(f *testing.F) {
	p := testProxy(f)
	c, mp := cartMesh(8080, 5432, 15008,
		&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "a"}, Action: model.AccessAllow, Rules: []model.AccessRule{{
			From: []model.AccessSource{{Identities: []string{"spiffe://cluster.local/ns/ops/sa/*"}, Namespaces: []string{"ops"}}},
			To:   []model.AccessTarget{{Paths: []string{"/a/*"}, Methods: []string{"GET"}, Headers: []model.ValueMatch{{Type: model.MatchRegularExpression, Name: "x", Value: "y+"}}}},
		}}},
		&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "d"}, Action: model.AccessDeny, Rules: []model.AccessRule{{}}},
	)
	res, _ := translate.Translate(translate.Input{Config: c, Index: model.NewIndex(c), Proxy: mp}, translate.Options{})
	for _, l := range res.Listeners {
		b, _ := proto.Marshal(l)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l listenerv3.Listener
		if proto.Unmarshal(data, &l) == nil {
			_, _ = p.compileListener(&l)
		}
	})
}

func withUnknownField[M proto.Message](m M) M {
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	return m
}
