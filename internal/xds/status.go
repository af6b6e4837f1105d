package xds

import (
	"cmp"
	"maps"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Sync states of one xDS type of one proxy, as proxy-status shows them.
const (
	// StateSynced: the proxy acknowledged the current config.
	StateSynced = "SYNCED"
	// StateStale: newer config exists than what the proxy acknowledged
	// (sent and not yet acknowledged, or not yet sent).
	StateStale = "STALE"
	// StateNotSent: nothing of this type was sent on the current stream.
	StateNotSent = "NOT SENT"
	// StateNacked: the proxy rejected the last config sent; it keeps
	// serving the version it acknowledged before.
	StateNacked = "NACKED"
)

type nodeState struct {
	streamID       int64
	delta          bool
	node           *corev3.Node
	connected      bool
	connectedAt    time.Time
	disconnectedAt time.Time
	types          map[string]*typeStatus
	current        *cache.Snapshot
	// hashes are the versions of the resources last pushed, by resource
	// (pointer): a config rebuilt in part shares its other resources, and
	// their versions need no marshalling again.
	hashes map[types.Resource]string
}

func (ns *nodeState) currentSnapshot() *cache.Snapshot {
	if ns == nil {
		return nil
	}
	return ns.current
}

type typeStatus struct {
	responses int
	bytes     int64
	// sent are the resources the proxy has if it applied the last
	// response; acked those it has as of its last ACK. Over delta xDS,
	// sentDelta accumulates the responses, and ackedDelta is sentDelta as
	// of the last ACK.
	sent, acked           []*anypb.Any
	sentDelta, ackedDelta map[string]*anypb.Any
	// initial are the versions a delta client said it had when it
	// subscribed; nil for state-of-the-world clients.
	initial      map[string]string
	sentVersion  string
	sentNonce    string
	sentAt       time.Time
	ackedVersion string
	ackedAt      time.Time
	nackNonce    string
	nackMessage  string
}

// typeStatusLocked returns the status of one type on stream id, or nil
// when the stream is not the node's current one.
func (s *Server) typeStatusLocked(id int64, typeURL string) *typeStatus {
	st := s.streams[id]
	if st == nil || st.node == nil {
		return nil
	}
	ns := s.nodes[st.node.GetId()]
	if ns == nil || ns.streamID != id {
		return nil
	}
	ts := ns.types[typeURL]
	if ts == nil {
		ts = &typeStatus{}
		ns.types[typeURL] = ts
	}
	return ts
}

// recordRequest records an ACK or NACK of the response with nonce.
func (s *Server) recordRequest(id int64, typeURL, nonce, nackMessage string, nack bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.typeStatusLocked(id, typeURL)
	if ts == nil || nonce == "" || nonce != ts.sentNonce {
		return
	}
	if nack {
		ts.nackNonce = nonce
		ts.nackMessage = nackMessage
		if ts.sentDelta != nil {
			// A delta client that rejects a response keeps what it had:
			// the next responses add to that, not to what it rejected.
			ts.sentDelta = maps.Clone(ts.ackedDelta)
			ts.sent = ts.acked
		}
		return
	}
	ts.ackedVersion = ts.sentVersion
	ts.acked = ts.sent
	ts.ackedDelta = ts.sentDelta
	ts.ackedAt = time.Now()
	ts.nackNonce, ts.nackMessage = "", ""
}

// recordInitial records the versions a delta client has when it first
// subscribes to a type on a stream.
func (s *Server) recordInitial(id int64, req *discoverygrpc.DeltaDiscoveryRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.typeStatusLocked(id, req.GetTypeUrl())
	if ts == nil || ts.initial != nil || ts.responses > 0 {
		return
	}
	ts.initial = maps.Clone(req.GetInitialResourceVersions())
	if ts.initial == nil {
		ts.initial = map[string]string{}
	}
}

// recordResponse records a response sent on stream id; update records its
// resources.
func (s *Server) recordResponse(id int64, typeURL, nonce, version string, size int, update func(*typeStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.typeStatusLocked(id, typeURL)
	if ts == nil {
		return
	}
	ts.responses++
	ts.bytes += int64(size)
	ts.sentVersion = version
	ts.sentNonce = nonce
	ts.sentAt = time.Now()
	update(ts)
}

func sortedResources(m map[string]*anypb.Any) []*anypb.Any {
	out := make([]*anypb.Any, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[name])
	}
	return out
}

// hasCurrent reports whether versions, those a delta client said it had,
// are the current config's resources of typ.
func (ns *nodeState) hasCurrent(typ string, versions map[string]string) bool {
	if versions == nil || ns.current == nil || ns.current.VersionMap == nil {
		return false
	}
	return maps.Equal(versions, ns.current.VersionMap[typ])
}

// TypeStatus is the sync state of one xDS type of one proxy.
type TypeStatus struct {
	TypeURL string `json:"typeUrl"`
	// Current is the version of the latest config built for the proxy.
	Current string `json:"current,omitempty"`
	Sent    string `json:"sent,omitempty"`
	Acked   string `json:"acked,omitempty"`
	State   string `json:"state"`
	// Nack is the proxy's error message when State is NACKED.
	Nack   string    `json:"nack,omitempty"`
	SentAt time.Time `json:"sentAt,omitzero"`
	// Responses counts the responses of this type sent on the stream, and
	// Bytes their size.
	Responses int   `json:"responses"`
	Bytes     int64 `json:"bytes"`
}

// ProxyStatus is what proxy-status shows for one proxy.
type ProxyStatus struct {
	ID        string `json:"id"`
	Connected bool   `json:"connected"`
	// Delta tells whether the proxy uses incremental (delta) xDS.
	Delta          bool         `json:"delta"`
	ConnectedAt    time.Time    `json:"connectedAt,omitzero"`
	DisconnectedAt time.Time    `json:"disconnectedAt,omitzero"`
	Types          []TypeStatus `json:"types"`
}

// Status reports every proxy the server knows, sorted by ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for id, ns := range s.nodes {
		ps := ProxyStatus{ID: id, Connected: ns.connected, Delta: ns.delta, ConnectedAt: ns.connectedAt, DisconnectedAt: ns.disconnectedAt}
		for _, typ := range Types {
			ps.Types = append(ps.Types, ns.typeStatus(typ))
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (ns *nodeState) typeStatus(typ string) TypeStatus {
	t := TypeStatus{TypeURL: typ}
	if ns.current != nil {
		t.Current = ns.current.GetVersion(typ)
	}
	ts := ns.types[typ]
	switch {
	case ts == nil:
		t.State = StateNotSent
		return t
	case ts.responses == 0 && ns.hasCurrent(typ, ts.initial):
		// A delta client that resubscribed with the versions of the current
		// config gets nothing: it has it.
		t.State, t.Sent, t.Acked = StateSynced, t.Current, t.Current
		return t
	case ts.nackNonce != "" && ts.nackNonce == ts.sentNonce:
		t.State = StateNacked
		t.Nack = ts.nackMessage
	case ts.ackedVersion == ts.sentVersion && (t.Current == "" || t.Current == ts.sentVersion):
		t.State = StateSynced
	default:
		t.State = StateStale
	}
	t.Sent, t.Acked, t.SentAt, t.Responses, t.Bytes = ts.sentVersion, ts.ackedVersion, ts.sentAt, ts.responses, ts.bytes
	return t
}

// Config is what was sent to, or acknowledged by, one proxy for one type.
type Config struct {
	Version   string
	Resources []*anypb.Any
}

// SentConfig returns the resources of typeURL last sent to node, and
// those it acknowledged; ok is false when nothing was sent on its stream.
func (s *Server) SentConfig(node, typeURL string) (sent, acked Config, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nodes[node]
	if ns == nil {
		return Config{}, Config{}, false
	}
	ts := ns.types[typeURL]
	if ts == nil {
		return Config{}, Config{}, false
	}
	return Config{ts.sentVersion, ts.sent}, Config{ts.ackedVersion, ts.acked}, true
}
