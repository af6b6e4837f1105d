package ca

import (
	"context"
)

// Storage keeps the encoded State of a CA (EncodeState) where every
// control plane of a mesh finds it: a directory (NewDirStorage), or the
// etcd store, sealed (package castore).
type Storage interface {
	// Load returns the stored state, or nil and no error when nothing is
	// stored yet.
	Load(ctx context.Context) ([]byte, error)
	// Update calls fn with the stored state (nil when none) and stores
	// what fn returns, atomically with respect to the Updates of other
	// control planes; fn may be called again if another control plane
	// changed the state meanwhile. When fn returns nil, nothing is
	// written. Update returns the state stored when it is done.
	Update(ctx context.Context, fn func(current []byte) (next []byte, err error)) ([]byte, error)
	// String names where the state is kept, for messages.
	String() string
}
