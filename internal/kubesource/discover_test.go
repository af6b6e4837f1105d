package kubesource

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"

	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
)

// TestCRDsInstalledLater: a control plane started before the CRDs were
// installed follows their kinds once the API server serves them, without
// a restart: a Gateway and an HTTPRoute created afterwards reach the sink.
func TestCRDsInstalledLater(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mem := &memory{values: map[string][]byte{}}
	src := startSource(ctx, t, Options{Config: c.Config, Sink: mem, Rediscover: 100 * time.Millisecond})
	if _, ok := src.gvr("HTTPRoute"); ok {
		t.Fatal("HTTPRoute served before its CRD was installed")
	}

	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.CreateCRDs(ctx, t, crds)
	create(ctx, t, dynamic.NewForConfigOrDie(c.Config), `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: trellis
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`)
	want := []string{"resources/Gateway/shop/edge", "resources/HTTPRoute/shop/web"}
	for {
		got := append(mem.keys("resources/Gateway/"), mem.keys("resources/HTTPRoute/")...)
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the sink has %v, want %v: the kinds installed later are not followed", got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSource starts a source until the test ends and waits until it has
// listed the cluster.
func startSource(ctx context.Context, t *testing.T, opts Options) *Source {
	t.Helper()
	src, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srcCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = src.Start(srcCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return src
}
