// Package xds serves Envoy's Aggregated Discovery Service to Trellis proxies
// and gRPC clients, and records what each proxy was sent and what it
// acknowledged.
//
//	translate.Resources ──Push──► snapshot cache ──ADS──► proxy
//	                                   ▲                    │
//	                 Status ◄── callbacks ◄── ACK / NACK ───┘
//
// It is built on go-control-plane's server and snapshot cache. Each xDS
// type gets its own version, a hash of its resources, so that a change to
// one type does not resend the others. The Hooks are told when a proxy's
// stream opens and closes: that is how the control plane learns which
// workloads are connected.
package xds

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/translate"
)

// Hooks learn about proxies connecting and disconnecting.
type Hooks interface {
	// Connected is called on the first request of a stream, before any
	// response. peer holds the client certificates of the TLS connection
	// (nil over plaintext). An error rejects the stream.
	Connected(streamID int64, node *corev3.Node, peer []*x509.Certificate) error
	// Disconnected is called when a stream that Connected accepted ends.
	Disconnected(streamID int64, node *corev3.Node)
}

// Types are the xDS type URLs Trellis serves, in the order a proxy should
// apply them.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

// Server is the ADS server.
type Server struct {
	cache cache.SnapshotCache
	// byName holds the same snapshots as cache for clients that subscribe
	// by name (grpc.go).
	byName cache.SnapshotCache
	server server.Server
	hooks  Hooks
	log    *slog.Logger

	mu      sync.Mutex
	streams map[int64]*stream // by stream ID
	nodes   map[string]*nodeState
}

type stream struct {
	ctx      context.Context
	node     *corev3.Node
	peer     []*x509.Certificate
	delta    bool
	accepted bool
}

// New returns a server; call Register to serve it on a gRPC server.
func New(ctx context.Context, hooks Hooks, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cache:   cache.NewSnapshotCache(true, cache.IDHash{}, nil),
		byName:  cache.NewSnapshotCache(false, cache.IDHash{}, nil),
		hooks:   hooks,
		log:     log,
		streams: map[int64]*stream{},
		nodes:   map[string]*nodeState{},
	}
	s.server = server.NewServer(ctx, newMuxCache(s.cache, s.byName), s.callbacks())
	return s
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.server)
}

func peerCertificates(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return info.State.PeerCertificates
	}
	return nil
}

// deltaID maps the IDs of delta streams, which go-control-plane counts
// apart from state-of-the-world streams, to a range of their own.
func deltaID(id int64) int64 { return -id }

func (s *Server) callbacks() server.CallbackFuncs {
	return server.CallbackFuncs{
		StreamOpenFunc:      func(ctx context.Context, id int64, _ string) error { return s.opened(ctx, id, false) },
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error { return s.opened(ctx, deltaID(id), true) },
		StreamClosedFunc:    func(id int64, _ *corev3.Node) { s.closed(id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.closed(deltaID(id))
		},
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			if err := s.accept(id, req.GetNode()); err != nil {
				return err
			}
			s.recordRequest(id, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			s.holdNacked(id, req)
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			if err := s.accept(deltaID(id), req.GetNode()); err != nil {
				return err
			}
			s.recordInitial(deltaID(id), req)
			s.recordRequest(deltaID(id), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.recordResponse(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), proto.Size(resp), func(ts *typeStatus) {
				ts.sent = resp.GetResources()
			})
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
			s.recordResponse(deltaID(id), resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), proto.Size(resp), func(ts *typeStatus) {
				next := make(map[string]*anypb.Any, len(ts.sentDelta)+len(resp.GetResources()))
				for k, v := range ts.sentDelta {
					next[k] = v
				}
				for _, r := range resp.GetResources() {
					next[r.GetName()] = r.GetResource()
				}
				for _, name := range resp.GetRemovedResources() {
					delete(next, name)
				}
				ts.sentDelta = next
				ts.sent = sortedResources(next)
			})
		},
	}
}

func (s *Server) opened(ctx context.Context, id int64, delta bool) error {
	s.mu.Lock()
	s.streams[id] = &stream{ctx: ctx, peer: peerCertificates(ctx), delta: delta}
	s.mu.Unlock()
	return nil
}

func (s *Server) closed(id int64) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	if st != nil && st.node != nil {
		if ns := s.nodes[st.node.GetId()]; ns != nil && ns.streamID == id {
			ns.connected = false
			ns.disconnectedAt = time.Now()
		}
	}
	s.mu.Unlock()
	if st != nil && st.accepted {
		s.hooks.Disconnected(id, st.node)
	}
}

// accept handles the first request of a stream: it must carry a node,
// which the hooks accept or reject.
func (s *Server) accept(id int64, reqNode *corev3.Node) error {
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		s.mu.Unlock()
		return fmt.Errorf("xds: unknown stream %d", id)
	}
	if st.node != nil {
		s.mu.Unlock()
		return nil
	}
	if reqNode.GetId() == "" {
		s.mu.Unlock()
		return errors.New("xds: the first request of a stream must carry a node with an id")
	}
	st.node = reqNode
	node, peerCerts := st.node, st.peer
	s.mu.Unlock()

	if err := s.hooks.Connected(id, node, peerCerts); err != nil {
		s.log.Warn("proxy rejected", "node", node.GetId(), "err", err)
		return err
	}
	s.mu.Lock()
	st.accepted = true
	prev := s.nodes[node.GetId()]
	s.nodes[node.GetId()] = &nodeState{
		streamID:    id,
		delta:       st.delta,
		node:        node,
		connected:   true,
		connectedAt: time.Now(),
		types:       map[string]*typeStatus{},
		current:     prev.currentSnapshot(),
	}
	if prev != nil {
		s.nodes[node.GetId()].hashes = prev.hashes
	}
	s.mu.Unlock()
	s.log.Info("proxy connected", "node", node.GetId(), "stream", id, "delta", st.delta)
	return nil
}

// holdNacked keeps the cache from answering a NACK with the config the
// proxy just rejected. A NACK carries the last version the proxy accepted;
// the cache, seeing that version differ from the snapshot's, would resend
// the rejected config at once, and the proxy would reject it again, in a
// loop. Presenting the NACK as being at the rejected version makes the
// cache wait for the next version instead.
func (s *Server) holdNacked(id int64, req *discoverygrpc.DiscoveryRequest) {
	if req.GetErrorDetail() == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.typeStatusLocked(id, req.GetTypeUrl())
	if ts != nil && ts.sentNonce == req.GetResponseNonce() {
		req.VersionInfo = ts.sentVersion
	}
}

// Push makes res the config of node. It reports whether anything changed.
// A snapshot whose references do not resolve is refused, and the proxy
// keeps its previous config.
//
// check, when not nil, judges the config before it replaces a different
// one; its error refuses the push as well.
func (s *Server) Push(ctx context.Context, node string, res *translate.Resources, check CheckFunc) (bool, error) {
	// One marshal of each resource gives both its own version, which delta
	// xDS compares (the snapshot's VersionMap, as go-control-plane would
	// build it), and the version of its type.
	//
	// Resources pushed before keep the version they had: translated
	// resources are never modified once built, and a config rebuilt in
	// part shares them. A resource equal to one in use (same type and
	// version) is replaced by it in res: configs share what they have in
	// common instead of holding copies.
	s.mu.Lock()
	var known map[types.Resource]string
	if ns := s.nodes[node]; ns != nil {
		known = ns.hashes
	}
	s.mu.Unlock()
	hashes := make(map[types.Resource]string, len(known))
	snap := &cache.Snapshot{VersionMap: map[string]map[string]string{}}
	pushType(snap, resource.ListenerType, res.Listeners, known, hashes)
	pushType(snap, resource.RouteType, res.Routes, known, hashes)
	pushType(snap, resource.ClusterType, res.Clusters, known, hashes)
	pushType(snap, resource.EndpointType, res.Endpoints, known, hashes)
	pushType(snap, resource.SecretType, res.Secrets, known, hashes)
	s.mu.Lock()
	ns := s.nodes[node]
	if ns == nil {
		ns = &nodeState{node: &corev3.Node{Id: node}, types: map[string]*typeStatus{}}
		s.nodes[node] = ns
	}
	ns.hashes = hashes
	s.mu.Unlock()
	if err := consistent(snap); err != nil {
		return false, fmt.Errorf("xds: config of %s is inconsistent and was not pushed: %w", node, err)
	}
	if old, err := s.cache.GetSnapshot(node); err == nil && sameVersions(old, snap) {
		return false, nil
	}
	if check != nil {
		if err := check(res, snap.VersionMap); err != nil {
			return false, err
		}
	}
	if err := s.cache.SetSnapshot(ctx, node, snap); err != nil {
		return false, fmt.Errorf("xds: %w", err)
	}
	if err := s.byName.SetSnapshot(ctx, node, snap); err != nil {
		return false, fmt.Errorf("xds: %w", err)
	}
	s.mu.Lock()
	ns.current = snap
	s.mu.Unlock()
	return true, nil
}

// Forget drops everything known about node: its snapshot and status.
func (s *Server) Forget(node string) {
	s.cache.ClearSnapshot(node)
	s.byName.ClearSnapshot(node)
	s.mu.Lock()
	if ns := s.nodes[node]; ns != nil && !ns.connected {
		delete(s.nodes, node)
	}
	s.mu.Unlock()
}

// CheckFunc judges a config before it is pushed; versions are the
// resources' versions (content hashes) by type URL and name.
type CheckFunc func(res *translate.Resources, versions map[string]map[string]string) error

func sameVersions(old cache.ResourceSnapshot, snap *cache.Snapshot) bool {
	for _, typ := range Types {
		if old.GetVersion(typ) != snap.GetVersion(typ) {
			return false
		}
	}
	return true
}

// pushType adds the resources of type typ to snap, with their versions,
// replacing each in items by an equal one already in use (interned).
func pushType[E any, T interface {
	*E
	types.Resource
}](snap *cache.Snapshot, typ string, items []T, known, hashes map[types.Resource]string) {
	list := make([]types.Resource, len(items))
	for i, r := range items {
		list[i] = r
	}
	versions := make(map[string]string, len(items))
	v := version(list, versions, known, hashes)
	for i, r := range items {
		if o := intern(typ, hashes[list[i]], r); o != r {
			delete(hashes, list[i])
			items[i], list[i] = o, o
			hashes[o] = versions[cache.GetResourceName(o)]
		}
	}
	snap.Resources[cache.GetResponseType(typ)] = cache.NewResources(v, list)
	snap.VersionMap[typ] = versions
}

// interned are the resources of the configs built, by type and version
// (content hash): proxies that call one service get one cluster of it,
// equal in every config, and the control plane holds it once. An entry
// goes when nothing holds its resource any more.
var interned sync.Map // string -> weak pointer

// intern returns the resource of type typ and version v in use, or r,
// which is then recorded as that one.
func intern[E any, T interface{ *E }](typ, v string, r T) T {
	key := typ + "\x00" + v
	for {
		wp := weak.Make((*E)(r))
		prev, loaded := interned.LoadOrStore(key, wp)
		if !loaded {
			runtime.AddCleanup((*E)(r), func(wp weak.Pointer[E]) { interned.CompareAndDelete(key, wp) }, wp)
			return r
		}
		if p := prev.(weak.Pointer[E]).Value(); p != nil {
			return T(p)
		}
		// Its resource is gone and its cleanup has yet to run.
		interned.CompareAndDelete(key, prev)
	}
}

// version hashes resources (already sorted by name) into a short version
// string: equal content, equal version. It records each resource's own
// version in versions, by name, and in hashes, by resource; a resource in
// known has the version recorded there.
func version(items []types.Resource, versions map[string]string, known, hashes map[types.Resource]string) string {
	h := sha256.New()
	for _, r := range items {
		v, ok := known[r]
		if !ok {
			b, err := cache.MarshalResource(r)
			if err != nil {
				// Resources come from translate and always marshal.
				panic("xds: marshal: " + err.Error())
			}
			v = cache.HashResource(b)
		}
		hashes[r] = v
		versions[cache.GetResourceName(r)] = v
		fmt.Fprintf(h, "%s:", v)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
