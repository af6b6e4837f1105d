package proxy

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// W3C trace context (https://www.w3.org/TR/trace-context/): a request
// arriving with a valid traceparent keeps its trace id and flags; one
// without (or with an invalid one) starts a trace, sampled. Either way the
// proxy is a span of its own: the traceparent it forwards carries a new
// span id, whose parent is the one it received. tracestate passes
// unchanged. The access log prints the trace, span and parent span ids.

const headerTraceparent = "Traceparent"

// traceContext is a request's trace: its trace id, the proxy's span and
// the span it came from (zero when the proxy started the trace).
type traceContext struct {
	traceID [16]byte
	spanID  [8]byte
	parent  [8]byte
	flags   byte
}

// startTrace reads r's traceparent and replaces it with the proxy's span.
func startTrace(r *http.Request) traceContext {
	var tc traceContext
	if !parseTraceparent(r.Header.Get(headerTraceparent), &tc) {
		tc = traceContext{flags: 1}
		putUint64(tc.traceID[:8], rand.Uint64())
		putUint64(tc.traceID[8:], rand.Uint64()|1) // never all zero
	}
	putUint64(tc.spanID[:], rand.Uint64()|1)
	r.Header[headerTraceparent] = []string{tc.header()}
	return tc
}

// parseTraceparent parses version 00 (and, as the specification asks,
// the first four fields of later versions).
func parseTraceparent(s string, tc *traceContext) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && (s[:2] == "00" || s[55] != '-')) {
		return false
	}
	if s[:2] == "ff" || !isLowerHex(s[:2]) || !isLowerHex(s[3:35]) || !isLowerHex(s[36:52]) || !isLowerHex(s[53:55]) {
		return false
	}
	var f [1]byte
	if _, err := hex.Decode(tc.traceID[:], []byte(s[3:35])); err != nil {
		return false
	}
	if _, err := hex.Decode(tc.parent[:], []byte(s[36:52])); err != nil {
		return false
	}
	if _, err := hex.Decode(f[:], []byte(s[53:55])); err != nil {
		return false
	}
	if tc.traceID == [16]byte{} || tc.parent == [8]byte{} {
		return false
	}
	tc.flags = f[0]
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// header is the traceparent the proxy forwards: version 00, the trace id,
// the proxy's span id and the flags.
func (tc *traceContext) header() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tc.traceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], tc.spanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{tc.flags})
	return string(b[:])
}
