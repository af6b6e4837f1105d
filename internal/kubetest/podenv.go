package kubetest

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ClusterDomain is the cluster's DNS domain, which the node's DNS server
// (dns.go) answers for.
const ClusterDomain = "cluster.local"

// podHostname is a pod's hostname, as kubelet sets it: spec.hostname, or
// else the pod's name, cut to 63 characters; and its fully qualified name
// when it has a subdomain.
func podHostname(p *corev1.Pod) (hostname, fqdn string) {
	hostname = p.Spec.Hostname
	if hostname == "" {
		hostname = p.Name
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	if p.Spec.Subdomain != "" {
		fqdn = fmt.Sprintf("%s.%s.%s.svc.%s", hostname, p.Spec.Subdomain, p.Namespace, ClusterDomain)
	}
	return hostname, fqdn
}

// writeEtc writes the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname
// into its directory, as kubelet makes them, with the node's DNS server as
// the cluster's.
func (r *podRun) writeEtc() error {
	p := r.pod
	hostname, fqdn := podHostname(p)
	r.hostname = hostname
	dir := filepath.Join(r.dir, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var hosts strings.Builder
	hosts.WriteString("# Kubernetes-managed hosts file (kubetest).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if fqdn != "" {
		fmt.Fprintf(&hosts, "%s\t%s\t%s\n", r.ip, fqdn, hostname)
	} else {
		fmt.Fprintf(&hosts, "%s\t%s\n", r.ip, hostname)
	}
	for _, a := range p.Spec.HostAliases {
		fmt.Fprintf(&hosts, "\n# Entries added by HostAliases.\n%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}

	var nameservers, searches, options []string
	switch p.Spec.DNSPolicy {
	case corev1.DNSDefault:
		// The node's own resolver configuration.
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				nameservers = append(nameservers, f[1])
			case "search":
				searches = f[1:]
			case "options":
				options = f[1:]
			}
		}
	case corev1.DNSNone:
	default: // ClusterFirst, and ClusterFirstWithHostNet (no host network here)
		nameservers = []string{r.n.IP}
		searches = []string{p.Namespace + ".svc." + ClusterDomain, "svc." + ClusterDomain, ClusterDomain}
		options = []string{"ndots:5"}
	}
	if c := p.Spec.DNSConfig; c != nil {
		nameservers = append(nameservers, c.Nameservers...)
		searches = append(searches, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				options = append(options, o.Name+":"+*o.Value)
			} else {
				options = append(options, o.Name)
			}
		}
	}
	var resolv strings.Builder
	if len(searches) > 0 {
		fmt.Fprintf(&resolv, "search %s\n", strings.Join(slices.Compact(searches), " "))
	}
	for _, ns := range nameservers {
		fmt.Fprintf(&resolv, "nameserver %s\n", ns)
	}
	if len(options) > 0 {
		fmt.Fprintf(&resolv, "options %s\n", strings.Join(options, " "))
	}
	for name, content := range map[string]string{"hosts": hosts.String(), "resolv.conf": resolv.String(), "hostname": hostname + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sandbox returns the namespaces that container c runs in: the pod's
// network namespace and hostname, and a root with its volumes at their
// mountPaths, the pod's /etc files, and /cert.crt and /cert.key (a serving
// certificate of the cluster's CA, which Istio's echo server reads).
func (r *podRun) sandbox(c *corev1.Container) (*sandbox, error) {
	root, err := os.MkdirTemp(r.dir, "root-")
	if err != nil {
		return nil, err
	}
	var mounts []bindMount
	for _, m := range c.VolumeMounts {
		mounts = append(mounts, bindMount{Target: m.MountPath, Source: filepath.Join(r.dir, "volumes", m.Name, m.SubPath), ReadOnly: m.ReadOnly})
	}
	// A mount below another is made after it; the /etc files after
	// volumes, which may shadow /etc (sandbox.go).
	depth := func(p string) int { return strings.Count(path.Clean(p), "/") }
	slices.SortStableFunc(mounts, func(a, b bindMount) int { return depth(a.Target) - depth(b.Target) })
	etc := filepath.Join(r.dir, "etc")
	for _, m := range []bindMount{
		{Target: "/etc/hosts", Source: filepath.Join(etc, "hosts")},
		{Target: "/etc/resolv.conf", Source: filepath.Join(etc, "resolv.conf")},
		{Target: "/etc/hostname", Source: filepath.Join(etc, "hostname")},
		{Target: "/cert.crt", Source: r.n.certFile, ReadOnly: true},
		{Target: "/cert.key", Source: r.n.keyFile, ReadOnly: true},
	} {
		if !slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return path.Clean(v.MountPath) == m.Target }) {
			mounts = append(mounts, m)
		}
	}
	return &sandbox{Netns: r.ns, Hostname: r.hostname, Root: root, Mounts: mounts}, nil
}

// keyFiles adds to files a volume's files from a ConfigMap's or Secret's
// data: every key, or only the items, each at its path.
func keyFiles(files, data map[string][]byte, items []corev1.KeyToPath) error {
	if len(items) == 0 {
		maps.Copy(files, data)
		return nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %q", it.Key)
		}
		files[it.Path] = b
	}
	return nil
}
