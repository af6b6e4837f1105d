package kubetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

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
// They are made by a helper process: the test binary itself, run again
// (/proc/self/exe) with the sandbox in the environment variable sandboxEnv,
// which this package's init function reads before any test runs. On its
// main thread, locked, it leaves the test's namespaces (unshare), joins the
// pod's network namespace, mounts the root, chroots into it and executes
// the container's command line in its place (execve keeps the thread's
// namespaces and root), so the container's process is the helper's pid. A
// pipe closed on exec tells the node that the command runs, or why not.
// (Doing it on a thread of the test process instead would end that thread
// when done: and the kernel sends Pdeathsig to children when the thread
// that started them ends, which killed kube-apiserver, started with
// Pdeathsig by a thread that Go later locked. For the same reason the
// containers have no Pdeathsig.)

// sandboxEnv holds, in the helper's environment, the sandbox as JSON.
const sandboxEnv = "TRELLIS_KUBETEST_SANDBOX"

// sandbox says what a container's namespaces hold.
type sandbox struct {
	Netns    string      // name under /var/run/netns
	Hostname string      // the UTS namespace's
	Root     string      // an empty directory of the host, on which the root is mounted
	Dir      string      // the working directory, in the root
	Mounts   []bindMount // in order
	UID, GID int64       // the user the command runs as

	writable map[string]bool // directories of the container where entries may be made
}

// bindMount puts the host file or directory Source at Target in the
// container's root.
type bindMount struct {
	Target, Source string
	ReadOnly       bool
}

func init() {
	if spec, ok := os.LookupEnv(sandboxEnv); ok {
		runSandbox(spec)
	}
}

// start starts cmd in the sandbox: its Path (absolute), Args, Env and
// output; its Dir is a directory in the sandbox ("/" when empty).
func (s *sandbox) start(cmd *exec.Cmd) error {
	s.Dir = cmd.Dir
	if s.Dir == "" {
		s.Dir = "/"
	}
	spec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd.Args = append([]string{self, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	cmd.Dir = ""
	cmd.Env = append(slices.Clone(cmd.Env), sandboxEnv+"="+string(spec))
	cmd.ExtraFiles = []*os.File{w} // fd 3
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(r)
	if len(msg) > 0 {
		_ = cmd.Wait()
		return fmt.Errorf("sandbox: %s", msg)
	}
	return nil
}

// runSandbox is the helper: it enters the sandbox spec and executes its
// arguments there, or says why not on fd 3 and exits.
func runSandbox(spec string) {
	status := os.NewFile(3, "status")
	fail := func(err error) {
		fmt.Fprint(status, err)
		os.Exit(127)
	}
	unix.CloseOnExec(3)
	runtime.LockOSThread()
	var s sandbox
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fail(err)
	}
	if len(os.Args) < 2 {
		fail(errors.New("no command"))
	}
	// The command is opened before the mounts, which may hide it (a
	// volume at /root hides a binary under /root/.cache), and executed
	// through /proc/self/fd.
	bin, err := os.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	if err := s.enter(); err != nil {
		fail(err)
	}
	if err := unix.Chroot(s.Root); err != nil {
		fail(fmt.Errorf("chroot: %w", err))
	}
	if err := unix.Chdir(s.Dir); err != nil {
		fail(fmt.Errorf("working directory %s: %w", s.Dir, err))
	}
	if s.UID != 0 || s.GID != 0 {
		// Go's set*id calls apply to every thread.
		if err := unix.Setgroups(nil); err != nil {
			fail(fmt.Errorf("setgroups: %w", err))
		}
		if err := unix.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
			fail(fmt.Errorf("group %d: %w", s.GID, err))
		}
		if err := unix.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
			fail(fmt.Errorf("user %d: %w", s.UID, err))
		}
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, sandboxEnv+"=") })
	fail(unix.Exec(fmt.Sprintf("/proc/self/fd/%d", bin.Fd()), os.Args[1:], env))
}

// enter moves the calling (locked) thread into new mount and UTS
// namespaces and the pod's network namespace, and builds the root.
func (s *sandbox) enter() error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS | unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	netns, err := os.Open("/var/run/netns/" + s.Netns)
	if err != nil {
		return err
	}
	defer netns.Close()
	if err := unix.Setns(int(netns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", s.Netns, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("hostname %q: %w", s.Hostname, err)
		}
	}
	s.writable = map[string]bool{"/": true}
	if err := unix.Mount("tmpfs", s.Root, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("root tmpfs: %w", err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := "/" + e.Name()
		if e.Name() == "sys" {
			if err := os.Mkdir(s.Root+src, 0o755); err != nil {
				return err
			}
			// sysfs shows the network devices of the namespace that
			// mounts it, as `ip netns exec` does it.
			if unix.Mount("sysfs", s.Root+src, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "") == nil {
				continue
			}
		}
		if err := mirror(src, s.Root+src); err != nil {
			return err
		}
	}
	// The root itself is below a host directory bound into it: its copy
	// there would loop.
	if err := unix.Unmount(s.Root+s.Root, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detaching the root's copy: %w", err)
	}
	for _, m := range s.Mounts {
		if err := s.bind(m); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
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

// bind mounts m.Source at m.Target in the root, making the mount point.
func (s *sandbox) bind(m bindMount) error {
	fi, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	target, err := s.mountPoint(m.Target, fi.IsDir())
	if err != nil {
		return err
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	// What is below a volume is the pod's own.
	s.writable[path.Clean(m.Target)] = fi.IsDir()
	if m.ReadOnly {
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
		fi, err := os.Lstat(s.Root + next)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > 40 {
				return "", fmt.Errorf("%s: too many symbolic links", p)
			}
			link, err := os.Readlink(s.Root + next)
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
			err = os.Mkdir(s.Root+next, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(s.Root+next, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return "", err
		}
		s.writable[next] = true
		cur = next
	}
	return s.Root + cur, nil
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
	if err := unix.Mount("tmpfs", s.Root+dir, "tmpfs", 0, fmt.Sprintf("mode=%o", fi.Mode().Perm())); err != nil {
		return fmt.Errorf("shadowing %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := mirror(path.Join(host, e.Name()), s.Root+path.Join(dir, e.Name())); err != nil {
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
