package proxy

import (
	"strings"
	"testing"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestTCPProxyWeightedClusters(t *testing.T) {
	weighted := func(ws ...uint32) *tcpproxyv3.TcpProxy {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for i, w := range ws {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: string(rune('a' + i)), Weight: w})
		}
		return &tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}}
	}
	tp, err := compileTCPProxy(weighted(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tp.clusters(), ","); got != "a,b" {
		t.Errorf("clusters %s, want a,b", got)
	}
	counts := map[string]int{}
	for n := range uint32(4) {
		counts[tp.pick(func(uint32) uint32 { return n })]++
	}
	if counts["a"] != 3 || counts["b"] != 1 {
		t.Errorf("over every draw: %v, want a 3 times, b once", counts)
	}
	if _, err := compileTCPProxy(weighted(1, 0)); err == nil || !strings.Contains(err.Error(), "Weight") {
		t.Errorf("a weight of 0: %v", err)
	}
	if _, err := compileTCPProxy(&tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"},
		MaxConnectAttempts: wrapperspb.UInt32(3)}); err == nil || !strings.Contains(err.Error(), "max_connect_attempts") {
		t.Errorf("an unimplemented field: %v", err)
	}
}
