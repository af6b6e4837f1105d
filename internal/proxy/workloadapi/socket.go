package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// Listen opens the UNIX socket at path and gives it mode. A socket left
// behind by a process that ended without removing it is replaced; a
// socket that another process still serves, or a file that is not a
// socket, is an error. The directory must exist: its permissions decide,
// with mode, who may connect. Closing the listener removes the socket.
func Listen(path string, mode fs.FileMode) (net.Listener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	return ln, nil
}

// removeStale removes a socket at path that nobody serves.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("workloadapi: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("workloadapi: %s exists and is not a socket; remove it or choose another path", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("workloadapi: %s is in use: another process (another trellis-proxy?) serves it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("workloadapi: %s exists and cannot be checked: %w", path, err)
	}
	// Nobody listens: left behind by a process that ended.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("workloadapi: remove stale socket: %w", err)
	}
	return nil
}

// Serve serves the Workload API on ln until ctx ends. Then it stops,
// ending every stream (clients reconnect, to the next server on the
// socket), and closes ln, which removes the socket file.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	g := s.grpcServer()
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	select {
	case <-ctx.Done():
		g.Stop()
		<-done
		return nil
	case err := <-done:
		g.Stop()
		return fmt.Errorf("workloadapi: %w", err)
	}
}
