package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// soOriginalDst is SO_ORIGINAL_DST (and IP6T_SO_ORIGINAL_DST, the same
// number at the IPv6 level): the destination a connection had before a
// REDIRECT rule sent it to the proxy.
const soOriginalDst = 80

// originalDst returns the destination the client of conn dialed, before
// the capture rules redirected it; ok is false when conn was not
// redirected (no NAT entry) or is not a TCP connection.
func originalDst(conn net.Conn) (netip.AddrPort, bool) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	local, _ := netip.ParseAddrPort(conn.LocalAddr().String())
	var out netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		// sockaddr_in6 (28 bytes) is the larger of the two answers.
		var buf [28]byte
		size := uint32(len(buf))
		level := uintptr(syscall.SOL_IP)
		if local.Addr().Is6() && !local.Addr().Is4In6() {
			level = syscall.SOL_IPV6
		}
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, level, soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
			return
		}
		port := binary.BigEndian.Uint16(buf[2:4])
		switch binary.NativeEndian.Uint16(buf[0:2]) {
		case syscall.AF_INET:
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port)
		case syscall.AF_INET6:
			out = netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port)
		default:
			serr = errors.New("unknown address family")
		}
	})
	if err != nil || serr != nil || !out.IsValid() {
		return netip.AddrPort{}, false
	}
	return out, true
}

// markControl sets SO_MARK on a socket before it connects, so that the
// capture rules let the proxy's own connections through.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		return serr
	}
}
