package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/nodemeta"
)

// Proxyless gRPC applications subscribe to every type by name, each name
// when it needs it: the Listener of each xds:/// target it dials, the
// routes and clusters those lead to. go-control-plane's snapshot cache in
// ADS mode answers a request only when it names every resource of the
// snapshot, which suits Envoy-style clients and starves gRPC ones. Their
// requests go to a second cache holding the same snapshots, which answers
// with the requested resources it has.
const (
	cacheADS    = "ads"
	cacheByName = "by-name"
)

// classify picks the cache of a request's stream by its node, which
// go-control-plane sets on every request of a stream.
func classify(node *corev3.Node) string {
	kind := node.GetMetadata().GetFields()[nodemeta.Field].GetStructValue().GetFields()["kind"].GetStringValue()
	if kind == nodemeta.KindGRPC {
		return cacheByName
	}
	return cacheADS
}

func newMuxCache(ads, byName cache.Cache) *cache.MuxCache {
	return &cache.MuxCache{
		Classify: func(r *cache.Request) string { return classify(r.GetNode()) },
		// Incremental xDS has no such problem: it names resources.
		ClassifyDelta: func(*cache.DeltaRequest) string { return cacheADS },
		Caches:        map[string]cache.Cache{cacheADS: ads, cacheByName: byName},
	}
}

// consistent is go-control-plane's Snapshot.Consistent, which ignores the
// route configurations that API listeners (the listeners of gRPC clients)
// name: every route configuration and endpoint assignment is referenced,
// and every reference resolves.
func consistent(snap *cache.Snapshot) error {
	refs := cache.GetAllResourceReferences(snap.Resources)
	for _, r := range snap.Resources[types.Listener].Items {
		l, ok := r.Resource.(*listenerv3.Listener)
		if !ok || l.GetApiListener() == nil {
			continue
		}
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
			return fmt.Errorf("api listener %s: %w", l.GetName(), err)
		}
		if name := hcm.GetRds().GetRouteConfigName(); name != "" {
			if refs[resource.RouteType] == nil {
				refs[resource.RouteType] = map[string]bool{}
			}
			refs[resource.RouteType][name] = true
		}
	}
	for typ, typeURL := range map[types.ResponseType]string{types.Route: resource.RouteType, types.Endpoint: resource.EndpointType} {
		items := snap.Resources[typ].Items
		want := refs[typeURL]
		for name := range items {
			if !want[name] {
				return fmt.Errorf("%s %q is not referenced", typeURL, name)
			}
		}
		for name := range want {
			if _, ok := items[name]; !ok {
				return fmt.Errorf("%s %q is referenced but missing", typeURL, name)
			}
		}
	}
	return nil
}
