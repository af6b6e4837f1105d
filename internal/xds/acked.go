package xds

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// AckedVersion returns the version of typeURL that node acknowledged last
// on its current stream; ok is false when the node is not connected or
// acknowledged nothing of the type.
func (s *Server) AckedVersion(node, typeURL string) (version string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nodes[node]
	if ns == nil || !ns.connected {
		return "", false
	}
	t := ns.typeStatus(typeURL)
	return t.Acked, t.Acked != ""
}

// Acked returns the resource name of typeURL that node acknowledged last
// on its current stream, with the version of its type; ok is false when
// the node is not connected or its acknowledged config has no such
// resource. A delta client that resubscribed with the versions of the
// current config has the current config's resource.
func (s *Server) Acked(node, typeURL, name string) (res proto.Message, version string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nodes[node]
	if ns == nil || !ns.connected {
		return nil, "", false
	}
	ts := ns.types[typeURL]
	if ts == nil {
		return nil, "", false
	}
	if ts.responses == 0 && ns.hasCurrent(typeURL, ts.initial) {
		r := ns.current.GetResources(typeURL)[name]
		return r, ns.current.GetVersion(typeURL), r != nil
	}
	if ts.ackedVersion == "" {
		return nil, "", false
	}
	for _, a := range ts.acked {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		if cache.GetResourceName(m) == name {
			return m, ts.ackedVersion, true
		}
	}
	return nil, ts.ackedVersion, false
}
