package demo

import "syscall"

// sysProcAttr makes a child die with the demo, even if the demo is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
