package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

func nowNanos() int64 { return time.Now().UnixNano() }

// adminHandler serves the localhost admin endpoint:
//
//	/ready        200 once the proxy has a certificate and its first config
//	/config_dump  the xDS resources in force, by type (never private keys)
//	/clusters     each cluster's endpoints
//	/certs        the gateway listener certificates read from files: loaded
//	              or not, until when, the last load error
//	/debug/pprof/ Go profiles (CPU, heap, allocations, goroutines)
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "LIVE")
	})
	mux.HandleFunc("GET /config_dump", p.handleConfigDump)
	mux.HandleFunc("GET /certs", p.handleGatewayCerts)
	mux.HandleFunc("GET /clusters", func(w http.ResponseWriter, r *http.Request) {
		clusters := *p.clusters.Load()
		for _, name := range slices.Sorted(maps.Keys(clusters)) {
			c := clusters[name]
			eps := c.hosts.Load().all
			if len(eps) == 0 {
				fmt.Fprintf(w, "%s: no endpoints\n", name)
			}
			for _, ep := range eps {
				mode := "plaintext"
				if ep.tls != nil {
					mode = "mtls sni=" + ep.tls.sni
				}
				health := "healthy"
				if ep.st.ejected.Load() {
					health = "ejected"
				}
				fmt.Fprintf(w, "%s: %s %s priority=%d %s active=%d\n", name, ep.addr, mode, ep.priority, health, ep.st.active.Load())
			}
		}
	})
	return mux
}

// Ready reports why the proxy is not ready to serve, or nil.
func (p *Proxy) Ready() error {
	if p.secrets.Certificate() == nil {
		return fmt.Errorf("no certificate yet")
	}
	for _, typ := range []string{xdsclient.ClusterType, xdsclient.ListenerType} {
		if _, ok := p.applied.Load(typ); !ok {
			return fmt.Errorf("no %s received yet", typ)
		}
	}
	return nil
}

func (p *Proxy) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	dump := map[string][]json.RawMessage{}
	for typ, resources := range p.raw {
		list := []json.RawMessage{}
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(typ)
		if err != nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(resources)) {
			m := mt.New().Interface()
			raw, err := resources[name].bytes()
			if err != nil || proto.Unmarshal(raw, m) != nil {
				continue
			}
			b, err := protojson.Marshal(m)
			if err != nil {
				continue
			}
			var buf bytes.Buffer
			if json.Compact(&buf, b) == nil {
				list = append(list, buf.Bytes())
			}
		}
		dump[typ] = list
	}
	p.mu.Unlock()
	out := struct {
		Identity    string                       `json:"identity"`
		Certificate *certInfo                    `json:"certificate,omitempty"`
		Resources   map[string][]json.RawMessage `json:"resources"`
	}{Identity: p.secrets.ID().String(), Resources: dump}
	if c := p.secrets.Certificate(); c != nil {
		out.Certificate = &certInfo{Serial: c.Leaf.SerialNumber.Text(16), NotBefore: c.Leaf.NotBefore, NotAfter: c.Leaf.NotAfter}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

type certInfo struct {
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}
