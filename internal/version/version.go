// Package version reports the build's version, set at link time with
//
//	-ldflags "-X trellis.dev/trellis/internal/version.Version=v0.1.0"
package version

import "runtime"

// Version is the release version; "dev" for builds without ldflags.
var Version = "dev"

// String is the version line both binaries print.
func String(binary string) string {
	return binary + " " + Version + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
