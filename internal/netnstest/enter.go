package netnstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// A socket belongs to the network namespace of the thread that creates
// it, and keeps it: Do runs f on a thread moved into a namespace, so that
// the sockets f creates (a listener, a connection) live there while the
// test uses them from any goroutine. This is how the test process itself
// reaches the namespaces' addresses, which its own namespace has no route
// to: client-go's rest.Config.Dial and an http.Transport's DialContext can
// be Dialer(ns).

// Do runs f in namespace ns (a name under /var/run/netns).
func Do(ns string, f func() error) error {
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("netnstest: namespace %s: %w", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netnstest: this thread's namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netnstest: entering %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with this
		// goroutine rather than run others in the wrong namespace.
		return fmt.Errorf("netnstest: leaving %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Dialer returns a dial function whose connections start in namespace ns.
func Dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen listens on addr in namespace ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}
