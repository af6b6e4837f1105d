package xfcc

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Header is the canonical name of the header.
const Header = "X-Forwarded-Client-Cert"

// Element is what one proxy recorded about the client certificate it
// verified. The zero value of a field means the key was absent (or present
// with an empty value, which for Hash, Cert, Chain and Subject is the same
// thing here).
type Element struct {
	By      []string // URI SANs of the proxy's own certificate
	Hash    string   // hex SHA-256 of the client's leaf certificate (DER)
	Cert    string   // client leaf certificate, URL-encoded PEM, as sent
	Chain   string   // client chain including the leaf, URL-encoded PEM, as sent
	Subject string   // client certificate subject
	URI     []string // URI SANs of the client certificate
	DNS     []string // DNS SANs of the client certificate
}

// SyntaxError reports where and why a header did not parse.
type SyntaxError struct {
	Offset int // byte offset in the header
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("xfcc: at byte %d: %s", e.Offset, e.Msg)
}

// NewElement returns the element Envoy sets with SANITIZE_SET and
// set_current_client_cert_details {uri: true}: By for each URI SAN of local
// (the proxy's own certificate), Hash of peer's DER, and URI for each URI SAN
// of peer, or one empty URI if peer has none. local may be nil; peer may not.
func NewElement(local, peer *x509.Certificate) Element {
	var e Element
	if local != nil {
		for _, u := range local.URIs {
			e.By = append(e.By, u.String())
		}
	}
	sum := sha256.Sum256(peer.Raw)
	e.Hash = hex.EncodeToString(sum[:])
	for _, u := range peer.URIs {
		e.URI = append(e.URI, u.String())
	}
	if len(e.URI) == 0 {
		e.URI = []string{""}
	}
	return e
}

// Parse parses a header value. An empty (or all-whitespace) header has no
// elements. Errors are *SyntaxError.
func Parse(header string) ([]Element, error) {
	p := parser{s: header}
	p.skipOWS()
	if p.eof() {
		return nil, nil
	}
	var elems []Element
	for {
		start := p.i
		e, err := p.element()
		if err != nil {
			return nil, err
		}
		if e.isZero() {
			return nil, p.errAt(start, "element %d carries no value", len(elems)+1)
		}
		elems = append(elems, e)
		if p.eof() {
			return elems, nil
		}
		p.i++ // the ',' that ended the element
		p.skipOWS()
		if p.eof() {
			return nil, p.errf("empty element after ','")
		}
	}
}

// Format joins elements into a header value.
func Format(elems []Element) string {
	var b strings.Builder
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		e.write(&b)
	}
	return b.String()
}

// String formats e as one element: keys in Envoy's order, Cert, Chain and
// Subject always quoted, other values quoted when they need it. An element
// with no fields set formats as "", which Parse rejects. Values must not
// contain control characters other than tab: no header can carry them.
func (e Element) String() string {
	var b strings.Builder
	e.write(&b)
	return b.String()
}

func (e Element) write(b *strings.Builder) {
	first := true
	add := func(key, v string, quote bool) {
		if !first {
			b.WriteByte(';')
		}
		first = false
		b.WriteString(key)
		b.WriteByte('=')
		if quote || needsQuote(v) {
			writeQuoted(b, v)
		} else {
			b.WriteString(v)
		}
	}
	for _, v := range e.By {
		add("By", v, false)
	}
	if e.Hash != "" {
		add("Hash", e.Hash, false)
	}
	if e.Cert != "" {
		add("Cert", e.Cert, true)
	}
	if e.Chain != "" {
		add("Chain", e.Chain, true)
	}
	if e.Subject != "" {
		add("Subject", e.Subject, true)
	}
	for _, v := range e.URI {
		add("URI", v, false)
	}
	for _, v := range e.DNS {
		add("DNS", v, false)
	}
}

func (e Element) isZero() bool {
	return e.By == nil && e.Hash == "" && e.Cert == "" && e.Chain == "" &&
		e.Subject == "" && e.URI == nil && e.DNS == nil
}

// needsQuote reports whether v, written bare, would not read back as v.
func needsQuote(v string) bool {
	if v == "" {
		return false
	}
	if isOWS(v[0]) || isOWS(v[len(v)-1]) {
		return true
	}
	return strings.ContainsAny(v, `,;="`)
}

func writeQuoted(b *strings.Builder, v string) {
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// isCTL reports whether c may not appear in a header value.
func isCTL(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

type parser struct {
	s string
	i int
}

func (p *parser) eof() bool { return p.i >= len(p.s) }

func (p *parser) skipOWS() {
	for !p.eof() && isOWS(p.s[p.i]) {
		p.i++
	}
}

func (p *parser) errf(format string, args ...any) error {
	return p.errAt(p.i, format, args...)
}

func (p *parser) errAt(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// element parses pairs up to the ',' that ends the element, or the end of the
// header, and leaves p.i there.
func (p *parser) element() (Element, error) {
	var e Element
	var seen [numKeys]bool
	for first := true; ; first = false {
		keyStart := p.i
		k, err := p.key(first)
		if err != nil {
			return Element{}, err
		}
		if seen[k] && !keys[k].repeats {
			return Element{}, p.errAt(keyStart, "key %s appears twice in one element", keys[k].name)
		}
		seen[k] = true
		v, err := p.value()
		if err != nil {
			return Element{}, err
		}
		switch k {
		case keyBy:
			e.By = append(e.By, v)
		case keyHash:
			e.Hash = v
		case keyCert:
			e.Cert = v
		case keyChain:
			e.Chain = v
		case keySubject:
			e.Subject = v
		case keyURI:
			e.URI = append(e.URI, v)
		case keyDNS:
			e.DNS = append(e.DNS, v)
		}
		if p.eof() || p.s[p.i] == ',' {
			return e, nil
		}
		p.i++ // ';'
	}
}

// key reads a key and the '=' after it; first says whether it is the
// element's first.
func (p *parser) key(first bool) (keyID, error) {
	start := p.i
	empty := "empty pair"
	if first {
		empty = "empty element"
	}
	for !p.eof() {
		switch c := p.s[p.i]; {
		case c == '=':
			name := p.s[start:p.i]
			if name == "" {
				return 0, p.errf("missing key before '='")
			}
			for k, d := range keys {
				if strings.EqualFold(name, d.name) {
					p.i++
					return keyID(k), nil
				}
			}
			return 0, p.errAt(start, "unknown key %q (want By, Hash, Cert, Chain, Subject, URI or DNS)", name)
		case c == ';' || c == ',':
			if p.i == start {
				return 0, p.errf("%s", empty)
			}
			return 0, p.errAt(start, "pair %q has no '='", p.s[start:p.i])
		case c == '"':
			return 0, p.errf("quote in key")
		case isCTL(c):
			return 0, p.errf("control character %#02x", c)
		}
		p.i++
	}
	if p.i == start {
		return 0, p.errf("%s at end of header", empty)
	}
	return 0, p.errAt(start, "pair %q has no '='", p.s[start:p.i])
}

// value reads a bare or quoted value and leaves p.i at the ';' or ',' after
// it, or at the end of the header.
func (p *parser) value() (string, error) {
	if !p.eof() && p.s[p.i] == '"' {
		return p.quoted()
	}
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		if c == ';' || c == ',' {
			break
		}
		if c == '"' {
			return "", p.errf("quote inside a bare value (quote the whole value)")
		}
		if isCTL(c) {
			return "", p.errf("control character %#02x", c)
		}
		p.i++
	}
	v := p.s[start:p.i]
	if p.eof() || p.s[p.i] == ',' {
		// Whitespace before ',' or the end belongs to the list, not the value.
		v = strings.TrimRight(v, " \t")
	}
	return v, nil
}

func (p *parser) quoted() (string, error) {
	open := p.i
	p.i++
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errAt(open, "unterminated quoted value")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			v := b.String()
			end := p.i
			p.skipOWS()
			if p.eof() || p.s[p.i] == ',' {
				return v, nil
			}
			if p.i == end && p.s[p.i] == ';' {
				return v, nil
			}
			if p.i != end {
				return "", p.errAt(end, "whitespace after quoted value before %q", p.s[p.i])
			}
			return "", p.errf("%q after quoted value (want ';' or ',')", p.s[p.i])
		case c == '\\' && p.i+1 < len(p.s) && (p.s[p.i+1] == '"' || p.s[p.i+1] == '\\'):
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isCTL(c):
			return "", p.errf("control character %#02x", c)
		default:
			b.WriteByte(c)
			p.i++
		}
	}
}

type keyID int

const (
	keyBy keyID = iota
	keyHash
	keyCert
	keyChain
	keySubject
	keyURI
	keyDNS
	numKeys
)

var keys = [numKeys]struct {
	name    string
	repeats bool
}{
	keyBy:      {"By", true},
	keyHash:    {"Hash", false},
	keyCert:    {"Cert", false},
	keyChain:   {"Chain", false},
	keySubject: {"Subject", false},
	keyURI:     {"URI", true},
	keyDNS:     {"DNS", true},
}
