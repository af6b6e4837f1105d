package main

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/translate"
)

// scopingResult compares one client proxy's config as Trellis scopes it
// (what its namespace, its declared upstreams and their routes pull in)
// with the config it would get unscoped: every port of every service of
// the mesh, as a sidecar gets without scoping (Istio without a Sidecar
// resource). Both are translated in this process from the benchmark's
// mesh; secrets, the same in both, are left out.
type scopingResult struct {
	ScopedBytes       int     `json:"scopedBytes"`
	UnscopedBytes     int     `json:"unscopedBytes"`
	Ratio             float64 `json:"ratio"` // unscoped / scoped
	ScopedResources   int     `json:"scopedResources"`
	UnscopedResources int     `json:"unscopedResources"`
	// Translation time of each, for one proxy, on this machine.
	ScopedTranslateSeconds   float64 `json:"scopedTranslateSeconds"`
	UnscopedTranslateSeconds float64 `json:"unscopedTranslateSeconds"`
}

// scoping measures proxy 0's config both ways.
func (l layout) scoping() (*scopingResult, error) {
	meshDoc, _ := l.meshYAML()
	wlDoc, _ := l.workloadsYAML()
	var objs []*resource.Object
	for name, doc := range map[string][]byte{"mesh.yaml": meshDoc, "workloads.yaml": wlDoc} {
		o, err := resource.Decode(name, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	cfg, err := resource.Model(objs)
	if err != nil {
		return nil, fmt.Errorf("scoping: the benchmark's mesh: %w", err)
	}
	ix := model.NewIndex(cfg)
	proxy := func(ups []model.Upstream) *model.Proxy {
		return &model.Proxy{
			ID: l.proxyID(0), Kind: model.KindSidecar, OutboundAddress: "127.0.0.1", Upstreams: ups,
			Workload: model.Workload{
				Key: model.Key{Namespace: l.proxyNamespace(0), Name: l.proxyName(0)}, ServiceAccount: l.proxyName(0),
				Address: proxyAddress(0), Labels: map[string]string{"app": "bench-client"},
			},
		}
	}
	var scoped, unscoped []model.Upstream
	for k, s := range l.upstreams(0) {
		scoped = append(scoped, model.Upstream{Service: l.service(s), Port: 80, LocalPort: uint32(10001 + k)})
	}
	for _, s := range cfg.Services {
		for _, sp := range s.Ports {
			unscoped = append(unscoped, model.Upstream{Service: s.Key, Port: sp.Port, LocalPort: uint32(10001 + len(unscoped))})
		}
	}
	measure := func(ups []model.Upstream) (bytes, n int, secs float64) {
		start := time.Now()
		res, _ := translate.Translate(translate.Input{Config: cfg, Index: ix, Proxy: proxy(ups)}, translate.Options{})
		secs = time.Since(start).Seconds()
		add := func(m proto.Message) {
			bytes += proto.Size(m)
			n++
		}
		for _, r := range res.Listeners {
			add(r)
		}
		for _, r := range res.Routes {
			add(r)
		}
		for _, r := range res.Clusters {
			add(r)
		}
		for _, r := range res.Endpoints {
			add(r)
		}
		return bytes, n, secs
	}
	r := &scopingResult{}
	r.ScopedBytes, r.ScopedResources, r.ScopedTranslateSeconds = measure(scoped)
	r.UnscopedBytes, r.UnscopedResources, r.UnscopedTranslateSeconds = measure(unscoped)
	if r.ScopedBytes > 0 {
		r.Ratio = float64(r.UnscopedBytes) / float64(r.ScopedBytes)
	}
	return r, nil
}
