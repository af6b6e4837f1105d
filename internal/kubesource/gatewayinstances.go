package kubesource

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/internal/model"
)

// A Gateway's addresses and its Programmed condition come from what runs
// it, its instances: on Kubernetes the pods of the Deployment the control
// plane made for it (gatewaydeploy.go), elsewhere the gateway proxies
// registered for it (trellis-proxy --gateway NS/NAME, started by the
// operator or by trellis demo). Either way the Gateway is Programmed only
// when one instance is up and has acknowledged its config.

// GatewayProxy is a gateway proxy registered with the control plane, as
// the control plane reports it in Analysis.Proxies.
type GatewayProxy struct {
	// ID is the proxy's node ID.
	ID string
	// Gateway is the Gateway it serves (--gateway NAMESPACE/NAME).
	Gateway model.Key
	// Address is its registered address (--address), which its
	// listeners bind.
	Address string
	// Connected tells whether its xDS stream is up (a registration
	// outlives its stream for a grace period).
	Connected bool
	// Acked tells whether it has acknowledged a listener config: it
	// serves the Gateway's listeners.
	Acked bool
}

// Instances is what runs a Gateway.
type Instances struct {
	// Addresses clients reach the Gateway on, sorted.
	Addresses []gwv1.GatewayStatusAddress
	// Ready is true when one instance serves the Gateway's config.
	Ready bool
	// Reason and Message explain Ready for the Programmed condition.
	Reason  gwv1.GatewayConditionReason
	Message string
}

// instancesOf returns what runs gw: in.instances, else its registered
// proxies.
func (in *statusInput) instancesOf(gw *gwv1.Gateway) Instances {
	if in.instances != nil {
		return in.instances(gw)
	}
	return RegisteredInstances(model.Key{Namespace: gw.Namespace, Name: gw.Name}, in.Proxies)
}

// RegisteredInstances are the instances of Gateway key off Kubernetes: the
// addresses of its connected proxies; Ready when one of them has
// acknowledged its config.
func RegisteredInstances(key model.Key, proxies []GatewayProxy) Instances {
	var addrs []string
	connected, acked := 0, 0
	for _, p := range proxies {
		if p.Gateway != key || !p.Connected {
			continue
		}
		connected++
		if p.Acked {
			acked++
		}
		addrs = append(addrs, p.Address)
	}
	inst := Instances{Addresses: statusAddresses(addrs, nil)}
	switch {
	case connected == 0:
		inst.Reason = gwv1.GatewayReasonPending
		inst.Message = fmt.Sprintf("no gateway proxy is connected: start trellis-proxy --gateway %s/%s", key.Namespace, key.Name)
	case acked == 0:
		inst.Reason = gwv1.GatewayReasonPending
		inst.Message = fmt.Sprintf("%d gateway proxies connected, none has acknowledged its config yet", connected)
	default:
		inst.Ready, inst.Reason = true, gwv1.GatewayReasonProgrammed
		inst.Message = fmt.Sprintf("%d of %d gateway proxies serve it", acked, connected)
	}
	return inst
}

// podInstances returns what runs a Gateway on Kubernetes: the pods of its
// Deployment. Its addresses are the load-balancer ingress of its Service
// when that has any, else the IPs of its Ready pods; it is Ready when one
// Ready pod's proxy has acknowledged its config. Without a deployer
// (GatewayOptions.Disabled) gateways run elsewhere, and their registered
// proxies count.
func (s *Source) podInstances(proxies []GatewayProxy) func(*gwv1.Gateway) Instances {
	s.awaitingACK = false
	if s.gateways.Disabled {
		return nil
	}
	return func(gw *gwv1.Gateway) Instances {
		key := model.Key{Namespace: gw.Namespace, Name: gw.Name}
		acked := map[string]bool{}
		for _, p := range proxies {
			if p.Gateway == key && p.Connected && p.Acked {
				acked[p.Address] = true
			}
		}
		pods, _ := s.core.Core().V1().Pods().Lister().Pods(gw.Namespace).List(labels.SelectorFromSet(gatewaySelector(gw.Name)))
		var ready []string
		serving := 0
		for _, p := range pods {
			if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(p) {
				continue
			}
			ready = append(ready, p.Status.PodIP)
			if acked[p.Status.PodIP] {
				serving++
			}
		}
		var ingress []corev1.LoadBalancerIngress
		if svc, err := s.core.Core().V1().Services().Lister().Services(gw.Namespace).Get(GatewayObjectName(gw.Name)); err == nil {
			ingress = svc.Status.LoadBalancer.Ingress
		}
		inst := Instances{}
		if len(ingress) > 0 {
			inst.Addresses = statusAddresses(nil, ingress)
		} else {
			inst.Addresses = statusAddresses(ready, nil)
		}
		deploy := gw.Namespace + "/" + GatewayObjectName(gw.Name)
		switch {
		case len(ready) == 0:
			inst.Reason = gwv1.GatewayReasonPending
			inst.Message = fmt.Sprintf("no Ready pod of Deployment %s yet (%d pods)", deploy, len(pods))
		case serving == 0:
			s.awaitingACK = true
			inst.Reason = gwv1.GatewayReasonPending
			inst.Message = fmt.Sprintf("%d Ready pods of Deployment %s, none has acknowledged its config yet", len(ready), deploy)
		default:
			inst.Ready, inst.Reason = true, gwv1.GatewayReasonProgrammed
			inst.Message = fmt.Sprintf("%d of %d Ready pods of Deployment %s serve it", serving, len(ready), deploy)
		}
		return inst
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// statusAddresses turns IPs and load-balancer ingress into status
// addresses, without duplicates, IPs first in order, then host names.
func statusAddresses(ips []string, ingress []corev1.LoadBalancerIngress) []gwv1.GatewayStatusAddress {
	ipType, hostType := gwv1.IPAddressType, gwv1.HostnameAddressType
	var addrs []netip.Addr
	var hosts []string
	for _, ing := range ingress {
		if ing.IP != "" {
			ips = append(ips, ing.IP)
		}
		if ing.Hostname != "" {
			hosts = append(hosts, ing.Hostname)
		}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			addrs = append(addrs, a.Unmap())
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	slices.SortFunc(hosts, func(a, b string) int { return cmp.Compare(strings.ToLower(a), strings.ToLower(b)) })
	hosts = slices.Compact(hosts)
	var out []gwv1.GatewayStatusAddress
	for _, a := range addrs {
		out = append(out, gwv1.GatewayStatusAddress{Type: &ipType, Value: a.String()})
	}
	for _, h := range hosts {
		out = append(out, gwv1.GatewayStatusAddress{Type: &hostType, Value: h})
	}
	return out
}

// GatewayStatus computes the status of Gateway gw from a, with inst
// running it: the one computation of a Gateway's status, which the status
// writer on Kubernetes and the control plane's API off Kubernetes (trellis
// get gateway) share. ok is false when Trellis does not serve gw (its
// class is not one of Trellis's). secret tells whether a TLS Secret
// exists; nil assumes every one does (off Kubernetes, certificates are
// files on the gateway's host).
func GatewayStatus(a *Analysis, gw *gwv1.Gateway, secret func(ns, name string) error) (st gwv1.GatewayStatus, ok bool) {
	in := newStatusInput(a)
	if !in.ours(model.Key{Namespace: gw.Namespace, Name: gw.Name}) {
		return gwv1.GatewayStatus{}, false
	}
	if secret == nil {
		secret = func(string, string) error { return nil }
	}
	return gatewayStatus(gw, in, secret), true
}
