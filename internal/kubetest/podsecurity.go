package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/netnstest"
)

// applySysctls sets a pod's securityContext.sysctls in its network
// namespace, as the container runtime does for kubelet. Only sysctls of
// the network namespace (net.*) can be set per pod here; any other fails
// the pod, as kubelet refuses a sysctl it does not allow.
func applySysctls(ns string, pod *corev1.Pod) error {
	sc := pod.Spec.SecurityContext
	if sc == nil {
		return nil
	}
	for _, s := range sc.Sysctls {
		name := s.Name
		if !strings.Contains(name, "/") {
			name = strings.ReplaceAll(name, ".", "/")
		}
		if !strings.HasPrefix(name, "net/") || strings.Contains(name, "..") {
			return fmt.Errorf("sysctl %s: only net.* sysctls, which belong to the pod's network namespace, are set here", s.Name)
		}
		path := filepath.Join("/proc/sys", name)
		// A thread that entered the namespace sees that namespace's
		// /proc/sys/net.
		if err := netnstest.Do(ns, func() error { return os.WriteFile(path, []byte(s.Value), 0o644) }); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", s.Name, s.Value, err)
		}
	}
	return nil
}

// projectSecret adds a projected Secret's keys to a volume's files: the
// items it names (key to path), else every key under its own name. A
// Secret that does not exist is an error, unless the projection is
// optional.
func (r *podRun) projectSecret(src *corev1.SecretProjection, files map[string][]byte) error {
	s, err := r.n.cs.CoreV1().Secrets(r.pod.Namespace).Get(r.n.ctx, src.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && src.Optional != nil && *src.Optional:
		return nil
	case err != nil:
		return err
	}
	if len(src.Items) == 0 {
		for k, v := range s.Data {
			files[k] = v
		}
		return nil
	}
	for _, it := range src.Items {
		v, ok := s.Data[it.Key]
		if !ok {
			if src.Optional != nil && *src.Optional {
				continue
			}
			return fmt.Errorf("secret %s has no key %s", src.Name, it.Key)
		}
		files[it.Path] = v
	}
	return nil
}
