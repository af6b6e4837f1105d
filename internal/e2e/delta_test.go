package e2e

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/xds"
)

// recorder remembers what the proxy applied last, per type.
type recorder struct {
	inner xdsclient.Handler
	mu    sync.Mutex
	last  map[string]map[string]proto.Message
}

func (r *recorder) Apply(typeURL string, res map[string]proto.Message) error {
	if err := r.inner.Apply(typeURL, res); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]map[string]proto.Message{}
	}
	r.last[typeURL] = res
	return nil
}

func (r *recorder) Names(typeURL string) []string { return r.inner.Names(typeURL) }

func (r *recorder) cluster(name string) *clusterv3.Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _ := r.last[xdsclient.ClusterType][name].(*clusterv3.Cluster)
	return c
}

// TestDeltaXDS follows the same config over state-of-the-world and delta
// ADS: both proxies end with the same clusters, and a change to one of
// fifty clusters costs delta a small fraction of what it costs state of
// the world.
func TestDeltaXDS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := xds.New(ctx, acceptAll{}, testLogger(t, "xds"))
	gs := grpc.NewServer()
	srv.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	authority, err := ca.Open(ca.Options{Dir: t.TempDir(), TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}

	clients := map[string]*recorder{}
	for _, node := range []string{"sotw", "delta"} {
		p, err := proxy.New(proxy.Options{
			ControlPlane: ln.Addr().String(), TrustBundle: authority.Roots(), NodeID: node,
			Registration: nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: node, Namespace: "ns", ServiceAccount: "sa", Address: "127.0.0.1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rec := &recorder{inner: p}
		clients[node] = rec
		go xdsclient.New(xdsclient.Options{Conn: conn, Node: &corev3.Node{Id: node}, Delta: node == "delta", Log: testLogger(t, node)}, rec).Run(ctx)
	}

	clusters := func(changed uint32) *translate.Resources {
		res := &translate.Resources{}
		for i := range 50 {
			port := uint32(10000 + i)
			if i == 7 {
				port = changed
			}
			name := fmt.Sprintf("cluster-%02d", i)
			res.Clusters = append(res.Clusters, &clusterv3.Cluster{
				Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socket("127.0.0.1", port)}}}},
				}}},
			})
		}
		return res
	}
	cds := func(node string) xds.TypeStatus {
		for _, s := range srv.Status() {
			if s.ID == node {
				for _, ty := range s.Types {
					if ty.TypeURL == xdsclient.ClusterType {
						return ty
					}
				}
			}
		}
		return xds.TypeStatus{}
	}
	push := func(port uint32) {
		for node := range clients {
			if _, err := srv.Push(ctx, node, clusters(port), nil); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 10*time.Second, fmt.Sprintf("both proxies have cluster-07 on port %d", port), func() error {
			for node, rec := range clients {
				c := rec.cluster("cluster-07")
				if c == nil {
					return fmt.Errorf("%s has no cluster-07 yet", node)
				}
				got := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
				if got != port || cds(node).State != xds.StateSynced {
					return fmt.Errorf("%s: port %d, CDS %s", node, got, cds(node).State)
				}
			}
			return nil
		})
	}
	push(20007)
	for node, rec := range clients {
		rec.mu.Lock()
		n := len(rec.last[xdsclient.ClusterType])
		rec.mu.Unlock()
		if n != 50 {
			t.Errorf("%s applied %d clusters, want 50", node, n)
		}
	}
	before := map[string]int64{"sotw": cds("sotw").Bytes, "delta": cds("delta").Bytes}
	push(30007)
	sotw, delta := cds("sotw").Bytes-before["sotw"], cds("delta").Bytes-before["delta"]
	t.Logf("one cluster changed: state of the world sent %d bytes, delta %d", sotw, delta)
	if delta*10 > sotw {
		t.Errorf("delta sent %d bytes for one changed cluster, state of the world %d: want under a tenth", delta, sotw)
	}
	for _, s := range srv.Status() {
		if s.ID == "delta" && !s.Delta || s.ID == "sotw" && s.Delta {
			t.Errorf("%s reported delta=%v", s.ID, s.Delta)
		}
	}
}
