//go:build unix

package ca

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the file control planes sharing a CA directory lock while
// they create or renew the CA's certificates.
const lockFile = ".lock"

// lockDir takes an exclusive lock on dir, waiting for other processes to
// release theirs, and returns the function that releases it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ca: locking %s: %w", dir, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
