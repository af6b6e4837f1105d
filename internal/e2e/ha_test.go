package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/etcdtest"
)

// haMesh is web and catalog, catalog in two versions with a Service each.
const haMesh = twoServices + `---
apiVersion: v1
kind: Service
metadata: {name: catalog-v1, namespace: demo}
spec:
  selector: {app: catalog, version: v1}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog-v2, namespace: demo}
spec:
  selector: {app: catalog, version: v2}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

// catalogRoute sends every call to catalog to one version.
func catalogRoute(version string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catalog, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: catalog, port: 80}]
  rules:
  - backendRefs: [{name: catalog-` + version + `, port: 80}]
`
}

// TestHighAvailability runs two control planes on a three-member etcd
// cluster with one CA. Each serves half of the proxies; every proxy knows
// both. Config applied through one is served by the other; losing an etcd
// member changes nothing; losing etcd leaves both serving the last config
// and not ready, until it returns; losing a control plane moves its
// proxies to the other without dropping a request.
func TestHighAvailability(t *testing.T) {
	s := newSubnet(t)
	etcd := etcdtest.Start(t, s.ip(21), s.ip(22), s.ip(23))
	caDir := filepath.Join(t.TempDir(), "ca")
	at := func(host byte) func(*control.Options) {
		return func(o *control.Options) {
			o.XDSAddress = net.JoinHostPort(s.ip(host), "15012")
			o.DebugAddress = net.JoinHostPort(s.ip(host), "15014")
			o.EtcdEndpoints = etcd.Endpoints()
			o.CADir = caDir
		}
	}
	// A creates the CA; B starts after it and uses the same.
	a := startControlPlane(t, s, t.TempDir(), at(1))
	b := startControlPlane(t, s, t.TempDir(), at(2))
	a.apply(t, haMesh)

	// Each control plane serves one web and one catalog; each proxy falls
	// back to the other control plane.
	startWorkload(t, s, a, sidecar{name: "web-a", service: "web", account: "web", version: "v1", host: 11, next: "catalog", also: []*controlPlane{b}})
	startWorkload(t, s, a, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 13, also: []*controlPlane{b}})
	startWorkload(t, s, b, sidecar{name: "web-b", service: "web", account: "web", version: "v1", host: 12, next: "catalog", also: []*controlPlane{a}})
	startWorkload(t, s, b, sidecar{name: "catalog-2", service: "catalog", account: "catalog", version: "v2", host: 14, also: []*controlPlane{a}})
	webA := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	webB := "http://" + net.JoinHostPort(s.ip(12), "8080") + "/"

	// Registrations are shared: each web reaches both catalogs, one of
	// them registered with the other control plane.
	for _, web := range []string{webA, webB} {
		seen := map[string]bool{}
		eventually(t, 30*time.Second, web+" reaches both catalogs", func() error {
			w, err := catalogOf(web)
			if err != nil {
				return err
			}
			seen[w] = true
			if !seen["catalog-1"] || !seen["catalog-2"] {
				return fmt.Errorf("answered so far by %v", seen)
			}
			return nil
		})
	}
	checkConnected(t, a, "web-a.demo", "catalog-1.demo")
	checkConnected(t, b, "web-b.demo", "catalog-2.demo")

	// Config applied through one control plane is served by the other.
	a.apply(t, catalogRoute("v2"))
	onlyCatalog(t, webB, "catalog-2")
	b.apply(t, catalogRoute("v1"))
	onlyCatalog(t, webA, "catalog-1")

	// Background calls run through each failure below, and all of them
	// must succeed. They pause for route changes, which
	// TestRouteChangesUnderTraffic covers.

	// Killing one etcd member, the leader, changes nothing once the others
	// have elected a new one (writes are refused during the election).
	tr := startTraffic(t, webA, webB)
	etcd.Kill(etcd.Leader(t))
	etcd.Leader(t)
	for _, cp := range []*controlPlane{a, b} {
		eventually(t, 10*time.Second, cp.api+" ready with one etcd member down", func() error { return ready(cp) })
	}
	tr.stop(t, "while an etcd member was killed")
	a.apply(t, catalogRoute("v2"))
	onlyCatalog(t, webA, "catalog-2")
	onlyCatalog(t, webB, "catalog-2")

	// Without etcd, both control planes keep their proxies and the config
	// they have, refuse changes, and say they are not ready.
	tr = startTraffic(t, webA, webB)
	var running []int
	for i := range etcd.Members {
		if etcd.Running(i) {
			running = append(running, i)
		}
	}
	etcd.Kill(running...)
	for _, cp := range []*controlPlane{a, b} {
		eventually(t, 20*time.Second, cp.api+" not ready without etcd", func() error {
			err := ready(cp)
			if err == nil {
				return errors.New("ready")
			}
			if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "etcd unavailable") {
				return fmt.Errorf("/ready: %v, want 503 naming etcd", err)
			}
			t.Logf("%s/ready: %v", cp.api, err)
			return nil
		})
	}
	_, err := b.client(t).Apply(context.Background(), controlapi.ApplyRequest{Files: []controlapi.File{{Name: "route.yaml", Content: catalogRoute("v1")}}})
	if err == nil || !strings.Contains(err.Error(), "etcd unavailable") {
		t.Errorf("apply without etcd: %v, want a failure naming etcd", err)
	}
	t.Logf("apply without etcd: %v", err)
	onlyCatalog(t, webA, "catalog-2")
	onlyCatalog(t, webB, "catalog-2")
	checkConnected(t, a, "web-a.demo", "catalog-1.demo")
	checkConnected(t, b, "web-b.demo", "catalog-2.demo")

	// etcd returns: ready again, and changes flow again through both.
	etcd.Restart(running...)
	for _, cp := range []*controlPlane{a, b} {
		eventually(t, 20*time.Second, cp.api+" ready after etcd returned", func() error { return ready(cp) })
	}
	tr.stop(t, "while etcd was down and came back")
	b.apply(t, catalogRoute("v1"))
	onlyCatalog(t, webA, "catalog-1")
	onlyCatalog(t, webB, "catalog-1")

	// Stopping control plane A moves its proxies to B, which serves them
	// the same config: no call fails.
	tr = startTraffic(t, webA, webB)
	a.stop()
	checkConnected(t, b, "web-a.demo", "web-b.demo", "catalog-1.demo", "catalog-2.demo")
	tr.stop(t, "while control plane A stopped")
	b.apply(t, catalogRoute("v2"))
	onlyCatalog(t, webA, "catalog-2")
}

// catalogOf calls web and returns the catalog workload that answered.
func catalogOf(web string) (string, error) {
	c, err := getChain(web)
	if err != nil {
		return "", err
	}
	if len(c.Hops) != 2 {
		return "", fmt.Errorf("chain %+v: want 2 hops", c)
	}
	return c.Hops[1].Workload, nil
}

// onlyCatalog waits until ten calls in a row through web are answered by
// the catalog workload want.
func onlyCatalog(t *testing.T, web, want string) {
	t.Helper()
	eventually(t, 30*time.Second, web+" answered only by "+want, func() error {
		for range 10 {
			got, err := catalogOf(web)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("answered by %s", got)
			}
		}
		return nil
	})
}

// checkConnected waits until the proxies ids are connected to cp and have
// acknowledged their latest config.
func checkConnected(t *testing.T, cp *controlPlane, ids ...string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%v connected to %s and SYNCED", ids, cp.xds), func() error {
		list, err := cp.client(t).Proxies(context.Background())
		if err != nil {
			return err
		}
		for _, id := range ids {
			i := slices.IndexFunc(list, func(p controlapi.ProxyStatus) bool { return p.ID == id })
			if i < 0 || !list[i].Connected {
				return fmt.Errorf("%s not connected", id)
			}
			for _, ty := range list[i].Types {
				if ty.State != "SYNCED" && ty.State != "NOT SENT" {
					return fmt.Errorf("%s %s is %s", id, ty.Type, ty.State)
				}
			}
		}
		return nil
	})
}

// ready returns nil if cp's /ready answers 200, else its status and body.
func ready(cp *controlPlane) error {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + cp.api + controlapi.PathReady)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// traffic calls webs in turn in the background and records failures.
type traffic struct {
	mu       sync.Mutex
	failures []string
	calls    int
	cancel   context.CancelFunc
	done     chan struct{}
}

func startTraffic(t *testing.T, webs ...string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for i := 0; ctx.Err() == nil; i++ {
			web := webs[i%len(webs)]
			_, err := catalogOf(web)
			tr.mu.Lock()
			tr.calls++
			if err != nil && ctx.Err() == nil {
				tr.failures = append(tr.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), web, err))
			}
			tr.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { tr.cancel(); <-tr.done })
	return tr
}

// stop ends the calls and reports those that failed.
func (tr *traffic) stop(t *testing.T, during string) {
	t.Helper()
	tr.cancel()
	<-tr.done
	if tr.calls == 0 {
		t.Errorf("no calls %s", during)
	}
	if len(tr.failures) > 0 {
		t.Errorf("%d of %d calls failed %s:\n%s", len(tr.failures), tr.calls, during, strings.Join(tr.failures, "\n"))
	}
}
