package proxy

import (
	"net"
	"syscall"
)

// liveness tells whether an idle upstream connection can still carry a
// request: not when the server closed it, reset it, or sent something an
// idle HTTP/1.1 connection must not receive (a TLS alert). It peeks at
// the socket without blocking: one system call, where net/http's
// Transport keeps a goroutine reading every idle connection. Made once
// per connection, it allocates nothing per check; one goroutine at a time
// may use it (the one taking the connection from the pool).
type liveness struct {
	rc     syscall.RawConn
	closed bool
	peek   func(fd uintptr) bool
}

func newLiveness(c net.Conn) *liveness {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	l := &liveness{rc: rc}
	l.peek = func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil, n >= 0:
			l.closed = true
		}
		return true
	}
	return l
}

// peerClosed reports whether the connection is no longer usable.
func (l *liveness) peerClosed() bool {
	if l == nil {
		return false
	}
	l.closed = false
	if err := l.rc.Read(l.peek); err != nil {
		return true
	}
	return l.closed
}
