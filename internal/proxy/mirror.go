package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Request mirroring (request_mirror_policies): a sampled request is
// copied to the mirror's cluster, fire and forget, as Envoy shadows
// requests. The copy carries the headers the main request is sent with
// (after the route's rewrites and header changes) and a Host suffixed
// "-shadow"; its body is the request's body once it has been read, and
// only when it fits in maxBufferedBody (a larger body is not mirrored).
// The main request never waits for a mirror and never sees its result;
// mirror responses are discarded.

// maxMirrorsInFlight bounds the mirrored requests a proxy has in flight;
// a request sampled beyond it is not mirrored.
const maxMirrorsInFlight = 128

// maxMirrorDuration bounds a mirrored request whose route has no timeout
// (or a longer one), so that a mirror that never answers cannot hold its
// place for ever.
const maxMirrorDuration = time.Minute

// maxMirrorResponse is how much of a mirror's response is read (and
// discarded) before its connection is closed.
const maxMirrorResponse = 64 << 10

// mirrorSet runs a proxy's mirrored requests. Its zero value is ready;
// stop cancels them and waits.
type mirrorSet struct {
	mu       sync.Mutex
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	inFlight int
	stopped  bool
}

// goMirror runs f in its own goroutine unless maxMirrorsInFlight are
// running or the set is stopped; it never blocks.
func (m *mirrorSet) goMirror(f func(ctx context.Context)) bool {
	m.mu.Lock()
	if m.stopped || m.inFlight >= maxMirrorsInFlight {
		m.mu.Unlock()
		return false
	}
	if m.ctx == nil {
		m.ctx, m.cancel = context.WithCancel(context.Background())
	}
	m.inFlight++
	m.wg.Add(1)
	ctx := m.ctx
	m.mu.Unlock()
	go func() {
		defer func() {
			_ = recover() // a mirror never takes the proxy down
			m.mu.Lock()
			m.inFlight--
			m.mu.Unlock()
			m.wg.Done()
		}()
		f(ctx)
	}()
	return true
}

// stop cancels the mirrors in flight, refuses new ones, and waits.
func (m *mirrorSet) stop() {
	m.mu.Lock()
	m.stopped = true
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// mirror copies out, the request as it goes upstream, to the route's
// mirrors that sample it.
func (f *forwarder) mirror(out *http.Request) {
	for i := range f.rt.MirrorPolicies {
		mp := &f.rt.MirrorPolicies[i]
		if !mp.Sampled(randUint32n) {
			continue
		}
		c := (*f.p.clusters.Load())[mp.Cluster]
		if c == nil {
			continue // as in Envoy: a mirror to an unknown cluster is skipped
		}
		copyReq := out.Clone(context.Background())
		copyReq.Host = mp.ShadowHost(out.Host)
		copyReq.Body, copyReq.GetBody, copyReq.TransferEncoding = nil, nil, nil
		copyReq.ContentLength = 0
		timeout := f.rt.Timeout
		if timeout <= 0 || timeout > maxMirrorDuration {
			timeout = maxMirrorDuration
		}
		log := f.p.log
		f.body.whenRead(func() {
			data, ok := f.body.complete()
			if !ok {
				return // the body is larger than the buffer
			}
			f.p.mirrors.goMirror(func(ctx context.Context) {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				req := copyReq.WithContext(ctx)
				if len(data) > 0 {
					req.Body = io.NopCloser(bytes.NewReader(data))
					req.ContentLength = int64(len(data))
				}
				resp, err := c.RoundTrip(req)
				if err != nil {
					log.Debug("mirrored request failed", "cluster", c.name, "err", err)
					return
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMirrorResponse))
				resp.Body.Close()
			})
		})
	}
}
