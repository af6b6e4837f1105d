package kubetest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A container runs in namespaces of its own, as under a container runtime:
//
//	network   the pod's (netnstest), shared by its containers
//	UTS       its own, with the pod's hostname
//	mount     its own, private (nothing propagates to or from the host),
//	          with a root of its own: a tmpfs on which every entry of the
//	          host's / is bind-mounted (so every binary and library of the
//	          host is there), /sys remounted for the pod's network, and on
//	          top the pod's /etc/hosts, /etc/resolv.conf, /etc/hostname,
//	          /cert.crt and /cert.key, and the container's volumes at their
//	          mountPaths
//
// A mount point that does not exist is made in that root: in its tmpfs,
// or, below a host directory bound there, by shadowing that directory (a
// tmpfs on it, with each of its entries bound back), so the host's
// filesystem never changes. The namespaces live as long as the
// container's process: /exec joins them with nsenter.
//
// They are made on a locked OS thread of the test process, which leaves
// its namespaces (unshare), joins the pod's network namespace, mounts the
// root, and then starts the process chrooted into it; the thread stays
// until the process exits (so that Pdeathsig, which follows the thread
// that started the process, kills it only when the test process dies) and
// is then ended with its goroutine, never to run other Go code.

// sandbox says what a container's namespaces hold.
type sandbox struct {
	netns    string // name under /var/run/netns
	hostname string
	root     string // an empty directory of the host, on which the root is mounted
	mounts   []bindMount

	writable map[string]bool // directories of the container where entries may be made
}

// bindMount puts the host file or directory source at target in the
// container's root.
type bindMount struct {
	target, source string
	readOnly       bool
}

// start starts cmd in the sandbox. cmd's path must be absolute; its Dir is
// a directory in the sandbox ("/" when empty). exited must be closed once
// the process has been waited for.
func (s *sandbox) start(cmd *exec.Cmd, exited <-chan struct{}) error {
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Chroot = s.root
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		if err := s.enter(); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		<-exited
	}()
	return <-started
}

// enter moves the calling (locked) thread into new mount and UTS
// namespaces and the pod's network namespace, and builds the root.
func (s *sandbox) enter() error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS | unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	netns, err := os.Open("/var/run/netns/" + s.netns)
	if err != nil {
		return err
	}
	defer netns.Close()
	if err := unix.Setns(int(netns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", s.netns, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if s.hostname != "" {
		if err := unix.Sethostname([]byte(s.hostname)); err != nil {
			return fmt.Errorf("hostname %q: %w", s.hostname, err)
		}
	}
	s.writable = map[string]bool{"/": true}
	if err := unix.Mount("tmpfs", s.root, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("root tmpfs: %w", err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := "/" + e.Name()
		if e.Name() == "sys" {
			if err := os.Mkdir(s.root+src, 0o755); err != nil {
				return err
			}
			// sysfs shows the network devices of the namespace that
			// mounts it, as `ip netns exec` does it.
			if unix.Mount("sysfs", s.root+src, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "") == nil {
				continue
			}
		}
		if err := mirror(src, s.root+src); err != nil {
			return err
		}
	}
	// The root itself is below a host directory bound into it: its copy
	// there would loop.
	if err := unix.Unmount(s.root+s.root, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detaching the root's copy: %w", err)
	}
	for _, m := range s.mounts {
		if err := s.bind(m); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.source, m.target, err)
		}
	}
	return nil
}

// mirror makes at dst what the host has at src: a directory or file bound
// recursively, or the same symbolic link.
func mirror(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	default:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s: %w", src, err)
	}
	return nil
}

// bind mounts m.source at m.target in the root, making the mount point.
func (s *sandbox) bind(m bindMount) error {
	fi, err := os.Stat(m.source)
	if err != nil {
		return err
	}
	target, err := s.mountPoint(m.target, fi.IsDir())
	if err != nil {
		return err
	}
	if err := unix.Mount(m.source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	// What is below a volume is the pod's own.
	s.writable[path.Clean(m.target)] = fi.IsDir()
	if m.readOnly {
		return unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	return nil
}

// mountPoint returns the host path, under the root, of the container's
// path p, with symbolic links followed within the root, and makes it a
// directory (or a file) if it does not exist.
func (s *sandbox) mountPoint(p string, dir bool) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/" // resolved, in the container
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		fi, err := os.Lstat(s.root + next)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > 40 {
				return "", fmt.Errorf("%s: too many symbolic links", p)
			}
			link, err := os.Readlink(s.root + next)
			if err != nil {
				return "", err
			}
			if path.IsAbs(link) {
				cur = "/"
			}
			parts = append(strings.Split(link, "/"), parts...)
			continue
		case err == nil:
			cur = next
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
		if err := s.makeWritable(cur); err != nil {
			return "", err
		}
		if len(parts) > 0 || dir {
			err = os.Mkdir(s.root+next, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(s.root+next, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return "", err
		}
		s.writable[next] = true
		cur = next
	}
	return s.root + cur, nil
}

// makeWritable makes a new entry in the container's directory dir possible
// without changing the host: dir is the root, a directory made here or a
// bound volume (s.writable), or else a host directory bound there, which
// is shadowed.
func (s *sandbox) makeWritable(dir string) error {
	if s.writable[dir] {
		return nil
	}
	// Shadow dir: its host directory's entries, read before the tmpfs
	// hides them, each bound back on the tmpfs. The host directory is
	// dir itself: every binding in the root keeps the host's path.
	host := filepath.Clean(dir)
	entries, err := os.ReadDir(host)
	if err != nil {
		return fmt.Errorf("shadowing %s: %w", dir, err)
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", s.root+dir, "tmpfs", 0, fmt.Sprintf("mode=%o", fi.Mode().Perm())); err != nil {
		return fmt.Errorf("shadowing %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := mirror(path.Join(host, e.Name()), s.root+path.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("shadowing %s: %w", dir, err)
		}
	}
	s.writable[dir] = true
	return nil
}

// nsenterArgs is the command line that runs argv in the namespaces and
// root of the running process pid.
func nsenterArgs(pid int, dir string, argv []string) []string {
	wd := "--wd"
	if dir != "" {
		wd = "--wd=" + dir
	}
	return append([]string{"nsenter", "--target", fmt.Sprint(pid), "--mount", "--uts", "--net", "--root", wd, "--"}, argv...)
}
