//go:build !unix

package ca

// lockDir does nothing where flock is not available: control planes
// sharing a CA directory must then be started one at a time.
func lockDir(string) (func(), error) { return func() {}, nil }
