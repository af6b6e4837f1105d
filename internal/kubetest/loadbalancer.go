package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"trellis.dev/trellis/internal/netnstest"
)

// With NodeOptions.LoadBalancers, the node also plays the cloud's load
// balancer, which the pods' network has not (nor kube-proxy): a Service of type LoadBalancer gets an address
// of its own on the test process's loopback (127.200.0.0 to
// 127.249.255.255), written to status.loadBalancer.ingress, and each of
// its TCP ports there forwards connections to a ready endpoint of the
// Service (from its EndpointSlices), dialled from the node's namespace. So
// the test process reaches it with any dialer, as a client outside the
// cluster reaches a load balancer: a Gateway whose Service has the address
// lists it in its status. UDP ports are not forwarded.

// serviceLBs are the node's load balancers, by Service.
type serviceLBs struct {
	n  *Node
	mu sync.Mutex
	by map[types.UID]*serviceLB
}

// serviceLB is one Service's load balancer.
type serviceLB struct {
	ip        string
	listeners map[string]net.Listener // by "port/name"
}

func (n *Node) startLoadBalancers(ctx context.Context) {
	lbs := &serviceLBs{n: n, by: map[types.UID]*serviceLB{}}
	sync := func(obj any) {
		if svc, ok := obj.(*corev1.Service); ok {
			lbs.sync(ctx, svc)
		}
	}
	_, _ = n.records.svcInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    sync,
		UpdateFunc: func(_, obj any) { sync(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok {
				lbs.close(svc.UID)
			}
		},
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		<-ctx.Done()
		lbs.mu.Lock()
		uids := make([]types.UID, 0, len(lbs.by))
		for uid := range lbs.by {
			uids = append(uids, uid)
		}
		lbs.mu.Unlock()
		for _, uid := range uids {
			lbs.close(uid)
		}
	}()
}

func (l *serviceLBs) close(uid types.UID) {
	l.mu.Lock()
	lb := l.by[uid]
	delete(l.by, uid)
	l.mu.Unlock()
	if lb != nil {
		for _, ln := range lb.listeners {
			ln.Close()
		}
	}
}

// sync makes svc's load balancer what its spec says, and its status say
// where.
func (l *serviceLBs) sync(ctx context.Context, svc *corev1.Service) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.DeletionTimestamp != nil {
		l.close(svc.UID)
		return
	}
	var ports []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			ports = append(ports, p)
		}
	}
	l.mu.Lock()
	lb := l.by[svc.UID]
	if lb == nil {
		var err error
		if lb, err = newServiceLB(ports); err != nil {
			l.mu.Unlock()
			l.n.logf("load balancer of %s/%s: %v", svc.Namespace, svc.Name, err)
			return
		}
		l.by[svc.UID] = lb
	}
	want := map[string]bool{}
	for _, p := range ports {
		key := portKey(p)
		want[key] = true
		if lb.listeners[key] == nil {
			ln, err := net.Listen("tcp", net.JoinHostPort(lb.ip, strconv.Itoa(int(p.Port))))
			if err != nil {
				l.n.logf("load balancer of %s/%s: %v", svc.Namespace, svc.Name, err)
				continue
			}
			lb.listeners[key] = ln
		}
	}
	for key, ln := range lb.listeners {
		if !want[key] {
			ln.Close()
			delete(lb.listeners, key)
		}
	}
	var serve []net.Listener
	var servePorts []corev1.ServicePort
	for _, p := range ports {
		if ln := lb.listeners[portKey(p)]; ln != nil {
			serve, servePorts = append(serve, ln), append(servePorts, p)
		}
	}
	ip := lb.ip
	l.mu.Unlock()
	for i, ln := range serve {
		l.serveOnce(ctx, ln, svc.Namespace, svc.Name, servePorts[i].Name)
	}
	if len(svc.Status.LoadBalancer.Ingress) == 1 && svc.Status.LoadBalancer.Ingress[0].IP == ip {
		return
	}
	vip := corev1.LoadBalancerIPModeVIP
	cur := svc.DeepCopy()
	cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: &vip}}
	if _, err := l.n.cs.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		// The next update of the Service tries again.
		l.n.logf("load balancer status of %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}

func portKey(p corev1.ServicePort) string { return fmt.Sprintf("%d/%s", p.Port, p.Name) }

// serving marks the listeners already served.
var serving sync.Map

// serveOnce serves ln, once per listener: each connection goes to a ready
// endpoint of the Service, at the port of the Service port's name.
func (l *serviceLBs) serveOnce(ctx context.Context, ln net.Listener, ns, name, portName string) {
	if _, loaded := serving.LoadOrStore(ln, true); loaded {
		return
	}
	dial := netnstest.Dialer(l.n.NS)
	go func() {
		defer serving.Delete(ln)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				addr, err := l.endpoint(ns, name, portName)
				if err != nil {
					l.n.logf("load balancer of %s/%s: %v", ns, name, err)
					return
				}
				up, err := dial(ctx, "tcp", addr)
				if err != nil {
					l.n.logf("load balancer of %s/%s: %v", ns, name, err)
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(up, c)
					if tc, ok := up.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
					close(done)
				}()
				io.Copy(c, up)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				<-done
			}()
		}
	}()
}

// endpoint picks a ready endpoint of Service ns/name for its port
// portName, as host:port.
func (l *serviceLBs) endpoint(ns, name, portName string) (string, error) {
	var addrs []string
	for _, es := range l.n.records.endpointSlices(ns, name) {
		port := int32(-1)
		for _, p := range es.Ports {
			if p.Port != nil && ptrValue(p.Name) == portName {
				port = *p.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(int(port))))
			}
		}
	}
	if len(addrs) == 0 {
		return "", errors.New("no ready endpoint")
	}
	return addrs[rand.IntN(len(addrs))], nil
}

// newServiceLB picks a loopback address where every port is free.
func newServiceLB(ports []corev1.ServicePort) (*serviceLB, error) {
	for range 100 {
		ip := fmt.Sprintf("127.%d.%d.%d", 200+rand.IntN(50), rand.IntN(256), 1+rand.IntN(254))
		lb := &serviceLB{ip: ip, listeners: map[string]net.Listener{}}
		ok := true
		for _, p := range ports {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
			if err != nil {
				ok = false
				break
			}
			lb.listeners[portKey(p)] = ln
		}
		if ok {
			return lb, nil
		}
		for _, ln := range lb.listeners {
			ln.Close()
		}
	}
	return nil, errors.New("no free loopback address")
}

func ptrValue[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
