package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/bench/internal/load"
	"trellis.dev/trellis/bench/internal/meshproc"
	"trellis.dev/trellis/internal/controlapi"
)

// The memory of a sidecar that sees a large mesh: a sidecar in capture
// mode (--capture), which is what a sidecar is when the capture rules of
// `trellis-proxy init` redirect its workload's traffic, gets every Service
// of the mesh, as Istio's sidecars do by default: for each Service a
// chain on its ClusterIP in the outbound capture listener, its routes
// (RDS), its cluster and its endpoints (EDS); for each endpoint with a
// sidecar a cluster of its own (mTLS straight to that workload) and a
// chain matching its address. A sidecar with declared upstreams gets only
// those and would say nothing about scale.
const (
	fleetIP        = "127.0.0.6" // the capture sidecar
	fleetNamespace = "fleet"
	// fleetEndpoints is the endpoints of each Service, each a Workload
	// with a sidecar (mesh port).
	fleetEndpoints = 2
)

// fleetMesh is services Services in the namespace fleet, svc-0…, each
// with a ClusterIP, an HTTP port, a mesh HTTPRoute (a header match to one
// rule, the rest to another) and fleetEndpoints Workloads.
func fleetMesh(services int) string {
	var b strings.Builder
	addr := func(base uint32, i int) string {
		v := base + uint32(i)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	for i := range services {
		svc := "svc-" + strconv.Itoa(i)
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  clusterIP: %[3]s
  selector: {app: %[1]s}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  parentRefs: [{group: "", kind: Service, name: %[1]s, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: "true"}]}]
    timeouts: {request: 5s}
    backendRefs: [{name: %[1]s, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: %[1]s, port: 80}]
---
`, svc, fleetNamespace, addr(0x0a600000, i)) // ClusterIPs in 10.96.0.0/16
		for k := range fleetEndpoints {
			fmt.Fprintf(&b, `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: %[1]s-%[2]d, namespace: %[3]s, labels: {app: %[1]s}}
spec:
  address: %[4]s
  serviceAccount: %[1]s
  ports: [{name: http, port: 8080, protocol: HTTP}]
  meshPort: 15008
---
`, svc, k, fleetNamespace, addr(0x0a010000, i*fleetEndpoints+k)) // 10.1.0.0/16
		}
	}
	return strings.TrimSuffix(b.String(), "---\n")
}

// fleetResult is what measureFleet found.
type fleetResult struct {
	Services int     `json:"services"`
	RSSMB    float64 `json:"rss_mb"`
	// Resources counts the xDS resources the sidecar acknowledged, by
	// type (CDS, EDS, LDS, RDS, SDS), as the control plane reports them.
	Resources map[string]int `json:"resources"`
	// Bytes is what the control plane sent it, all types.
	Bytes int64 `json:"xds_bytes"`
}

// measureFleet applies a mesh of `services` Services to the control
// plane, starts a capture-mode sidecar that sees them all, waits until it
// has acknowledged every type, lets it settle and reads its RSS. The
// sidecar is stopped before it returns. With heapProfile set, its heap
// profile is written there.
func measureFleet(ctx context.Context, dir, proxy, xds string, api *controlapi.Client, services int, heapProfile string) (*fleetResult, error) {
	if _, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "fleet.yaml", Content: fleetMesh(services)}}}); err != nil {
		return nil, fmt.Errorf("applying %d services: %w", services, err)
	}
	made, err := api.CreateTokens(ctx, []controlapi.TokenSpec{{Namespace: fleetNamespace, ServiceAccount: "capture"}})
	if err != nil {
		return nil, fmt.Errorf("making a join token: %w", err)
	}
	if err := os.WriteFile(meshproc.TokenFile(dir, "capture"), []byte(made[0].Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	outPort, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	inPort, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--control-plane", xds, "--ca-bundle", meshproc.CABundle(dir), "--namespace", fleetNamespace,
		"--name", "capture-1", "--service-account", "capture", "--label", "app=capture", "--token-file", meshproc.TokenFile(dir, "capture"),
		"--address", fleetIP, "--app-address", fleetIP, "--outbound-address", fleetIP,
		"--admin-address", fleetIP + ":15000",
		"--capture", "--outbound-capture-port", strconv.Itoa(outPort), "--inbound-capture-port", strconv.Itoa(inPort),
		"--port", "http:8080/HTTP",
	}
	args = append(args, meshproc.QuietArgs(proxy)...)
	sc, err := benchproc.Start(dir, "capture-sidecar", proxy, args...)
	if err != nil {
		return nil, err
	}
	defer sc.Stop()
	res := &fleetResult{Services: services, Resources: map[string]int{}}
	id := "capture-1." + fleetNamespace
	if err := benchproc.WaitFor(ctx, 2*time.Minute, "the capture sidecar to acknowledge its config", func() error {
		if err := sc.Exited(); err != nil {
			return err
		}
		ps, err := api.Proxies(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.ID != id {
				continue
			}
			if !p.Connected {
				return fmt.Errorf("%s not connected", id)
			}
			res.Bytes = 0
			for _, t := range p.Types {
				if t.State != "SYNCED" {
					return fmt.Errorf("%s %s: %s", id, t.Type, t.State)
				}
				res.Bytes += t.Bytes
			}
			return nil
		}
		return fmt.Errorf("%s not registered", id)
	}); err != nil {
		return nil, err
	}
	// How many resources of each type the sidecar holds, from its
	// config as the control plane keeps it (not from the sidecar: asking
	// it for a config dump would grow its memory).
	cfgs, err := api.ProxyConfig(ctx, id, "")
	if err != nil {
		return nil, err
	}
	for _, c := range cfgs {
		res.Resources[c.Type] = len(c.Acked.Resources)
	}
	if res.Resources["CDS"] < services {
		return nil, fmt.Errorf("the capture sidecar has %d clusters for %d services", res.Resources["CDS"], services)
	}
	// As the idle figures: a moment to settle after the last update.
	time.Sleep(2 * time.Second)
	res.RSSMB = load.Round(benchproc.RSSMB(sc.Pid()), 1)
	if heapProfile != "" {
		// The profile, and the runtime's memory statistics as text, after
		// a collection (gc=1), so that they show what is live; RSS was
		// read before.
		meshproc.Save(fleetIP+":15000/debug/pprof/heap?gc=1", heapProfile)
		meshproc.Save(fleetIP+":15000/debug/pprof/heap?gc=1&debug=1", heapProfile+".txt")
	}
	return res, nil
}
