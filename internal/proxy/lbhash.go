package proxy

import (
	"context"
	"net/http"

	"trellis.dev/trellis/internal/proxy/route"
)

// lbHashKey carries a request's load balancing hash in its context, from
// the router to the cluster's load balancer.
type lbHashKey struct{}

// withLBHash computes the hash of r by rt's hash policies, as Envoy's
// router does, and puts it in ctx for a RING_HASH cluster. Without hash
// policies, or when none yields a value, ctx is unchanged and the load
// balancer picks at random.
func withLBHash(ctx context.Context, rt *route.Route, r *http.Request) context.Context {
	if len(rt.HashPolicy) == 0 {
		return ctx
	}
	if h, ok := rt.Hash(r); ok {
		return context.WithValue(ctx, lbHashKey{}, h)
	}
	return ctx
}

func lbHashFrom(ctx context.Context) (uint64, bool) {
	h, ok := ctx.Value(lbHashKey{}).(uint64)
	return h, ok
}
