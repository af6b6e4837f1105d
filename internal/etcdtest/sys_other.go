//go:build !linux

package etcdtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// lockFile does not lock: tests that run etcd concurrently from several
// packages may need to be run one package at a time here.
func lockFile(string) (func(), error) { return func() {}, nil }
