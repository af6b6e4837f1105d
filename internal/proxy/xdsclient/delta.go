package xdsclient

import (
	"context"
	"fmt"
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// deltaStream follows one incremental (delta) ADS stream: the control
// plane sends the resources that changed and the names of those removed;
// the client keeps the whole set, hands it to the Handler after each
// update, and tells the control plane on a new stream which versions it
// already has, so that a reconnect resends only what changed meanwhile.
func (c *Client) deltaStream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.opts.Conn)
	s, err := ads.DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	subscribed := map[string][]string{} // non-wildcard type → names subscribed
	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if first {
			req.Node = c.opts.Node
			first = false
		}
		return s.Send(req)
	}
	subscribe := func(initial bool) error {
		for _, typeURL := range []string{ClusterType, ListenerType, EndpointType, RouteType, SecretType} {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
			if initial {
				req.InitialResourceVersions = maps.Clone(c.versions[typeURL])
			}
			if wildcard[typeURL] {
				if !initial {
					continue
				}
				req.ResourceNamesSubscribe = []string{"*"}
				if err := send(req); err != nil {
					return err
				}
				continue
			}
			names := c.handler.Names(typeURL)
			slices.Sort(names)
			names = slices.Compact(names)
			old := subscribed[typeURL]
			for _, n := range names {
				if !slices.Contains(old, n) {
					req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
				}
			}
			for _, n := range old {
				if !slices.Contains(names, n) {
					req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
				}
			}
			if len(req.ResourceNamesSubscribe) == 0 && len(req.ResourceNamesUnsubscribe) == 0 {
				continue
			}
			subscribed[typeURL] = names
			if err := send(req); err != nil {
				return err
			}
		}
		return nil
	}
	if err := subscribe(true); err != nil {
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
		applyErr := c.applyDelta(resp)
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if applyErr != nil {
			c.log.Warn("xDS update rejected; keeping the previous config", "type", shortType(resp.GetTypeUrl()), "version", resp.GetSystemVersionInfo(), "err", applyErr)
			ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: applyErr.Error()}
		} else {
			c.log.Debug("xDS delta update applied", "type", shortType(resp.GetTypeUrl()), "version", resp.GetSystemVersionInfo(),
				"changed", len(resp.GetResources()), "removed", len(resp.GetRemovedResources()))
		}
		if err := send(ack); err != nil {
			return err
		}
		if applyErr == nil {
			if err := subscribe(false); err != nil {
				return err
			}
		}
	}
}

// applyDelta merges a delta response into the applied set and hands the
// result to the Handler, or only the change to an UpdateHandler; on error
// nothing changes.
func (c *Client) applyDelta(resp *discoveryv3.DeltaDiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	if u, ok := c.handler.(UpdateHandler); ok {
		return c.updateDelta(u, resp)
	}
	next := maps.Clone(c.applied[typeURL])
	if next == nil {
		next = map[string]proto.Message{}
	}
	versions := maps.Clone(c.versions[typeURL])
	if versions == nil {
		versions = map[string]string{}
	}
	for i, r := range resp.GetResources() {
		name, m, err := unpack(typeURL, i, r.GetResource())
		if err != nil {
			return err
		}
		if r.GetName() != "" && r.GetName() != name {
			return fmt.Errorf("resource %d is named %q but holds %q", i, r.GetName(), name)
		}
		next[name] = m
		versions[name] = r.GetVersion()
	}
	for _, name := range resp.GetRemovedResources() {
		delete(next, name)
		delete(versions, name)
	}
	if err := c.handler.Apply(typeURL, next); err != nil {
		return err
	}
	c.applied[typeURL] = next
	c.versions[typeURL] = versions
	return nil
}

// updateDelta hands an UpdateHandler the change of a delta response, and
// keeps only the versions.
func (c *Client) updateDelta(u UpdateHandler, resp *discoveryv3.DeltaDiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	versions := maps.Clone(c.versions[typeURL])
	if versions == nil {
		versions = map[string]string{}
	}
	changed := make(map[string]Resource, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		name, m, err := unpack(typeURL, i, r.GetResource())
		if err != nil {
			return err
		}
		if r.GetName() != "" && r.GetName() != name {
			return fmt.Errorf("resource %d is named %q but holds %q", i, r.GetName(), name)
		}
		if _, dup := changed[name]; dup {
			return fmt.Errorf("resource %q appears twice", name)
		}
		changed[name] = Resource{Message: m, Raw: r.GetResource().GetValue()}
		versions[name] = r.GetVersion()
	}
	var removed []string
	for _, name := range resp.GetRemovedResources() {
		if _, ok := changed[name]; ok {
			continue
		}
		if _, ok := versions[name]; ok {
			removed = append(removed, name)
			delete(versions, name)
		}
	}
	if err := u.Update(typeURL, changed, removed); err != nil {
		return err
	}
	c.versions[typeURL] = versions
	return nil
}
