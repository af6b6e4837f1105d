//go:build !linux

package proxy

import (
	"net"
	"net/netip"
	"syscall"
)

// originalDst is only known on Linux, where the capture rules run.
func originalDst(net.Conn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

// markControl: socket marks are a Linux feature.
func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }
