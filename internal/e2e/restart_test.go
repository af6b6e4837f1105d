package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/store"
)

const twoServices = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: demo}
spec:
  selector: {app: catalog}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

// TestProxyServesLastConfigWithoutControlPlane stops the control plane
// under running traffic: the proxies keep serving what they have. When it
// returns on the same data directory, they reconnect, re-register, and
// follow new config again.
func TestProxyServesLastConfigWithoutControlPlane(t *testing.T) {
	s := newSubnet(t)
	dataDir := t.TempDir()
	cp := startControlPlane(t, s, dataDir)
	cp.apply(t, twoServices)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})

	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	checkChain := func(wantCatalog ...string) error {
		c, err := getChain(web)
		if err != nil {
			return err
		}
		if len(c.Hops) != 2 {
			return fmt.Errorf("chain %+v: want 2 hops", c)
		}
		if got, want := c.Hops[1].Caller, "spiffe://cluster.local/ns/demo/sa/web"; got != want {
			return fmt.Errorf("catalog's sidecar verified %q, want %q", got, want)
		}
		for _, w := range wantCatalog {
			if c.Hops[1].Workload == w {
				return nil
			}
		}
		return fmt.Errorf("answered by %s, want one of %v", c.Hops[1].Workload, wantCatalog)
	}
	eventually(t, 30*time.Second, "web → catalog over mTLS", func() error { return checkChain("catalog-1") })

	cp.stop()
	// A control plane that stops keeps the registrations of the proxies
	// still running, for the next one to serve from the start.
	st, err := store.Open(context.Background(), store.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	regs, _, err := st.List(context.Background(), "proxies/")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 {
		var keys []string
		for _, r := range regs {
			keys = append(keys, r.Key)
		}
		t.Errorf("after the control plane stopped, the stored registrations are %v, want web-1 and catalog-1", keys)
	}
	for i := range 20 {
		if err := checkChain("catalog-1"); err != nil {
			t.Fatalf("request %d with the control plane stopped: %v", i, err)
		}
	}

	cp = startControlPlane(t, s, dataDir)
	// A workload that registers with the new control plane must become
	// reachable from the proxy that kept running: it resynced.
	startWorkload(t, s, cp, sidecar{name: "catalog-2", service: "catalog", account: "catalog", version: "v2", host: 13})
	seen := map[string]bool{}
	eventually(t, 45*time.Second, "traffic reaches the workload registered after the restart", func() error {
		c, err := getChain(web)
		if err != nil {
			return err
		}
		seen[c.Hops[1].Workload] = true
		if !seen["catalog-1"] || !seen["catalog-2"] {
			return fmt.Errorf("answered so far by %v", seen)
		}
		return nil
	})
	eventually(t, 30*time.Second, "every proxy SYNCED", func() error {
		list, err := cp.client(t).Proxies(context.Background())
		if err != nil {
			return err
		}
		if len(list) != 3 {
			return fmt.Errorf("%d proxies known, want 3", len(list))
		}
		for _, p := range list {
			if !p.Connected {
				return fmt.Errorf("%s not connected", p.ID)
			}
			for _, ty := range p.Types {
				if ty.State != "SYNCED" && ty.State != "NOT SENT" {
					return fmt.Errorf("%s %s is %s: %+v", p.ID, ty.Type, ty.State, ty)
				}
			}
		}
		return nil
	})
}

// TestRegistrationGrace stops a proxy: its workload stays registered for
// the grace period (long enough to reconnect without its endpoints
// flapping), then goes.
func TestRegistrationGrace(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir(), func(o *control.Options) { o.RegistrationGrace = 2 * time.Second })
	cp.apply(t, twoServices)
	stop := startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	proxy := func() (*controlapi.ProxyStatus, error) {
		list, err := cp.client(t).Proxies(context.Background())
		if err != nil {
			return nil, err
		}
		for _, p := range list {
			if p.ID == "catalog-1.demo" {
				return &p, nil
			}
		}
		return nil, nil
	}
	eventually(t, 30*time.Second, "catalog-1 connected", func() error {
		if p, err := proxy(); err != nil || p == nil || !p.Connected {
			return fmt.Errorf("%+v, %v", p, err)
		}
		return nil
	})
	stop()
	eventually(t, 10*time.Second, "catalog-1 disconnected but still registered", func() error {
		if p, err := proxy(); err != nil || p == nil || p.Connected {
			return fmt.Errorf("%+v, %v", p, err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "catalog-1 deregistered after the grace period", func() error {
		if p, err := proxy(); err != nil || p != nil {
			return fmt.Errorf("still there: %+v, %v", p, err)
		}
		return nil
	})
}

// TestRouteChangesUnderTraffic moves all of catalog's traffic from one
// version to the other and back, ten times, under continuous calls: the
// clusters and the routes reach the proxy in separate xDS responses, and
// no call may fail in between (make before break).
func TestRouteChangesUnderTraffic(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, haMesh)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	startWorkload(t, s, cp, sidecar{name: "catalog-2", service: "catalog", account: "catalog", version: "v2", host: 13})
	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	cp.apply(t, catalogRoute("v1"))
	onlyCatalog(t, web, "catalog-1")

	tr := startTraffic(t, web)
	for i := range 10 {
		version, workload := "v2", "catalog-2"
		if i%2 == 1 {
			version, workload = "v1", "catalog-1"
		}
		cp.apply(t, catalogRoute(version))
		onlyCatalog(t, web, workload)
	}
	tr.stop(t, "while the route moved between versions")
}

// TestPushesOnlyAffectedProxies changes the route of one service: only
// the proxy that calls it gets its config rebuilt, not every proxy.
func TestPushesOnlyAffectedProxies(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, haMesh)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	startWorkload(t, s, cp, sidecar{name: "catalog-2", service: "catalog", account: "catalog", version: "v2", host: 13})
	web := "http://" + net.JoinHostPort(s.ip(11), "8080") + "/"
	cp.apply(t, catalogRoute("v1"))
	onlyCatalog(t, web, "catalog-1")
	time.Sleep(500 * time.Millisecond) // let pending rounds finish

	metric := func(name string) float64 {
		resp, err := http.Get("http://" + cp.api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		total := 0.0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
				var v float64
				fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
				total += v
			}
		}
		return total
	}
	pushes := func() float64 { return metric("trellis_control_proxy_pushes_total") }
	before := pushes()
	cp.apply(t, catalogRoute("v2"))
	onlyCatalog(t, web, "catalog-2")
	time.Sleep(500 * time.Millisecond)
	if got := pushes() - before; got != 1 {
		t.Errorf("a route change of catalog rebuilt %v proxy configs, want 1 (web-1, its only caller)", got)
	}

	// An endpoint change (a new catalog v2 instance without a sidecar)
	// concerns the callers of the services it joins, not every proxy of
	// its namespace.
	translations := func() float64 { return metric("trellis_control_translate_seconds_count") }
	before = translations()
	cp.apply(t, `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: catalog-vm, namespace: demo, labels: {app: catalog, version: v2}}
spec:
  address: `+s.ip(20)+`
  ports: [{name: http, port: 8080, protocol: HTTP}]
`)
	time.Sleep(500 * time.Millisecond)
	if got := translations() - before; got != 1 {
		t.Errorf("an endpoint change of catalog-v2 translated %v proxy configs, want 1 (web-1, its only caller)", got)
	}

	// Endpoint churn refreshes the endpoints of web-1's config, and
	// nothing else: the workload's address moves, then it goes.
	refreshed := func() float64 { return metric(`trellis_control_endpoint_refreshes_total{outcome="refreshed"}`) }
	acked := func(addr string, want bool) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("web-1 acked endpoints with %s: %v", addr, want), func() error {
			cfgs, err := cp.client(t).ProxyConfig(context.Background(), "web-1.demo", "EDS")
			if err != nil {
				return err
			}
			for _, c := range cfgs {
				if c.Acked.Version != c.Sent.Version {
					return fmt.Errorf("%s not acked yet", c.Type)
				}
				has := false
				for _, r := range c.Acked.Resources {
					has = has || strings.Contains(string(r), `"`+addr+`"`)
				}
				if has != want {
					return fmt.Errorf("acked endpoints hold %s: %v", addr, has)
				}
			}
			return nil
		})
	}
	acked(s.ip(20), true)
	before, beforeRefreshed := translations(), refreshed()
	cp.apply(t, `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: catalog-vm, namespace: demo, labels: {app: catalog, version: v2}}
spec:
  address: `+s.ip(21)+`
  ports: [{name: http, port: 8080, protocol: HTTP}]
`)
	acked(s.ip(21), true)
	acked(s.ip(20), false)
	if got := refreshed() - beforeRefreshed; got != 1 {
		t.Errorf("an address change refreshed %v proxy configs, want 1 (web-1)", got)
	}
	if got := translations() - before; got != 1 {
		t.Errorf("an address change built %v proxy configs, want 1 (web-1)", got)
	}
	beforeRefreshed = refreshed()
	if _, err := cp.client(t).Delete(context.Background(), "Workload", "demo", "catalog-vm", false); err != nil {
		t.Fatal(err)
	}
	acked(s.ip(21), false)
	if got := refreshed() - beforeRefreshed; got != 1 {
		t.Errorf("a removed endpoint refreshed %v proxy configs, want 1 (web-1)", got)
	}
	onlyCatalog(t, web, "catalog-2")
}
