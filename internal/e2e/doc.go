// Package e2e holds end-to-end tests that run the control plane, proxies
// and the demo application in one process over real sockets and real TLS:
// the embedded etcd, the CA, ADS, mesh mTLS between sidecars. Each test
// takes a loopback /24 of its own (127.x.y.0) so that tests and packages
// can run in parallel on the standard ports.
//
// Tests of transparent capture (as root) run each part as a process of
// the test binary inside network namespaces joined by a bridge, with
// addresses that exist only inside them (netns_test.go); the namespaces
// are deleted when the test ends, also on failure.
package e2e
