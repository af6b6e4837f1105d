package kubetest

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// listening tells whether a container without a readiness probe has begun
// to serve, which makes it Ready: its TCP containerPorts accept
// connections (dialled from the node, as a tcpSocket probe), or, when it
// declares none, a TCP socket listens in the pod's network namespace. (So
// a container that declares no port and never listens is never Ready.)
// Once true, it stays true, as a container without a probe stays Ready.
func (r *podRun) listening(c *corev1.Container) bool {
	r.mu.Lock()
	done := r.listened[c.Name]
	pr := r.procs[c.Name]
	r.mu.Unlock()
	if done {
		return true
	}
	if pr == nil || pr.exited() {
		return false
	}
	ok := true
	declared := false
	for _, p := range c.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		declared = true
		if r.probe(&corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{
			TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(p.ContainerPort)}}}) != nil {
			ok = false
			break
		}
	}
	if !declared {
		ok = tcpListening(pr.cmd.Process.Pid)
	}
	if ok {
		r.mu.Lock()
		if r.listened == nil {
			r.listened = map[string]bool{}
		}
		r.listened[c.Name] = true
		r.mu.Unlock()
	}
	return ok
}

// tcpListening tells whether a TCP socket listens in the network namespace
// of process pid.
func tcpListening(pid int) bool {
	for _, f := range []string{"tcp", "tcp6"} {
		file, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st ...; st 0A is LISTEN.
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 {
				if st, err := strconv.ParseUint(fields[3], 16, 8); err == nil && st == 0x0A {
					file.Close()
					return true
				}
			}
		}
		file.Close()
	}
	return false
}
