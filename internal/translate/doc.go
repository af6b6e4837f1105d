// Package translate turns the normalized mesh model into the Envoy v3
// resources one proxy needs: Listeners, RouteConfigurations, Clusters,
// ClusterLoadAssignments and Secrets.
//
//	model.Config + model.Proxy ──► Translate ──► Resources ──► xds snapshot
//
// It is pure and deterministic: the same input gives byte-identical output,
// so versions derived from the output change only when the config does.
// Every resource it returns passes the generated ValidateAll; a resource that
// cannot be built completely is left out and reported as a Problem, never
// pushed half-built.
//
// A sidecar gets:
//   - inbound_mesh: one mTLS listener on the workload's mesh port, a filter
//     chain per service port the workload serves, chosen by SNI, each
//     forwarding to the app through a static inbound|PORT|| cluster; HTTP
//     chains normalize the path (normalize_path, merge_slashes, escaped
//     slashes refused) before anything matches on it;
//   - on each inbound chain, the AccessPolicies that select the workload
//     (model.Index.PolicySelects, as the analyzer resolves them) as RBAC
//     filters before the router or tcp_proxy (access.go): AUDIT as action
//     LOG, then DENY, then ALLOW when any ALLOW policy selects the
//     workload (no rule: deny everything). Principals are the peer's SPIFFE
//     ID from the handshake (exact, prefix for a trailing *, namespace as
//     the prefix spiffe://TD/ns/NS/sa/); ports are resolved per chain
//     rather than with destination_port, which would be the shared mesh
//     port; on TCP chains a target's HTTP-only conditions make it never
//     match for ALLOW and are left out for DENY and AUDIT; where rules
//     match paths, paths with parameters (;) are denied;
//   - one explicit outbound listener per declared upstream, on its
//     OutboundAddress, routing HTTP by the routes attached to the service
//     (GAMMA) or forwarding TCP, split by the TCPRoute attached to the
//     service port when there is one (tcproutes.go);
//   - with capture ports in its registration, the capture listeners
//     (capture.go): outbound_capture, matching each mesh workload's
//     address and port to a cluster of that workload (mTLS with its
//     identity and SNI, to its mesh port; pod IP to pod IP) and passing
//     the rest through; inbound_capture, per app port by its MTLSPolicy
//     mode (model.MTLSModeFor): STRICT refuses plaintext, PERMISSIVE
//     tells mTLS from plaintext by the ClientHello, DISABLE forwards; on
//     ports with no declared protocol the http_inspector tells HTTP from
//     TCP within ProtocolDetectionTimeout;
//   - clusters toward HTTP2 and GRPC ports speak HTTP/2
//     (http2_protocol_options); toward ports with no declared protocol,
//     the version each request came in with (use_downstream_protocol_config),
//     and inbound_mesh has for such a port a chain matching ALPN h2 with
//     a connection manager, so that gRPC keeps HTTP/2 end to end;
//   - a backend in another namespace only with a ReferenceGrant there
//     (model.Index.Granted, as the analyzer checks it);
//   - outbound|PORT||HOST clusters with EDS endpoints; mesh endpoints are
//     reached over mTLS on their mesh port with an SNI naming the service
//     port, plain endpoints in plaintext.
//
// The BackendPolicy of a service port (model.BackendPoliciesFor: a
// sectionName over the whole Service, then the oldest, then the name;
// losers are reported) shapes its cluster and the routes toward it
// (backendpolicy.go, cluster.go):
//   - loadBalancer: ROUND_ROBIN, LEAST_REQUEST (choice_count 2), or RING_HASH
//     with a header or cookie hash_policy on every route to the cluster;
//   - connectionLimits and retryBudget: circuit_breakers thresholds;
//   - outlierDetection: consecutive 5xx and, split, local-origin failures,
//     success-rate ejection off; with it, and when the proxy knows its
//     locality, endpoints go into priorities: same subzone 0, zone 1,
//     region 2, others 3 (empty priorities skipped). EDS output then
//     depends on the proxy's locality, which is part of its registration:
//     it is built per proxy, like everything else here;
//   - idleTimeout: HttpProtocolOptions common_http_protocol_options
//     (HTTP ports);
//   - rateLimit: a local rate limit token bucket in each route's
//     typed_per_filter_config, and the filter in the connection managers
//     using those routes (HTTP ports);
//   - faults: an HTTPFault (delay, abort) in each route's
//     typed_per_filter_config, and the fault filter first in the
//     connection managers using those routes (HTTP ports);
//   - tls: Mesh as above; RequireMesh leaves out members without a sidecar,
//     Disable those with one (plaintext would bypass their sidecar), both
//     reported.
//
// A gateway gets one listener per Gateway listener port (gateway.go):
// HTTP with the HTTPRoutes and GRPCRoutes attached as virtual hosts;
// HTTPS and TLS chains chosen by SNI, HTTPS terminated with certificates
// named as SDS secrets the gateway reads from its own files
// (GatewayCertificateSecret), TLS passed through to TLSRoute backends;
// TCP to the oldest TCPRoute's backends. Attachment is the analyzer's
// (model.AttachToListener, model.MostSpecificListener). The AccessPolicies
// that target the Gateway are RBAC filters on every chain; a gateway
// registered with a mesh port (an egress gateway) also accepts mesh mTLS
// there, serving its HTTP and TCP ports to the members' SNI
// (gatewaymesh.go).
//
// Services outside the mesh (external.go): an ExternalName Service is a
// STRICT_DNS cluster the proxy resolves; Workloads without a sidecar are
// plaintext EDS endpoints, whose addresses the capture listener routes as
// the service when GAMMA routes attach to it (sending them to an egress
// gateway) or when the proxy is registry-only (Options.RegistryOnly, or
// the Namespace label OutboundTrafficPolicyLabel), which sends unknown
// destinations to BlackHoleCluster.
//
// Networks (network.go, eastwest.go; model.NetworkOf): a client's
// endpoints for members of another network are that network's east-west
// gateway addresses on its east-west port, weighted
// (load_balancing_weight) by the members they stand for, over the same
// mesh mTLS (SNI, SAN list) as direct endpoints; members of a network
// without a gateway, or without a sidecar in another network, are left
// out and reported. An east-west listener (tls.options
// trellis.dev/listener-mode: auto-passthrough) gets a filter chain per SNI
// of a mesh service port with members in its Gateway's network, a
// tcp_proxy to an EDS cluster named by that SNI, without a transport
// socket: the TLS stream passes through to the members' mesh ports.
//
// Dependency keys (deps.go) record what each proxy's config was built
// from, so that a change rebuilds only the proxies it concerns.
//
// Route rules (rules.go), for sidecars and gateways alike:
//   - header modifiers become request/response_headers_to_add (set:
//     OVERWRITE_IF_EXISTS_OR_ADD, add: APPEND_IF_EXISTS_OR_ADD) and
//     _to_remove, on the route or, for backendRef filters, on the
//     backend's weighted cluster;
//   - RequestRedirect becomes a redirect action (an unset port is the
//     scheme's, or the listener's or Service port), URLRewrite
//     host_rewrite_literal and path_rewrite, or prefix_rewrite on the
//     path_separated_prefix match (regex_rewrite where the replacement is
//     "/" or the prefix is "/", for the Gateway API's segment semantics);
//   - RequestMirror becomes request_mirror_policies with a
//     runtime_fraction below 100%;
//   - CORS becomes a CorsPolicy in the route's typed_per_filter_config,
//     and the connection manager then runs the CORS filter
//     (CORSFilterName) before the router;
//   - timeouts.request is the route timeout (none when unset),
//     timeouts.backendRequest the per-try timeout of the default retry
//     policy (DefaultRetryOn, DefaultNumRetries), which every route has;
//   - ExtensionRef filters, backendRef filters other than header
//     modifiers, and Host header changes make the rule answer 500, with a
//     Problem naming the field.
//
// A proxyless gRPC application (grpc.go) gets only what gRPC's own xDS
// client accepts:
//   - an API listener per xds:/// target it may dial, for every GRPC and
//     HTTP2 service port of its namespace and every upstream it registered,
//     named by GRPCTargets and taking its routes over RDS;
//   - the same route configurations a sidecar gets (GAMMA GRPCRoutes and
//     HTTPRoutes, or everything to the service), with only prefix, path and
//     safe_regex path matches, timeouts.request as max_stream_duration and
//     no retry policy; a rule with a filter or timeouts.backendRequest,
//     which gRPC cannot honour, fails its calls (a Problem names the
//     field);
//   - EDS clusters without transport sockets, whose endpoints are the
//     members without a sidecar, in plaintext, in weighted localities;
//     of a BackendPolicy only the load balancing policy (header hashing,
//     not cookies) and connectionLimits.maxRequests, which grpc-go's xDS
//     client implements; the rest is reported;
//   - for each port it serves, the Listener its xDS-enabled server asks for
//     (GRPCServerListener), allowing every call;
//   - no secrets.
package translate
