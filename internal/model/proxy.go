package model

// ProxyKind is the role a connected proxy plays.
type ProxyKind string

// Proxy kinds.
const (
	// KindSidecar fronts one workload: inbound mesh mTLS to the app, and
	// outbound listeners for the app's upstreams.
	KindSidecar ProxyKind = "sidecar"
	// KindGateway serves the listeners of one Gateway resource.
	KindGateway ProxyKind = "gateway"
	// KindGRPC is a proxyless gRPC application, its own xDS client: it
	// resolves xds:/// targets itself and its xDS-enabled servers listen on
	// the workload's ports, with no proxy in between.
	KindGRPC ProxyKind = "grpc"
)

// Proxy is a data plane instance connected to the control plane: what it
// told the control plane about itself when it registered.
type Proxy struct {
	// ID is the xDS node ID, unique per proxy instance.
	ID   string
	Kind ProxyKind
	// Workload is the workload a sidecar fronts or a gRPC application is;
	// for a gateway it is the gateway instance itself (its address and
	// service account).
	Workload Workload
	// Gateway names the Gateway a gateway proxy serves.
	Gateway Key
	// Upstreams are the services a sidecar's app calls through explicit
	// outbound listeners on OutboundAddress. For a gRPC application they
	// are services it calls besides the gRPC services of its namespace;
	// LocalPort is zero.
	Upstreams       []Upstream
	OutboundAddress string
	// AppAddress is where the sidecar reaches its app's ports.
	AppAddress string
	// OutboundCapturePort and InboundCapturePort are the sidecar's
	// transparent capture listeners (the capture rules redirect the
	// workload's traffic there); zero: the explicit mode only.
	OutboundCapturePort uint32
	InboundCapturePort  uint32
}

// Upstream binds a local port of the sidecar to a service port.
type Upstream struct {
	Service   Key
	Port      uint32
	LocalPort uint32
}
