// Package proxy is the Trellis data plane: the same code runs as a sidecar
// in front of one workload and as a gateway for one Gateway resource. It is
// configured entirely over xDS with Envoy v3 resources and implements the
// subset of their semantics the control plane generates; anything else in
// the config is rejected (NACK) rather than silently ignored, and the proxy
// keeps serving its last good config.
//
//	control plane ══ADS══► xdsclient ──Apply──► Proxy
//	                                              ├─ listeners (accept; listener filters: original_dst,
//	                                              │    tls_inspector, http_inspector (inspect.go);
//	                                              │    filter chain match; TLS)
//	                                              │    ├─ network filters (RBAC) per connection
//	                                              │    ├─ HTTP connection manager: path normalization,
//	                                              │    │    HTTP filters (fault, RBAC, CORS, local rate limit),
//	                                              │    │    router (forward.go) ──route.Table──────────────┐
//	                                              │    └─ TCP proxy ───────────────────────────────────────┤
//	                                              ├─ clusters ◄────────────────────────────────────────────┘
//	                                              │    endpoints by priority, round robin | least request | ring hash (lb.go),
//	                                              │    circuit breakers and retry budget (circuitbreaker.go, retrybudget.go),
//	                                              │    outlier detection (outlier.go), upstream idle timeout, mTLS
//	                                              ├─ secrets (key, SVID, trust bundle)
//	                                              │    └─ SPIFFE Workload API on a UNIX socket (workloadapi.go)
//	                                              └─ gateway listener certificates from files, reloaded
//	                                                   when they change (gatewaytls.go, certfiles)
//
// The HTTP path runs the HTTP filters (fault injection, fault.go; RBAC,
// access.go; CORS, cors.go; local rate limit, ratelimit.go), which
// register themselves
// (httpfilter.go), and the router: a request
// that matched a forwarding route goes to its cluster in attempts governed
// by the route's retry_policy and timeouts (forward.go), each attempt to
// one endpoint, with the body kept up to 1 MiB so that it can be sent
// again (requestbody.go); sampled requests are copied to the route's
// mirrors (mirror.go).
//
// Every request and TCP connection is counted and logged (telemetry.go,
// accesslog.go, trace.go); the stats port serves the metrics and forwards
// kubelet probes to the app (statsport.go).
//
// Listeners follow Envoy's filter chain match (destination port,
// destination address, server name, transport protocol, application
// protocols) with a default chain; the inspectors peek at the first bytes
// within listener_filters_timeout and replay them. Transparent capture
// rests on the original destination (SO_ORIGINAL_DST, origdst_linux.go)
// and ORIGINAL_DST clusters; Options.SocketMark marks the proxy's own
// connections so that the capture rules let them through. HTTP/1.1 and
// HTTP/2 (ALPN h2 over TLS, h2c in plaintext) are served downstream;
// clusters with http2_protocol_options speak HTTP/2 upstream.
//
// Downstream TLS is mesh mTLS with the proxy's own certificate, or, on a
// gateway's HTTPS listener, TLS with certificates named
// gateway-cert/NAMESPACE/NAME that the proxy reads from
// Options.GatewayCertsDir: the control plane never holds their keys.
//
// Config is applied per xDS type and swapped atomically: connections in
// flight keep the config they started with. Only the resources that
// changed are compiled (an endpoint update touches only its clusters'
// endpoint sets, a listener's unchanged filter chains are kept), and the
// proxy keeps the resources themselves only serialized, compressed after
// large updates (rawstore.go); docs/dataplane.md says where its memory
// goes. The package never imports the control plane, Kubernetes or etcd;
// a dependency test in cmd/trellis-proxy enforces it.
package proxy
