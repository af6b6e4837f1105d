package xfcc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// Examples from Envoy's documentation of x-forwarded-client-cert, and the
// shape Envoy gives SPIFFE workloads. Format writes each back byte for byte.
var envoyExamples = []struct {
	name   string
	header string
	want   []Element
}{
	{
		name:   "one client certificate with only a URI SAN",
		header: `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
		want: []Element{{
			By:      []string{"http://frontend.lyft.com"},
			Hash:    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
			Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client",
			URI:     []string{"http://testclient.lyft.com"},
		}},
	},
	{
		name:   "two client certificates with only URI SANs",
		header: `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com`,
		want: []Element{
			{
				By:   []string{"http://frontend.lyft.com"},
				Hash: "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
				URI:  []string{"http://testclient.lyft.com"},
			},
			{
				By:   []string{"http://backend.lyft.com"},
				Hash: "9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e",
				URI:  []string{"http://frontend.lyft.com"},
			},
		},
	},
	{
		name:   "one client certificate with URI and DNS SANs",
		header: `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com`,
		want: []Element{{
			By:      []string{"http://frontend.lyft.com"},
			Hash:    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
			Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client",
			URI:     []string{"http://testclient.lyft.com"},
			DNS:     []string{"lyft.com", "www.lyft.com"},
		}},
	},
	{
		name:   "SPIFFE workloads, SANITIZE_SET with uri",
		header: `By=spiffe://cluster.local/ns/demo/sa/catalog;Hash=a9317919875e178ce6d61eaa023490a2091299753ca5cd01d5323e40696d690b;URI=spiffe://cluster.local/ns/demo/sa/web`,
		want: []Element{{
			By:   []string{"spiffe://cluster.local/ns/demo/sa/catalog"},
			Hash: "a9317919875e178ce6d61eaa023490a2091299753ca5cd01d5323e40696d690b",
			URI:  []string{"spiffe://cluster.local/ns/demo/sa/web"},
		}},
	},
	{
		name:   "cert and chain, quoted URL-encoded PEM",
		header: `By=spiffe://td/ns/a/sa/b;Hash=00ff;Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%2Fw%3D%3D%0A-----END%20CERTIFICATE-----%0A";Chain="-----BEGIN%20CERTIFICATE-----%0AMIIB%2Fw%3D%3D%0A-----END%20CERTIFICATE-----%0A";URI=spiffe://td/ns/c/sa/d`,
		want: []Element{{
			By:    []string{"spiffe://td/ns/a/sa/b"},
			Hash:  "00ff",
			Cert:  "-----BEGIN%20CERTIFICATE-----%0AMIIB%2Fw%3D%3D%0A-----END%20CERTIFICATE-----%0A",
			Chain: "-----BEGIN%20CERTIFICATE-----%0AMIIB%2Fw%3D%3D%0A-----END%20CERTIFICATE-----%0A",
			URI:   []string{"spiffe://td/ns/c/sa/d"},
		}},
	},
	{
		name:   "proxy with two URI SANs, client with none",
		header: `By=spiffe://td/ns/a/sa/b;By=https://b.example;Hash=00ff;URI=`,
		want: []Element{{
			By:   []string{"spiffe://td/ns/a/sa/b", "https://b.example"},
			Hash: "00ff",
			URI:  []string{""},
		}},
	},
}

func TestEnvoyExamples(t *testing.T) {
	for _, tc := range envoyExamples {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.header)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse:\n got %#v\nwant %#v", got, tc.want)
			}
			if s := Format(got); s != tc.header {
				t.Errorf("Format:\n got %s\nwant %s", s, tc.header)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   []Element
		format string // Format of the result; "" means the header itself
	}{
		{name: "empty header", header: "", want: nil},
		{name: "whitespace header", header: " \t ", want: nil, format: ""},
		{
			name:   "keys are case-insensitive",
			header: "by=a;HASH=b;uRi=c;dns=d;subject=e",
			want:   []Element{{By: []string{"a"}, Hash: "b", Subject: "e", URI: []string{"c"}, DNS: []string{"d"}}},
			format: `By=a;Hash=b;Subject="e";URI=c;DNS=d`,
		},
		{
			name:   "any key order, Envoy's order when formatted",
			header: `URI=u;DNS=d1;Hash=h;DNS=d2;By=b`,
			want:   []Element{{By: []string{"b"}, Hash: "h", URI: []string{"u"}, DNS: []string{"d1", "d2"}}},
			format: `By=b;Hash=h;URI=u;DNS=d1;DNS=d2`,
		},
		{
			name:   "quoted separators are literal",
			header: `Subject="CN=x,O=y;z";URI="a,b"`,
			want:   []Element{{Subject: "CN=x,O=y;z", URI: []string{"a,b"}}},
		},
		{
			name:   "escaped quote",
			header: `Subject="say \"hi\""`,
			want:   []Element{{Subject: `say "hi"`}},
		},
		{
			name:   "escaped backslash",
			header: `Subject="a\\b"`,
			want:   []Element{{Subject: `a\b`}},
		},
		{
			name:   "other backslashes kept (RFC 2253 subject as Envoy writes it)",
			header: `Subject="CN=a\,b,O=c\+d"`,
			want:   []Element{{Subject: `CN=a\,b,O=c\+d`}},
			format: `Subject="CN=a\\,b,O=c\\+d"`,
		},
		{
			name:   "escaped backslash before closing quote",
			header: `URI="a\\";DNS=b`,
			want:   []Element{{URI: []string{`a\`}, DNS: []string{"b"}}},
			format: `URI=a\;DNS=b`,
		},
		{
			name:   "backslash in a bare value is literal",
			header: `URI=a\b`,
			want:   []Element{{URI: []string{`a\b`}}},
		},
		{
			name:   "'=' in a bare value, as Envoy writes URI SANs",
			header: `URI=spiffe://td/x?a=b`,
			want:   []Element{{URI: []string{"spiffe://td/x?a=b"}}},
			format: `URI="spiffe://td/x?a=b"`,
		},
		{
			name:   "needless quotes dropped",
			header: `By="a";Hash="b"`,
			want:   []Element{{By: []string{"a"}, Hash: "b"}},
			format: `By=a;Hash=b`,
		},
		{
			name:   "empty values",
			header: `By=;Hash=h;Subject="";URI="";DNS=`,
			want:   []Element{{By: []string{""}, Hash: "h", URI: []string{""}, DNS: []string{""}}},
			format: `By=;Hash=h;URI=;DNS=`,
		},
		{
			name:   "whitespace around elements",
			header: " By=a , By=\"b\"\t,\tBy=c ",
			want:   []Element{{By: []string{"a"}}, {By: []string{"b"}}, {By: []string{"c"}}},
			format: "By=a,By=b,By=c",
		},
		{
			name:   "whitespace inside an element is kept",
			header: `URI=a b ;DNS= c`,
			want:   []Element{{URI: []string{"a b "}, DNS: []string{" c"}}},
			format: `URI="a b ";DNS=" c"`,
		},
		{
			name:   "non-ASCII bytes",
			header: "Subject=\"CN=Zoë\";DNS=\xff",
			want:   []Element{{Subject: "CN=Zoë", DNS: []string{"\xff"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.header)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.header, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q):\n got %#v\nwant %#v", tc.header, got, tc.want)
			}
			want := tc.format
			if want == "" && strings.TrimSpace(tc.header) != "" {
				want = tc.header
			}
			s := Format(got)
			if s != want {
				t.Errorf("Format = %s, want %s", s, want)
			}
			again, err := Parse(s)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Parse(Format) = %#v, %v; want %#v", again, err, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		header string
		offset int
		msg    string // substring of the error
	}{
		{`Foo=bar`, 0, `unknown key "Foo"`},
		{`By=a;Bye=b`, 5, `unknown key "Bye"`},
		{`By =a`, 0, `unknown key "By "`},
		{`By=a; Hash=b`, 5, `unknown key " Hash"`},
		{`Subject="abc`, 8, "unterminated quoted value"},
		{`Subject="abc\"`, 8, "unterminated quoted value"},
		{`By=a,,By=b`, 5, "empty element"},
		{`,By=a`, 0, "empty element"},
		{`By=a,`, 5, "empty element after ','"},
		{`By=a, `, 6, "empty element after ','"},
		{`By=a;`, 5, "empty pair at end of header"},
		{`By=a;;Hash=b`, 5, "empty pair"},
		{`By=a;,By=b`, 5, "empty pair"},
		{`By`, 0, `pair "By" has no '='`},
		{`By=a;Hash`, 5, `pair "Hash" has no '='`},
		{`By=a;URI,DNS=b`, 5, `pair "URI" has no '='`},
		{`=a`, 0, "missing key"},
		{`"By"=a`, 0, "quote in key"},
		{`URI=a"b`, 5, "quote inside a bare value"},
		{`Subject="a"b`, 11, `'b' after quoted value`},
		{`Subject="a""b"`, 11, `'"' after quoted value`},
		{`Subject="a" ;By=b`, 11, "whitespace after quoted value"},
		{`Hash=a;Hash=b`, 7, "key Hash appears twice"},
		{`Subject="";subject=""`, 11, "key Subject appears twice"},
		{`Cert="a";Cert="b"`, 9, "key Cert appears twice"},
		{`Chain=a;CHAIN=b`, 8, "key Chain appears twice"},
		{`Hash=`, 0, "element 1 carries no value"},
		{`By=a,Subject=""`, 5, "element 2 carries no value"},
		{"By=a\nb", 4, "control character 0x0a"},
		{"Subject=\"a\x00\"", 10, "control character 0x00"},
		{"B\x7fy=a", 1, "control character 0x7f"},
	}
	for _, tc := range tests {
		got, err := Parse(tc.header)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %#v, %v; want a *SyntaxError", tc.header, got, err)
			continue
		}
		if se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("Parse(%q): %v; want offset %d and %q", tc.header, err, tc.offset, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), "xfcc: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		e    Element
		want string
	}{
		{Element{}, ""},
		{Element{Hash: "h"}, "Hash=h"},
		{Element{Subject: "CN=x"}, `Subject="CN=x"`},
		{Element{Cert: "abc", Chain: "def"}, `Cert="abc";Chain="def"`},
		{Element{URI: []string{`a"b\c`}}, `URI="a\"b\\c"`},
		{Element{URI: []string{`a\c`}}, `URI=a\c`},
		{Element{DNS: []string{"a;b", "c,d", "e=f", " g", "h\t", "i j"}}, `DNS="a;b";DNS="c,d";DNS="e=f";DNS=" g";DNS="h` + "\t" + `";DNS=i j`},
		{Element{Subject: `x"`}, `Subject="x\""`},
	}
	for _, tc := range tests {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%#v.String() = %s, want %s", tc.e, got, tc.want)
		}
	}
	if got := Format(nil); got != "" {
		t.Errorf("Format(nil) = %q", got)
	}
}

func TestNewElement(t *testing.T) {
	local := newCert(t, "spiffe://cluster.local/ns/demo/sa/catalog")
	peer := newCert(t, "spiffe://cluster.local/ns/demo/sa/web")
	sum := sha256.Sum256(peer.Raw)
	hash := hex.EncodeToString(sum[:])

	e := NewElement(local, peer)
	want := "By=spiffe://cluster.local/ns/demo/sa/catalog;Hash=" + hash + ";URI=spiffe://cluster.local/ns/demo/sa/web"
	if got := e.String(); got != want {
		t.Errorf("String() = %s\nwant %s", got, want)
	}
	if len(e.Hash) != 64 || strings.ToLower(e.Hash) != e.Hash {
		t.Errorf("Hash %q is not lowercase hex SHA-256", e.Hash)
	}

	// A peer without URI SAN still gets "URI=", as with Envoy; no local
	// certificate means no By.
	anon := newCert(t)
	e = NewElement(nil, anon)
	sum = sha256.Sum256(anon.Raw)
	if got, want := e.String(), "Hash="+hex.EncodeToString(sum[:])+";URI="; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func newCert(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1)}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func FuzzParse(f *testing.F) {
	for _, tc := range envoyExamples {
		f.Add(tc.header)
	}
	for _, s := range []string{
		"", " ", `Subject="a,b;c=d"`, `Subject="say \"hi\""`, `Subject="CN=a\,b"`,
		`URI="a\\";DNS=b`, `URI=a b ;DNS= c`, " By=a , By=\"b\"\t", `URI=x?a=b`,
		`By=;Hash=h;Subject="";URI="";DNS=`, `Subject="abc`, `By=a,,By=b`, `Hash=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		elems, err := Parse(header)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(header) {
				t.Fatalf("Parse(%q): bad error %#v", header, err)
			}
			return
		}
		s := Format(elems)
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its Format %q does not parse: %v", header, s, err)
		}
		if !reflect.DeepEqual(again, elems) {
			t.Fatalf("round trip of %q through %q:\n got %#v\nwant %#v", header, s, again, elems)
		}
		if s2 := Format(again); s2 != s {
			t.Fatalf("Format is not stable: %q then %q", s, s2)
		}
	})
}
