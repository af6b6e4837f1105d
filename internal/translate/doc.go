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
//     forwarding to the app through a static inbound|PORT|| cluster;
//   - one explicit outbound listener per declared upstream, on its
//     OutboundAddress, routing HTTP by the routes attached to the service
//     (GAMMA) or forwarding TCP;
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
//   - tls: Mesh as above; RequireMesh leaves out members without a sidecar,
//     Disable those with one (plaintext would bypass their sidecar), both
//     reported.
//
// A gateway gets one listener per Gateway listener port, with the
// HTTPRoutes attached to it as virtual hosts.
//
// A proxyless gRPC application (grpc.go) gets only what gRPC's own xDS
// client accepts:
//   - an API listener per xds:/// target it may dial, for every GRPC and
//     HTTP2 service port of its namespace and every upstream it registered,
//     named by GRPCTargets and taking its routes over RDS;
//   - the same route configurations a sidecar gets (GAMMA GRPCRoutes and
//     HTTPRoutes, or everything to the service), with only prefix, path and
//     safe_regex path matches;
//   - EDS clusters without transport sockets, whose endpoints are the
//     members without a sidecar, in plaintext, in weighted localities;
//     of a BackendPolicy only the load balancing policy (header hashing,
//     not cookies) and connectionLimits.maxRequests, which grpc-go's xDS
//     client implements; the rest is reported;
//   - for each port it serves, the Listener its xDS-enabled server asks for
//     (GRPCServerListener), allowing every call;
//   - no secrets.
package translate
