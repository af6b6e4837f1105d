package proxy

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"io"
	"sync"
	"time"
)

// stored is one resource in force as the proxy keeps it: the SHA-256 of
// its serialized bytes, which tells an update that leaves it unchanged,
// and the bytes compressed, for the config dump and for the endpoints a
// new cluster takes. Decoded resources are not kept: they take several
// times their serialized size, and compressed the serialized form takes
// about a third of it.
type stored struct {
	sum [sha256.Size]byte
	z   []byte
}

// same reports whether raw is the resource stored.
func (s stored) same(raw []byte) bool { return s.sum == sha256.Sum256(raw) }

// bytes returns the serialized resource.
func (s stored) bytes() ([]byte, error) {
	return io.ReadAll(flate.NewReader(bytes.NewReader(s.z)))
}

// deflater compresses resources with one DEFLATE writer at its fastest
// level. The writer takes most of a megabyte: it is kept while updates
// come and let go settleAfter after the last one, so that an idle proxy
// holds none.
type deflater struct {
	mu   sync.Mutex
	w    *flate.Writer
	idle *time.Timer
}

// store compresses raw.
func (d *deflater) store(raw []byte) stored {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b bytes.Buffer
	if d.w == nil {
		d.w, _ = flate.NewWriter(&b, flate.BestSpeed)
	} else {
		d.w.Reset(&b)
	}
	d.w.Write(raw)
	d.w.Close()
	if d.idle == nil {
		d.idle = time.AfterFunc(settleAfter, d.release)
	} else {
		d.idle.Reset(settleAfter)
	}
	return stored{sum: sha256.Sum256(raw), z: bytes.Clone(b.Bytes())}
}

// release lets the writer go.
func (d *deflater) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.w = nil
}

// stop releases the writer for good: the proxy is shutting down.
func (d *deflater) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.idle != nil {
		d.idle.Stop()
	}
	d.w = nil
}
