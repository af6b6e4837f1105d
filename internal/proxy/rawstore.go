package proxy

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"io"
	"sync"
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

// writers are DEFLATE compressors, reused within a burst of updates (each
// holds some hundreds of kilobytes; the pool lets them go at the next
// collection).
var writers = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

func storeRaw(raw []byte) stored {
	var b bytes.Buffer
	w := writers.Get().(*flate.Writer)
	w.Reset(&b)
	w.Write(raw)
	w.Close()
	writers.Put(w)
	return stored{sum: sha256.Sum256(raw), z: bytes.Clone(b.Bytes())}
}

// same reports whether raw is the resource stored.
func (s stored) same(raw []byte) bool { return s.sum == sha256.Sum256(raw) }

// bytes returns the serialized resource.
func (s stored) bytes() ([]byte, error) {
	return io.ReadAll(flate.NewReader(bytes.NewReader(s.z)))
}
