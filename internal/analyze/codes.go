package analyze

// Code describes one kind of finding. Codes are stable: a code keeps its
// meaning for ever, and a retired code is never reused.
type Code struct {
	ID       string
	Severity Severity
	// Title says in a few words what is wrong.
	Title string
	// Hint is the usual fix.
	Hint string
}

// Finding codes. TRL0xxx: the resource itself cannot be read or used;
// TRL1xxx: listeners and Gateways; TRL2xxx: route attachment and
// precedence; TRL3xxx: references; TRL4xxx: security; TRL5xxx: protocols.
const (
	CodeDecode    = "TRL0001"
	CodeInvalid   = "TRL0002"
	CodeUnusable  = "TRL0003"
	CodeProtocols = "TRL1001"
	CodeDuplicate = "TRL1002"
	CodeL4Shared  = "TRL1003"
	CodeAddress   = "TRL1004"
	CodeNoClass   = "TRL1005"
	CodeListenSet = "TRL1006"
	CodeParamsRef = "TRL1007"

	CodeNoParent      = "TRL2001"
	CodeNoListener    = "TRL2002"
	CodeNoParentSvc   = "TRL2003"
	CodeParentKind    = "TRL2004"
	CodeNotAllowedNS  = "TRL2005"
	CodeNotAllowedKin = "TRL2006"
	CodeNoHostname    = "TRL2007"
	CodeSelectorUnkn  = "TRL2008"
	CodeHostTaken     = "TRL2009"
	CodeShadowedTeam  = "TRL2010"
	CodeShadowedSame  = "TRL2011"
	CodeShadowedSelf  = "TRL2012"
	CodeOverlapTeam   = "TRL2013"
	CodeL4Taken       = "TRL2014"
	CodeExtensionRef  = "TRL2020"
	CodeBackendFilter = "TRL2021"
	CodeHostHeader    = "TRL2022"
	CodeServiceType   = "TRL2050"

	CodeGatewayIdentity   = "TRL2030"
	CodeExternalNameRoute = "TRL2031"

	CodeEastWestListener = "TRL2040"
	CodeNoEastWest       = "TRL2041"
	CodeNetworkPlain     = "TRL2042"
	CodeEastWestRoute    = "TRL2043"

	CodeNoBackend     = "TRL3001"
	CodeNoBackendPort = "TRL3002"
	CodeNoGrant       = "TRL3003"
	CodeBackendKind   = "TRL3004"
	CodeZeroWeights   = "TRL3005"
	CodeNoTarget      = "TRL3006"

	CodeBackendConflict = "TRL3010"
	CodeNoTargetPort    = "TRL3011"
	CodeHashNoKey       = "TRL3012"
	CodeDisableSidecar  = "TRL3013"
	CodeRequireMeshVM   = "TRL3014"
	CodeHTTPOnlyPolicy  = "TRL3015"
	CodeFaultsNoEffect  = "TRL3016"

	CodeStrictClients = "TRL4001"
	CodeDisableMesh   = "TRL4002"
	CodeAccessNoWL    = "TRL4003"
	CodeDenyAll       = "TRL4004"
	CodeMTLSConflict  = "TRL4005"

	// TRL4010 (an AccessPolicy targets a Gateway, which did not enforce
	// it) is retired: gateways enforce AccessPolicy.
	CodeAccessNoSidecar = "TRL4011"
	CodeAccessTCP       = "TRL4012"
	CodeAccessNever     = "TRL4013"
	CodeAccessPort      = "TRL4014"

	CodeNoProtocol   = "TRL5001"
	CodePortProtocol = "TRL5002"
)

// Codes lists every finding code, in code order.
var Codes = []Code{
	{CodeDecode, Error, "The resource cannot be decoded",
		"Fix the YAML or JSON at the line shown: a syntax error, an unknown or misspelt field, or a value of the wrong type."},
	{CodeInvalid, Error, "A field's value is invalid",
		"Change the value as the message says; the rule is the one the Gateway API CRD (or the Trellis kind) enforces."},
	{CodeUnusable, Error, "The resource cannot be used",
		"Each resource may be defined once per kind, namespace and name; remove or rename the duplicate."},

	{CodeProtocols, Error, "Listeners on one port speak incompatible protocols",
		"Move one listener to another port: HTTP, HTTPS/TLS, TCP and UDP listeners cannot share a port."},
	{CodeDuplicate, Error, "Two listeners have the same port, protocol and hostname",
		"Give each listener on the port a distinct hostname, or merge them."},
	{CodeL4Shared, Error, "TCP or UDP listeners share a port",
		"Nothing in a TCP or UDP connection tells the listeners apart: give each its own port, or use TLS listeners split by SNI."},
	{CodeAddress, Error, "Two Gateways claim the same address and port",
		"Give the Gateways different addresses, or different ports, or merge their listeners into one Gateway (or a ListenerSet)."},
	{CodeNoClass, Warning, "The Gateway's GatewayClass does not exist",
		"Create the GatewayClass (controllerName trellis.dev/gateway) or fix gatewayClassName."},
	{CodeListenSet, Error, "The ListenerSet cannot attach to its Gateway",
		"Point parentRef at an existing Gateway whose spec.allowedListeners admits the ListenerSet's namespace."},
	{CodeParamsRef, Error, "The Gateway's infrastructure.parametersRef names parameters Trellis does not read",
		"Remove spec.infrastructure.parametersRef: Trellis has no parameters kind. A Gateway's Deployment and Service take spec.infrastructure.labels and annotations (trellis.dev/service-type chooses the Service type)."},

	{CodeNoParent, Error, "The route's parent does not exist",
		"Fix the parentRef's name and namespace, or create the Gateway or ListenerSet."},
	{CodeNoListener, Error, "The parentRef names no listener of the Gateway",
		"Fix sectionName or port so that they name a listener of the Gateway."},
	{CodeNoParentSvc, Error, "The route's parent Service or port does not exist",
		"Fix the parentRef's name or port, or create the Service."},
	{CodeParentKind, Error, "The route's parent is of a kind Trellis cannot attach to",
		"Attach routes to a Gateway or ListenerSet (group gateway.networking.k8s.io) or to a Service (group \"\")."},
	{CodeNotAllowedNS, Error, "The listener does not admit routes from this namespace",
		"Change the listener's allowedRoutes.namespaces (Same, All or a Selector), or move the route to an admitted namespace."},
	{CodeNotAllowedKin, Error, "The listener does not admit routes of this kind",
		"Attach the route to a listener of a matching protocol (HTTP/HTTPS for HTTPRoute and GRPCRoute, TLS for TLSRoute, TCP for TCPRoute), or add the kind to allowedRoutes.kinds."},
	{CodeNoHostname, Error, "The route's hostnames do not intersect the listener's",
		"Give the route a hostname the listener accepts, or attach it to another listener."},
	{CodeSelectorUnkn, Info, "Namespace labels are unknown, so a namespace selector cannot be checked",
		"Off Kubernetes namespaces have no labels: prefer allowedRoutes.namespaces.from Same or All."},
	{CodeHostTaken, Warning, "A more specific listener serves some of the route's hostnames",
		"Requests for a hostname go to the listener of the port with the most specific hostname, and only to the routes attached there: attach the route to that listener, or drop the hostname from the route."},
	{CodeShadowedTeam, Error, "Another namespace's route takes these requests",
		"Two teams matched the same requests on the same hostname; the older route wins. Use distinct paths or hostnames, or remove one rule."},
	{CodeShadowedSame, Warning, "Another route in the namespace takes these requests",
		"Two routes matched the same requests on the same hostname; the older one wins. Remove or change one rule."},
	{CodeShadowedSelf, Warning, "An earlier rule of the same route takes these requests",
		"Remove the repeated match: requests go to the first rule that has it."},
	{CodeOverlapTeam, Warning, "The route takes part of another namespace's requests",
		"A more specific match takes requests from another team's route on the same hostname; make sure that is intended, or use distinct hostnames."},
	{CodeL4Taken, Warning, "Another TLSRoute or TCPRoute already takes these connections",
		"Only the oldest TLSRoute of a hostname, or TCPRoute of a port, is in effect: give the route another hostname or listener, or remove one of them."},

	{CodeExtensionRef, Error, "The rule uses an ExtensionRef filter, which Trellis does not support",
		"Remove the ExtensionRef filter: as it is, every request matching the rule gets 500."},
	{CodeBackendFilter, Error, "A backendRef has a filter Trellis cannot apply per backend",
		"Only RequestHeaderModifier and ResponseHeaderModifier filters may be set on a backendRef; move other filters to the rule. As it is, every request matching the rule gets 500."},
	{CodeHostHeader, Error, "A header modifier changes the Host header",
		"Change the host with a URLRewrite filter's hostname instead; as it is, every request matching the rule gets 500."},
	{CodeEastWestListener, Error, "An east-west listener is not TLS in mode Passthrough",
		"Set protocol TLS and tls.mode Passthrough: an east-west listener passes mesh mTLS through by SNI and never terminates it. As it is, the listener is not programmed."},
	{CodeNoEastWest, Warning, "A Service has members in a network with no east-west gateway",
		"Add a Gateway labeled trellis.dev/network with the network's name and an east-west listener (TLS, Passthrough, tls.options trellis.dev/listener-mode: auto-passthrough), reachable from the other networks; until then their clients leave these members out."},
	{CodeNetworkPlain, Warning, "A Service has members without a sidecar in a mesh of several networks",
		"Give them a sidecar (meshPort): clients of other networks reach members only through an east-west gateway, over mesh mTLS, and leave these out."},
	{CodeEastWestRoute, Warning, "A route is attached to an east-west listener, which ignores routes",
		"Attach the route to another listener: an east-west listener serves every mesh service of its network by the SNI clients send, and no route."},

	{CodeGatewayIdentity, Info, "The AccessPolicy on a Gateway matches callers by identity, which only mesh clients have",
		"Clients that reach the Gateway over mesh mTLS (a gateway started with --mesh-port, such as an egress gateway) are matched by their SPIFFE ID; others have none: an ALLOW rule by identity or namespace refuses them and a DENY rule by identity never matches them. Match them with to-conditions (ports, paths, methods, headers) instead."},
	{CodeExternalNameRoute, Warning, "The route is attached to an ExternalName Service",
		"A capturing sidecar sees an app's connection to the external name's address, not the name: the route applies only to explicit upstreams of the Service (--upstream). To route captured traffic to an external host (to an egress gateway, say), make the host a Service whose members are Workloads at its addresses, and attach the route there."},

	{CodeServiceType, Error, "The Gateway asks for a Service type Trellis does not make",
		"Set the annotation trellis.dev/service-type to LoadBalancer, ClusterIP or NodePort; as it is, the Gateway's Service on Kubernetes is a ClusterIP one."},

	{CodeNoBackend, Error, "The backend Service does not exist",
		"Create the Service or fix the backendRef's name and namespace; requests to this backend get 500."},
	{CodeNoBackendPort, Error, "The backend port is missing or not a port of the Service",
		"Set backendRef.port to one of the Service's ports."},
	{CodeNoGrant, Error, "A reference to another namespace has no ReferenceGrant",
		"Create a ReferenceGrant in the target namespace allowing this kind from this namespace, or reference an object in the same namespace."},
	{CodeBackendKind, Error, "The backend is of a kind Trellis cannot send to",
		"Use a Service as the backend (group \"\", kind Service)."},
	{CodeZeroWeights, Error, "Every backend of the rule has weight 0",
		"Give at least one backend a weight above 0; as it is, every request matching the rule gets 500."},
	{CodeNoTarget, Error, "The policy's target does not exist",
		"Fix targetRefs to name an existing Service in the policy's namespace."},
	{CodeBackendConflict, Warning, "Several BackendPolicies target the same Service port",
		"Only one applies, whole: the one naming the port by sectionName, else the oldest, else the first by name. Merge them, or narrow each to its own port with sectionName."},
	{CodeNoTargetPort, Error, "The targetRef's sectionName names no port of the Service",
		"Set sectionName to the name of one of the Service's ports, or drop it to target every port."},
	{CodeHashNoKey, Warning, "ConsistentHash has no hashHeader or hashCookie: endpoints are picked at random",
		"Set loadBalancer.hashHeader or loadBalancer.hashCookie to the request attribute that should stick to one endpoint."},
	{CodeDisableSidecar, Warning, "tls.mode Disable leaves out the Service's members that have a sidecar",
		"A sidecar accepts only mesh mTLS, and plaintext to the application would bypass it; use tls.mode Mesh (plaintext goes to members without a sidecar anyway)."},
	{CodeRequireMeshVM, Warning, "tls.mode RequireMesh leaves out the Service's members without a sidecar",
		"Give those workloads a sidecar (meshPort), or use tls.mode Mesh to reach them in plaintext."},
	{CodeHTTPOnlyPolicy, Warning, "idleTimeout, rateLimit and faults act on HTTP only: they do nothing on this TCP port",
		"Narrow the policy to the Service's HTTP ports with sectionName, or declare the port's protocol (appProtocol) if it is HTTP."},
	{CodeFaultsNoEffect, Warning, "A fault injects nothing",
		"Give the delay a percent and a duration above 0, and the abort a percent above 0, or remove the fault; set 100 to affect every request."},

	{CodeStrictClients, Error, "STRICT mTLS locks out clients that cannot do mesh mTLS",
		"Use PERMISSIVE on the port until every client has a sidecar (or drop the BackendPolicy that disables TLS)."},
	{CodeDisableMesh, Warning, "mTLS is disabled on a port whose clients require it",
		"Say one thing: allow mTLS on the port (PERMISSIVE or STRICT), or change the BackendPolicy's tls.mode to Mesh."},
	{CodeAccessNoWL, Warning, "The AccessPolicy selects no workload",
		"Fix targetRefs, or check the Service's selector: as it is, the policy protects nothing."},
	{CodeDenyAll, Warning, "A DENY rule makes an ALLOW rule unreachable",
		"The DENY matches every request the ALLOW matches, and DENY is evaluated first: narrow the DENY or remove the ALLOW."},
	{CodeMTLSConflict, Warning, "Several MTLSPolicies set different modes for the same workloads",
		"Keep one MTLSPolicy per target (a port-level override belongs in spec.ports)."},
	{CodeAccessNoSidecar, Warning, "The AccessPolicy selects workloads without a sidecar",
		"Give the workloads a sidecar (meshPort), or narrow targetRefs: a workload reached in plaintext has no proxy to enforce the policy."},
	{CodeAccessTCP, Warning, "A rule's paths, methods or headers apply to a TCP port",
		"Limit the target to the HTTP ports with to.ports, or declare the port's protocol: on TCP an ALLOW target with HTTP conditions never matches, and a DENY or AUDIT target applies without them."},
	{CodeAccessNever, Warning, "A source, path or method of the rule can never match",
		"Only a trailing * is a wildcard in identities, a leading or trailing * in paths; paths are matched after normalization (no dot segments, //, escapes of letters and digits, ;, ? or #); methods are case-sensitive."},
	{CodeAccessPort, Warning, "A rule names a port the selected workloads do not serve",
		"Name the workloads' ports (a Service's targetPort), not the Service's ports."},

	{CodeNoProtocol, Warning, "The Service port's protocol is not declared: it is treated as opaque TCP",
		"Set appProtocol, or name the port with a protocol prefix (http-, http2-, grpc-, tcp-, tls-), so that routing, retries and metrics work at the right layer."},
	{CodePortProtocol, Error, "The route is attached to a Service port of another protocol",
		"Attach HTTPRoutes and GRPCRoutes to HTTP, HTTP2 or GRPC ports, TCPRoutes and TLSRoutes to TCP or TLS ports."},
}

var byID = func() map[string]Code {
	m := make(map[string]Code, len(Codes))
	for _, c := range Codes {
		m[c.ID] = c
	}
	return m
}()

// Lookup returns the code with id.
func Lookup(id string) (Code, bool) {
	c, ok := byID[id]
	return c, ok
}
