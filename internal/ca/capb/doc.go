// Package capb holds the generated protobuf and gRPC code of the Trellis
// certificate service (ca.proto). Regenerate with `make generate`.
package capb
