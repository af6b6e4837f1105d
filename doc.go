// Package trellis is the root of the Trellis service mesh module. The
// binaries are cmd/trellis (control plane and operator tools) and
// cmd/trellis-proxy (the data plane); the resource types others may import
// are in api/; everything else is internal. See README.md and docs/.
package trellis
