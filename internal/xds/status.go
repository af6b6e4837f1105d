package xds

import (
	"cmp"
	"context"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
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
	node           *corev3.Node
	connected      bool
	connectedAt    time.Time
	disconnectedAt time.Time
	types          map[string]*typeStatus
	current        *cache.Snapshot
}

func (ns *nodeState) currentSnapshot() *cache.Snapshot {
	if ns == nil {
		return nil
	}
	return ns.current
}

type typeStatus struct {
	responses int
	// sent are the resources of the last response; acked those of the
	// last response the proxy acknowledged.
	sent, acked  []*anypb.Any
	sentVersion  string
	sentNonce    string
	sentAt       time.Time
	ackedVersion string
	ackedAt      time.Time
	nackNonce    string
	nackMessage  string
}

func (s *Server) recordRequest(id int64, node string, req *discoverygrpc.DiscoveryRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nodes[node]
	if ns == nil || ns.streamID != id {
		return
	}
	ts := ns.types[req.GetTypeUrl()]
	if ts == nil || req.GetResponseNonce() == "" || req.GetResponseNonce() != ts.sentNonce {
		return
	}
	if d := req.GetErrorDetail(); d != nil {
		ts.nackNonce = req.GetResponseNonce()
		ts.nackMessage = d.GetMessage()
		return
	}
	ts.ackedVersion = req.GetVersionInfo()
	ts.acked = ts.sent
	ts.ackedAt = time.Now()
	ts.nackNonce, ts.nackMessage = "", ""
}

func (s *Server) onResponse(_ context.Context, id int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil || st.node == nil {
		return
	}
	ns := s.nodes[st.node.GetId()]
	if ns == nil || ns.streamID != id {
		return
	}
	ts := ns.types[resp.GetTypeUrl()]
	if ts == nil {
		ts = &typeStatus{}
		ns.types[resp.GetTypeUrl()] = ts
	}
	ts.responses++
	ts.sent = resp.GetResources()
	ts.sentVersion = resp.GetVersionInfo()
	ts.sentNonce = resp.GetNonce()
	ts.sentAt = time.Now()
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
	// Responses counts the responses of this type sent on the stream.
	Responses int `json:"responses"`
}

// ProxyStatus is what proxy-status shows for one proxy.
type ProxyStatus struct {
	ID             string       `json:"id"`
	Connected      bool         `json:"connected"`
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
		ps := ProxyStatus{ID: id, Connected: ns.connected, ConnectedAt: ns.connectedAt, DisconnectedAt: ns.disconnectedAt}
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
	case ts.nackNonce != "" && ts.nackNonce == ts.sentNonce:
		t.State = StateNacked
		t.Nack = ts.nackMessage
	case ts.ackedVersion == ts.sentVersion && (t.Current == "" || t.Current == ts.sentVersion):
		t.State = StateSynced
	default:
		t.State = StateStale
	}
	t.Sent, t.Acked, t.SentAt, t.Responses = ts.sentVersion, ts.ackedVersion, ts.sentAt, ts.responses
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
