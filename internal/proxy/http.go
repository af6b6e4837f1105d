package proxy

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/xfcc"
)

// Headers the connection manager manages, as Envoy does.
const (
	headerRequestID = "X-Request-Id"
	headerXFF       = "X-Forwarded-For"
	headerXFP       = "X-Forwarded-Proto"
)

func randUint32n(n uint32) uint32 { return rand.Uint32N(n) }

// randInt64n returns a random number in [0, n), or 0 when n <= 0.
func randInt64n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}

// serveHTTP is the HTTP connection manager: it routes a request by the
// chain's route table and forwards it to a cluster.
//
// The chain is looked up again for every request in the listener's current
// config, so that a config change applies to requests on connections that
// were accepted before it (keep-alive connections can live for hours). If
// the connection's server name no longer leads to an HTTP chain, the
// connection is closed.
func (l *listener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	cs, _ := r.Context().Value(connMatchKey{}).(*connState)
	if cs == nil {
		cs = &connState{}
	}
	serverName := cs.match.serverName
	p := l.p
	rec := recordPool.Get().(*httpRecord)
	*rec = httpRecord{w: w, start: time.Now(), inbound: isInbound(l.name)}
	rec.s = httpStream{p: p, l: l, w: rec, r: r}
	s := &rec.s
	defer func() {
		req := r
		if s.r != nil {
			req = s.r
		}
		p.tel.end(rec, req, serverName)
		*rec = httpRecord{}
		recordPool.Put(rec)
	}()
	w = rec
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		rec.body = &countingBody{ReadCloser: r.Body}
		r.Body = rec.body
	}
	chain := cs.chain(l.cfg.Load())
	if chain == nil || chain.hcm == nil {
		s.setFlag(flagNoRoute)
		w.Header().Set("Connection", "close")
		localReply(w, http.StatusServiceUnavailable, "the listener's config no longer serves this connection")
		return
	}
	s.chain = chain
	h := chain.hcm

	switch h.xfcc {
	case xfccSanitize:
		r.Header.Del(xfcc.Header)
	case xfccSanitizeSet:
		r.Header.Del(xfcc.Header)
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			if own := p.secrets.Certificate(); own != nil {
				r.Header.Set(xfcc.Header, xfcc.Format([]xfcc.Element{xfcc.NewElement(own.Leaf, r.TLS.PeerCertificates[0])}))
			}
		}
	}
	if r.Header.Get(headerRequestID) == "" {
		r.Header.Set(headerRequestID, newRequestID())
	}
	rec.trace = startTrace(r)
	if rec.inbound {
		// Only a mesh peer's claim is taken; it goes no further.
		if r.TLS != nil {
			s.peerIn = r.Header.Get(headerPeer)
		}
		r.Header.Del(headerPeer)
	}
	if h.useRemoteAddress {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if prior := r.Header.Values(headerXFF); len(prior) > 0 {
				host = strings.Join(prior, ", ") + ", " + host
			}
			r.Header.Set(headerXFF, host)
		}
		if r.TLS != nil {
			r.Header.Set(headerXFP, "https")
		} else {
			r.Header.Set(headerXFP, "http")
		}
	}

	if !l.decodeHeaders(s) {
		return
	}
	w, r = s.w, s.r
	if s.routeTable() == nil {
		s.setFlag(flagNoRoute)
		localReply(w, http.StatusNotFound, fmt.Sprintf("route configuration %q not received yet", h.rds))
		return
	}
	rt := s.matchRoute()
	if rt == nil {
		s.setFlag(flagNoRoute)
		localReply(w, http.StatusNotFound, "no route matched "+r.Host+r.URL.Path)
		return
	}
	switch {
	case rt.DirectResponse != nil:
		// The route's response headers apply to what the route answers
		// itself, as in Envoy.
		rt.ApplyResponseHeaders(w.Header(), nil)
		if rt.DirectResponse.Body != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.WriteHeader(rt.DirectResponse.Status)
		w.Write(rt.DirectResponse.Body)
		return
	case rt.Redirect != nil:
		rt.ApplyResponseHeaders(w.Header(), nil)
		w.Header().Set("Location", rt.RedirectLocation(r))
		w.WriteHeader(rt.Redirect.Code)
		return
	}
	picked := rt.PickWeighted(randUint32n)
	name := rt.Cluster
	if picked != nil {
		name = picked.Name
	}
	rec.cluster = name
	c := (*p.clusters.Load())[name]
	if c == nil {
		s.setFlag(flagNoCluster)
		localReply(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %q not found", name))
		return
	}

	ctx := withLBHash(r.Context(), rt, r)
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, rt.Timeout, errRouteTimeout)
		defer cancel()
	}
	rp := &httputil.ReverseProxy{
		BufferPool: copyBuffers,
		Transport:  &forwarder{p: p, c: c, rt: rt, body: newRequestBody(r.Body, bufferLimit(rt))},
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The Host (authority) is preserved unless the route rewrites it.
			pr.Out.Host = pr.In.Host
			// As Envoy does (proxy_100_continue off), the proxy answers
			// Expect: 100-continue itself, when the body is first read,
			// and does not pass it on.
			pr.Out.Header.Del("Expect")
			if host := rt.RewriteHost(picked); host != "" {
				pr.Out.Host = host
			}
			if path := rt.RewritePath(pr.In.URL.RequestURI()); path != pr.In.URL.RequestURI() {
				if u, err := url.ParseRequestURI(path); err == nil {
					pr.Out.URL.Path, pr.Out.URL.RawPath, pr.Out.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
				}
			}
			// ReverseProxy drops X-Forwarded-*; the connection manager above
			// decided what they hold.
			for _, k := range []string{headerXFF, headerXFP, "X-Forwarded-Host"} {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					pr.Out.Header[k] = v
				}
			}
			if !rec.inbound && c.meshTLS() {
				pr.Out.Header.Set(headerPeer, p.tel.self.workload)
			}
			rt.ApplyRequestHeaders(pr.Out.Header, picked)
		},
		ModifyResponse: func(resp *http.Response) error {
			if !rec.inbound && c.meshTLS() {
				rec.peerHeader = resp.Header.Get(headerPeer)
			}
			resp.Header.Del(headerPeer)
			rt.ApplyResponseHeaders(resp.Header, picked)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if overflowReply(w, err) {
				s.setFlag(flagOverflow)
				return
			}
			switch {
			case errors.Is(err, errNoHealthyUpstream):
				s.setFlag(flagNoHealthyUpstream)
				localReply(w, http.StatusServiceUnavailable, "no healthy upstream")
			case errors.Is(context.Cause(req.Context()), errRouteTimeout), errors.Is(err, errPerTryTimeout),
				errors.Is(err, context.DeadlineExceeded):
				s.setFlag(flagUpstreamTimeout)
				localReply(w, http.StatusGatewayTimeout, "upstream request timeout")
			case errors.Is(err, context.Canceled):
				// The client went away.
				s.setFlag(flagDownstreamTerminated)
			default:
				if isConnectError(err) {
					s.setFlag(flagUpstreamConnectFailure)
				} else {
					s.setFlag(flagUpstreamReset)
				}
				localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers: "+err.Error())
			}
		},
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
}

// localReply answers from the proxy itself, marked so that the response
// is told apart from the app's.
func localReply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Trellis-Local-Reply", "true")
	w.WriteHeader(code)
	io.WriteString(w, "trellis-proxy: "+msg+"\n")
}

func newRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// countingBody counts the bytes of a request body of unknown length. The
// upstream transport may still read it after the handler returned.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// copyBuffers are the buffers ReverseProxy copies response bodies with,
// shared by every request rather than 32 KiB allocated for each.
// The pool holds array pointers, so that neither Get nor Put allocates.
var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}

const copyBufferSize = 32 << 10

type bufferPool struct{ p sync.Pool }

var _ httputil.BufferPool = (*bufferPool)(nil)

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
