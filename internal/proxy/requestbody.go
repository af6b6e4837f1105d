package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// maxBufferedBody is how much of a request body is kept to replay it on a
// retry or copy it to a mirror: Envoy's default buffer limit, 1 MiB. A
// larger body is streamed upstream as it arrives, and the request is then
// neither retried nor mirrored, as in Envoy ("retry buffer overflow").
const maxBufferedBody = 1 << 20

// errBodyNotReplayable is returned by a reader that would need bytes the
// request body no longer holds.
var errBodyNotReplayable = errors.New("proxy: request body is larger than the retry buffer and cannot be sent again")

// requestBody is the downstream body of one request, shared by its
// upstream attempts and mirrors. It is read from the client once, as the
// first attempt sends it (so streams are never held back), and its first
// limit bytes are kept: an attempt that starts again reads them from
// memory, then continues from the client. Once more than limit bytes have
// been read, the kept bytes are dropped and only the reader that has read
// everything so far can go on.
type requestBody struct {
	src   io.ReadCloser // nil: no body
	limit int

	readMu   sync.Mutex // one read from src at a time
	mu       sync.Mutex // the fields below
	buf      []byte
	n        int64 // bytes read from src
	overflow bool  // more than limit bytes were read; buf is dropped
	eof      bool
	err      error // a read error from src other than EOF
	// onEOF runs once src has been read to its end.
	onEOF []func()
}

// newRequestBody wraps the body of a request; limit is how many bytes are
// kept (0: none, for a request that is never sent twice).
func newRequestBody(src io.ReadCloser, limit int) *requestBody {
	b := &requestBody{src: src, limit: limit}
	if src == nil || src == http.NoBody {
		b.src, b.eof = nil, true
	}
	return b
}

// reader returns a reader of the whole body for one attempt; nil when the
// request has no body.
func (b *requestBody) reader() io.ReadCloser {
	if b.src == nil {
		return nil
	}
	return &bodyReader{b: b}
}

// replayable reports whether an attempt can start the body again.
func (b *requestBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow && b.err == nil
}

// complete returns the whole body once it has been read to its end within
// the limit.
func (b *requestBody) complete() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf, b.eof && !b.overflow
}

// whenRead runs f once the body has been read to its end (at once if it
// has been, or if there is none). If the body is never read to its end, f
// never runs.
func (b *requestBody) whenRead(f func()) {
	b.mu.Lock()
	if !b.eof {
		b.onEOF = append(b.onEOF, f)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	f()
}

type bodyReader struct {
	b   *requestBody
	off int64
}

func (r *bodyReader) Read(p []byte) (int, error) {
	b := r.b
	for {
		b.mu.Lock()
		switch {
		case r.off < int64(len(b.buf)):
			k := copy(p, b.buf[r.off:])
			r.off += int64(k)
			b.mu.Unlock()
			return k, nil
		case r.off < b.n:
			b.mu.Unlock()
			return 0, errBodyNotReplayable
		case b.eof:
			b.mu.Unlock()
			return 0, io.EOF
		case b.err != nil:
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		b.mu.Unlock()
		// This reader is at the front: read on from the client. readMu
		// keeps one read at a time, so that the kept bytes stay in order;
		// mu is not held while the client is waited for.
		b.readMu.Lock()
		b.mu.Lock()
		front := r.off == b.n && !b.eof && b.err == nil
		b.mu.Unlock()
		if !front {
			b.readMu.Unlock()
			continue // another reader went ahead: take its bytes from memory
		}
		k, err := b.src.Read(p)
		b.mu.Lock()
		if k > 0 {
			if !b.overflow {
				if len(b.buf)+k <= b.limit {
					b.buf = append(b.buf, p[:k]...)
				} else {
					b.overflow, b.buf = true, nil
				}
			}
			b.n += int64(k)
			r.off += int64(k)
		}
		var fire []func()
		switch {
		case err == io.EOF:
			b.eof = true
			fire, b.onEOF = b.onEOF, nil
		case err != nil:
			b.err = err
		}
		b.mu.Unlock()
		b.readMu.Unlock()
		for _, f := range fire {
			f()
		}
		return k, err
	}
}

// Close does not close the client's body: other attempts may still read
// it, and the server closes it when the request ends.
func (r *bodyReader) Close() error { return nil }
