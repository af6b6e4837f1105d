package proxy

import (
	"net"
	"syscall"
)

// peerClosed reports whether an idle upstream connection can no longer
// carry a request: the server closed it, reset it, or sent something an
// idle HTTP/1.1 connection must not receive (a TLS alert). It peeks at the
// socket without blocking: one system call, where net/http's Transport
// keeps a goroutine reading every idle connection.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil, n >= 0:
			closed = true
		}
		return true
	})
	return closed || err != nil
}
