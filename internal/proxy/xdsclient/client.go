// Package xdsclient is the proxy's side of the Aggregated Discovery
// Service: one gRPC stream to the control plane carrying clusters,
// endpoints, listeners, routes and secrets, state of the world.
//
// Each response is handed to the Handler whole. If the Handler accepts it
// the client ACKs its version; if not, the client NACKs it with the
// Handler's error and the proxy keeps serving what it had. When the stream
// breaks the client reconnects with backoff; the config already applied
// stays in force meanwhile.
//
// A Handler that is also an UpdateHandler (the proxy) is told only what
// changed: the resources added or changed and the names of those removed,
// over delta and state-of-the-world streams alike; the client then keeps
// no copy of the config, only each resource's version (delta) or digest
// (state of the world). A plain Handler gets the whole set of a type after
// each response, which the client keeps for it.
package xdsclient

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs the proxy subscribes to.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// Wildcard types are subscribed to whole; the others by the names the
// applied config references.
var wildcard = map[string]bool{ClusterType: true, ListenerType: true}

// Handler applies config.
type Handler interface {
	// Apply installs the complete set of resources of one type, by name.
	// An error rejects the update (NACK); the previous set stays in force.
	Apply(typeURL string, resources map[string]proto.Message) error
	// Names returns the resource names of a non-wildcard type (endpoints,
	// routes, secrets) that the applied config needs.
	Names(typeURL string) []string
}

// UpdateHandler is a Handler that applies changes rather than whole sets.
type UpdateHandler interface {
	Handler
	// Update applies a change to the resources of one type: changed are
	// those added or changed, by name, and removed the names of those no
	// longer in force; the others stay as they are. An error rejects the
	// whole change (NACK) and leaves the previous resources in force.
	Update(typeURL string, changed map[string]Resource, removed []string) error
}

// Resource is one resource as received: decoded, and the serialized
// bytes it was decoded from (which tell an unchanged resource apart, and
// which a config dump can decode again). Raw is not shared with anything
// else and may be kept.
type Resource struct {
	Message proto.Message
	Raw     []byte
}

// Options configure a client.
type Options struct {
	Conn *grpc.ClientConn
	Node *corev3.Node
	Log  *slog.Logger
	// Connected, when set, is called each time a stream opens.
	Connected func()
	// Delta selects incremental (delta) xDS: the control plane sends only
	// what changed. State of the world otherwise.
	Delta bool
}

// Client follows the control plane.
type Client struct {
	opts    Options
	handler Handler
	log     *slog.Logger
	// versions are the versions of the resources applied, by type and
	// name, kept across delta streams so that a new stream starts from
	// what the proxy has.
	versions map[string]map[string]string
	// applied are the resources applied, by type and name, for delta
	// updates to build on; kept only for a plain Handler.
	applied map[string]map[string]proto.Message
	// digests name the resources applied by the SHA-256 of their bytes,
	// by type, for an UpdateHandler on state-of-the-world streams: a
	// response carries every resource, and only those with a new digest
	// are decoded and handed over.
	digests map[string]map[[sha256.Size]byte]string
}

// New returns a client; Run starts it.
func New(opts Options, h Handler) *Client {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, handler: h, log: log,
		versions: map[string]map[string]string{}, applied: map[string]map[string]proto.Message{},
		digests: map[string]map[[sha256.Size]byte]string{}}
}

// Run keeps an ADS stream open until ctx is done, reconnecting with
// exponential backoff (up to 15 s) when it breaks.
func (c *Client) Run(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for {
		start := time.Now()
		var err error
		if c.opts.Delta {
			err = c.deltaStream(ctx)
		} else {
			err = c.stream(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		c.log.Warn("xDS stream ended; keeping the last config and reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// typeState is what the client tracks per type on one stream.
type typeState struct {
	version string // last accepted
	nonce   string // of the last response
	names   []string
	sent    bool
}

func (c *Client) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.opts.Conn)
	s, err := ads.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	states := map[string]*typeState{}
	first := true
	send := func(typeURL string, st *typeState, errDetail error) error {
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl:       typeURL,
			VersionInfo:   st.version,
			ResponseNonce: st.nonce,
			ResourceNames: st.names,
		}
		if first {
			req.Node = c.opts.Node
			first = false
		}
		if errDetail != nil {
			req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: errDetail.Error()}
		}
		st.sent = true
		return s.Send(req)
	}
	// subscribe (re)sends the request of every type whose names changed.
	subscribe := func() error {
		for _, typeURL := range []string{ClusterType, ListenerType, EndpointType, RouteType, SecretType} {
			st := states[typeURL]
			if st == nil {
				st = &typeState{}
				states[typeURL] = st
			}
			if wildcard[typeURL] {
				if !st.sent {
					if err := send(typeURL, st, nil); err != nil {
						return err
					}
				}
				continue
			}
			names := c.handler.Names(typeURL)
			slices.Sort(names)
			names = slices.Compact(names)
			if len(names) == 0 || (st.sent && slices.Equal(names, st.names)) {
				continue
			}
			st.names = names
			if err := send(typeURL, st, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if err := subscribe(); err != nil {
		return err
	}
	if c.opts.Connected != nil {
		c.opts.Connected()
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		st := states[resp.GetTypeUrl()]
		if st == nil {
			c.log.Warn("xDS response of a type never requested", "type", resp.GetTypeUrl())
			continue
		}
		st.nonce = resp.GetNonce()
		applyErr := c.apply(resp)
		if applyErr == nil {
			st.version = resp.GetVersionInfo()
			c.log.Debug("xDS update applied", "type", shortType(resp.GetTypeUrl()), "version", st.version, "resources", len(resp.GetResources()))
		} else {
			c.log.Warn("xDS update rejected; keeping the previous config", "type", shortType(resp.GetTypeUrl()), "version", resp.GetVersionInfo(), "err", applyErr)
		}
		if err := send(resp.GetTypeUrl(), st, applyErr); err != nil {
			return err
		}
		if applyErr == nil {
			if err := subscribe(); err != nil {
				return err
			}
		}
	}
}

func (c *Client) apply(resp *discoveryv3.DiscoveryResponse) error {
	if u, ok := c.handler.(UpdateHandler); ok {
		return c.applyChanges(u, resp)
	}
	resources := make(map[string]proto.Message, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		name, m, err := unpack(resp.GetTypeUrl(), i, a)
		if err != nil {
			return err
		}
		if _, dup := resources[name]; dup {
			return fmt.Errorf("resource %q appears twice", name)
		}
		resources[name] = m
	}
	return c.handler.Apply(resp.GetTypeUrl(), resources)
}

// applyChanges hands an UpdateHandler what a state-of-the-world response
// changes: the resources whose bytes differ from those applied, and the
// names missing from it. A resource's name is inside its bytes, so equal
// bytes are the same resource unchanged: it is not decoded again.
func (c *Client) applyChanges(u UpdateHandler, resp *discoveryv3.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	old := c.digests[typeURL]
	next := make(map[[sha256.Size]byte]string, len(resp.GetResources()))
	present := make(map[string]bool, len(resp.GetResources()))
	changed := map[string]Resource{}
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != typeURL {
			return fmt.Errorf("resource %d has type %s in a %s response", i, a.GetTypeUrl(), typeURL)
		}
		d := sha256.Sum256(a.GetValue())
		name, same := old[d]
		if !same {
			var m proto.Message
			var err error
			if name, m, err = unpack(typeURL, i, a); err != nil {
				return err
			}
			changed[name] = Resource{Message: m, Raw: a.GetValue()}
		}
		if present[name] {
			return fmt.Errorf("resource %q appears twice", name)
		}
		present[name] = true
		next[d] = name
	}
	var removed []string
	for _, name := range old {
		if !present[name] {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	// The first response of a type is handed over even when empty: the
	// handler learns that the type has arrived.
	if len(changed) > 0 || len(removed) > 0 || old == nil {
		if err := u.Update(typeURL, changed, removed); err != nil {
			return err
		}
	}
	c.digests[typeURL] = next
	return nil
}

// unpack decodes the i-th resource of a response of type typeURL.
func unpack(typeURL string, i int, a *anypb.Any) (string, proto.Message, error) {
	if a.GetTypeUrl() != typeURL {
		return "", nil, fmt.Errorf("resource %d has type %s in a %s response", i, a.GetTypeUrl(), typeURL)
	}
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("resource %d: %w", i, err)
	}
	name := resourceName(m)
	if name == "" {
		return "", nil, fmt.Errorf("resource %d has no name", i)
	}
	return name, m, nil
}

// resourceName is the name xDS keys a resource by.
func resourceName(m proto.Message) string {
	type named interface{ GetName() string }
	type clusterNamed interface{ GetClusterName() string }
	switch r := m.(type) {
	case clusterNamed:
		return r.GetClusterName()
	case named:
		return r.GetName()
	}
	return ""
}

func shortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "CDS"
	case EndpointType:
		return "EDS"
	case ListenerType:
		return "LDS"
	case RouteType:
		return "RDS"
	case SecretType:
		return "SDS"
	}
	return typeURL
}
