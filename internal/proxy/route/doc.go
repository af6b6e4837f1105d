// Package route compiles an Envoy v3 RouteConfiguration into a Table and
// matches HTTP requests against it with Envoy's semantics. It is the routing
// step of trellis-proxy's HTTP path:
//
//	RDS RouteConfiguration ──Compile──► *Table           (error → NACK, keep last good)
//	                                      │
//	*http.Request ──────────────Match─────┘──► *Route    (nil → 404 "no route")
//	                                              │
//	        PickCluster / PickWeighted ◄──────────┤  forward: cluster, RewritePath,
//	        ApplyRequestHeaders                   │  RewriteHost, Timeout, RetryPolicy,
//	        ApplyResponseHeaders                  │  MirrorPolicies, CORS
//	        RedirectLocation / DirectResponse ◄───┘  or answer locally
//
// Compile walks every set field of the configuration against an allow-list
// (allow.go): a field the proxy does not implement is an error naming the
// route config, virtual host, route index and field, never silently ignored.
// Fields newer than the compiled-in protos arrive as unknown fields and are
// refused the same way. Envoy's own validation rules (the generated
// ValidateAll) run last.
//
// Everything is precomputed: Match allocates nothing for the common case.
//
// Supported, as in Envoy:
//   - virtual hosts: exact, suffix ("*.foo.com", "*-bar.foo.com") and prefix
//     ("foo.*") wildcard domains and "*", in that precedence, longest
//     wildcard first, case-insensitively; a domain may appear only once;
//     ignore_port_in_host_matching; vhost_header.
//   - route match: prefix, path, safe_regex (Go regexp, RE2 syntax, whole
//     path), path_separated_prefix, case_sensitive, headers (string_match
//     and the deprecated exact/prefix/suffix/contains/safe_regex matches,
//     present_match, range_match, invert_match,
//     treat_missing_header_as_empty; :method, :authority, :path and
//     :scheme), query_parameters (string_match, presence),
//     ignore_path_parameters_in_path_matching.
//   - route action: cluster, weighted_clusters (with per-cluster headers and
//     host_rewrite_literal; total_weight must equal the sum if set),
//     prefix_rewrite, regex_rewrite, path_rewrite (literal),
//     host_rewrite_literal, timeout, retry_policy (route or virtual host;
//     every retry_on condition but retriable-headers; the data plane
//     executes them, http3-post-connect-failure never firing as there is
//     no HTTP/3 upstream),
//     request_mirror_policies (route, virtual host or configuration; a
//     runtime_fraction is its default_value, there being no runtime),
//     hash_policy (header and cookie; Route.Hash computes the request's
//     hash as Envoy does).
//   - typed_per_filter_config of routes and virtual hosts: the CORS
//     filter's CorsPolicy (allow_origin_string_match, allow_methods,
//     allow_headers, expose_headers, max_age, allow_credentials,
//     allow_private_network_access, forward_not_matching_preflights),
//     merged field by field as Envoy's CORS filter does (Route.CORS); and
//     the configs of HTTP filters that registered a compiler for their
//     type (RegisterFilterConfig), the most specific returned by
//     Route.FilterConfig.
//   - redirect and direct_response (inline body).
//   - request and response headers to add (append_action, append,
//     keep_empty_value) and remove at the configuration, virtual host, route
//     and weighted cluster levels, with most_specific_header_mutations_wins.
//     Values are literal: "%%" is a '%', any other '%' command is refused.
//
// Refused (ErrNotSupported), among everything not listed above: vhds,
// internal_only_headers, typed_per_filter_config of unregistered types (and
// at the configuration and weighted cluster levels), CorsPolicy's
// filter_enabled and shadow_enabled, hash policies other than header
// (without regex_rewrite) and cookie (without ttl, path or attributes),
// require_tls, the deprecated cors field, rate_limits, virtual_clusters,
// hedge_policy, matcher,
// match.runtime_fraction, grpc, tls_context, cookies, dynamic_metadata,
// connect_matcher, cluster_header, idle_timeout, upgrade_configs,
// max_stream_duration, auto_host_rewrite, runtime keys, retry predicates and priorities, retry_on
// conditions Envoy does not know (Envoy ignores them; a typo would silently
// disable retries), direct_response bodies from files, header values with
// substitution commands, and validate_clusters: true.
//
// As in Envoy, a port in the Host is part of what the domains are matched
// against, unless the route configuration sets ignore_port_in_host_matching
// (the translator sets it where domains are Gateway API hostnames).
package route
