package proxy

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"io"
)

// stored is one resource in force as the proxy keeps it: the SHA-256 of
// its serialized bytes, which tells an update that leaves it unchanged,
// and the bytes, for the config dump and for the endpoints a new cluster
// takes. Decoded resources are not kept: they take several times their
// serialized size. The bytes are kept as received, and compressed after
// a large update (deflateAll), to about a third of their size.
type stored struct {
	sum      [sha256.Size]byte
	b        []byte
	deflated bool
}

func storeRaw(raw []byte) stored { return stored{sum: sha256.Sum256(raw), b: raw} }

// same reports whether raw is the resource stored.
func (s stored) same(raw []byte) bool { return s.sum == sha256.Sum256(raw) }

// bytes returns the serialized resource.
func (s stored) bytes() ([]byte, error) {
	if !s.deflated {
		return s.b, nil
	}
	return io.ReadAll(flate.NewReader(bytes.NewReader(s.b)))
}

// minDeflate is the size below which a resource is left as it is (an
// endpoint set of a few endpoints hardly compresses).
const minDeflate = 256

// deflateAll compresses the resources kept as received, with DEFLATE at
// its fastest level. It runs once a large update has settled
// (settleMemory), with one compressor (most of a megabyte) that it lets
// go when done: a proxy with little config never compresses anything and
// never holds a compressor, and one with much compresses it after the
// burst that brought it.
func deflateAll(raw map[string]map[string]stored) {
	var w *flate.Writer
	var buf bytes.Buffer
	for _, byName := range raw {
		for name, s := range byName {
			if s.deflated || len(s.b) < minDeflate {
				continue
			}
			buf.Reset()
			if w == nil {
				w, _ = flate.NewWriter(&buf, flate.BestSpeed)
			} else {
				w.Reset(&buf)
			}
			w.Write(s.b)
			w.Close()
			if buf.Len() < len(s.b) {
				byName[name] = stored{sum: s.sum, b: bytes.Clone(buf.Bytes()), deflated: true}
			}
		}
	}
}
