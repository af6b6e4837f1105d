package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/model"
	trellisresource "trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/xds"
)

// maxApplyBytes bounds an apply request.
const maxApplyBytes = store.MaxRequestBytes

func (cp *controlPlane) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+controlapi.PathApply, cp.handleApply)
	mux.HandleFunc("GET "+controlapi.PathResources, cp.handleList)
	mux.HandleFunc("DELETE "+controlapi.PathResources, cp.handleDelete)
	mux.HandleFunc("GET "+controlapi.PathProxies, cp.handleProxies)
	mux.HandleFunc("GET "+controlapi.PathFindings, cp.handleFindings)
	mux.HandleFunc("GET "+controlapi.PathDescribe, cp.handleDescribe)
	mux.HandleFunc("POST "+controlapi.PathTokens, cp.handleCreateTokens)
	mux.HandleFunc("GET "+controlapi.PathTokens, cp.handleListTokens)
	mux.HandleFunc("POST "+controlapi.PathTokens+"/{id}/revoke", cp.handleRevokeToken)
	cp.caRoutes(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cp.metrics.registry, promhttp.HandlerOpts{}))
	// Profiles, on the debug port (loopback by default).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET "+controlapi.PathConfig, cp.handleConfigDump)
	mux.HandleFunc("GET "+controlapi.PathTLSCheck, cp.handleTLSCheck)
	// Not ready while starting, or while etcd does not answer: the control
	// plane then still serves its proxies the last config it has, but
	// cannot take changes or new registrations.
	mux.HandleFunc("GET "+controlapi.PathReady, func(w http.ResponseWriter, r *http.Request) {
		if !cp.ready.Load() {
			writeErrors(w, http.StatusServiceUnavailable, "starting")
			return
		}
		if err := cp.store.Health(); err != nil {
			writeErrors(w, http.StatusServiceUnavailable, err.Error()+"; serving the last config")
			return
		}
		w.Write([]byte("ok\n"))
	})
	if cp.fromKube() {
		return localOnly(mux, "GET "+controlapi.PathReady, "GET /metrics")
	}
	return mux
}

// localOnly serves h to callers on loopback, and open (METHOD PATH) to
// everyone. On Kubernetes the debug port listens on the pod's address, for
// kubelet's readiness probe and Prometheus; the rest of the API (join
// tokens, root rotation, config dumps, profiles) is for an operator, who
// reaches it through kubectl port-forward, which arrives on loopback.
func localOnly(h http.Handler, open ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(open, r.Method+" "+r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			writeErrors(w, http.StatusForbidden, "on Kubernetes the control plane's API answers only local callers: "+
				"kubectl port-forward -n NAMESPACE deploy/trellis-control 15014, then use the CLI against 127.0.0.1:15014")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErrors(w http.ResponseWriter, code int, msgs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(controlapi.ErrorResponse{Errors: msgs})
}

func (cp *controlPlane) handleApply(w http.ResponseWriter, r *http.Request) {
	if cp.fromKube() {
		writeErrors(w, http.StatusConflict, errKubernetesSource)
		return
	}
	var req controlapi.ApplyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxApplyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, "apply: malformed request: "+err.Error())
		return
	}
	resp, errs := cp.apply(r.Context(), req)
	if len(errs) > 0 {
		cp.metrics.applies.WithLabelValues("refused").Inc()
		writeErrors(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	cp.metrics.applies.WithLabelValues("applied").Inc()
	writeJSON(w, resp)
}

// handleFindings analyzes the whole stored configuration with the
// registered workloads.
func (cp *controlPlane) handleFindings(w http.ResponseWriter, r *http.Request) {
	findings := cp.analyzeCurrent()
	if findings == nil {
		findings = []analyze.Finding{}
	}
	writeJSON(w, controlapi.FindingsResponse{Findings: findings})
}

// analyzeCurrent returns the findings of the stored configuration.
func (cp *controlPlane) analyzeCurrent() []analyze.Finding {
	stored, amend, _ := cp.analysisInput()
	return stored.Analyze(amend)
}

// analysisInput snapshots the stored resources and a function that adds
// the registered workloads to a model.
func (cp *controlPlane) analysisInput() (*trellisresource.Stored, func(*model.Config), [2]uint64) {
	cp.mu.Lock()
	stored := cp.storedLocked()
	regs := maps.Clone(cp.registrations)
	namespaces := cp.namespaces
	gen := [2]uint64{cp.objectsGen, cp.regsGen}
	cp.mu.Unlock()
	replace := cp.fromKube()
	return stored, func(c *model.Config) {
		c.Namespaces = namespaces
		addRegistered(c, regs, replace)
	}, gen
}

// lookupKind resolves the kind query parameter.
func lookupKind(w http.ResponseWriter, r *http.Request) (trellisresource.KindInfo, bool) {
	name := r.URL.Query().Get("kind")
	k, ok := trellisresource.LookupKind(name)
	if !ok {
		var known []string
		for _, k := range trellisresource.Kinds() {
			known = append(known, k.Kind)
		}
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("unknown kind %q; known kinds: %s", name, strings.Join(known, ", ")))
	}
	return k, ok
}

func (cp *controlPlane) handleList(w http.ResponseWriter, r *http.Request) {
	k, ok := lookupKind(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	prefix := resourcesPrefix + k.Kind + "/"
	if ns := q.Get("namespace"); ns != "" && k.Namespaced {
		prefix += ns + "/"
	}
	items, err := cp.listResources(r.Context(), prefix)
	if err != nil {
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := []controlapi.Resource{}
	for _, it := range items {
		parts := strings.Split(strings.TrimPrefix(it.Key, resourcesPrefix+k.Kind+"/"), "/")
		res := controlapi.Resource{Kind: k.Kind, Name: parts[len(parts)-1], Object: it.Value}
		if len(parts) == 2 {
			res.Namespace = parts[0]
		}
		if name := q.Get("name"); name != "" && name != res.Name {
			continue
		}
		out = append(out, res)
	}
	out = cp.withGatewayStatus(k.Kind, out)
	if name := q.Get("name"); name != "" && len(out) == 0 {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("%s %q not found", k.Kind, name))
		return
	}
	writeJSON(w, out)
}

func (cp *controlPlane) handleDelete(w http.ResponseWriter, r *http.Request) {
	if cp.fromKube() {
		writeErrors(w, http.StatusConflict, errKubernetesSource)
		return
	}
	k, ok := lookupKind(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	ns, name := q.Get("namespace"), q.Get("name")
	if !k.Namespaced {
		ns = ""
	} else if ns == "" {
		ns = "default"
	}
	key := resourceKey(k.Kind, ns, name)
	ref := k.Kind + " " + name
	if ns != "" {
		ref = k.Kind + " " + ns + "/" + name
	}
	resp := controlapi.DeleteResponse{Ref: ref}
	cp.applyMu.Lock()
	cp.mu.Lock()
	_, stored := cp.objects[key]
	cp.mu.Unlock()
	if stored {
		// Judged as an apply is: a deletion that breaks what remains (a
		// route left without its backend) is refused.
		var errs []string
		for _, f := range cp.analyzeChange(nil, analyze.Resource{Kind: k.Kind, Namespace: ns, Name: name}).added {
			if f.Severity == analyze.Error {
				errs = append(errs, f.String())
			} else {
				resp.Warnings = append(resp.Warnings, f.String())
			}
		}
		if len(errs) > 0 && q.Get("force") != "true" {
			cp.applyMu.Unlock()
			cp.metrics.applies.WithLabelValues("refused").Inc()
			writeErrors(w, http.StatusUnprocessableEntity, append(errs, "nothing was deleted (delete what depends on "+ref+" first, or use --force)")...)
			return
		}
		resp.Warnings = append(errs, resp.Warnings...)
	}
	deleted, err := cp.store.Delete(r.Context(), key)
	if err == nil && deleted {
		cp.mu.Lock()
		cp.applyItemLocked(store.Event{Item: store.Item{Key: key}, Deleted: true})
		cp.mu.Unlock()
		cp.trigger()
	}
	cp.applyMu.Unlock()
	if err != nil {
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !deleted {
		writeErrors(w, http.StatusNotFound, ref+" not found")
		return
	}
	writeJSON(w, resp)
}

// typeNames are the short names of the xDS types.
var typeNames = map[string]string{
	resource.ClusterType:  "CDS",
	resource.EndpointType: "EDS",
	resource.ListenerType: "LDS",
	resource.RouteType:    "RDS",
	resource.SecretType:   "SDS",
}

func (cp *controlPlane) handleProxies(w http.ResponseWriter, r *http.Request) {
	statuses := cp.xds.Status()
	cp.mu.Lock()
	out := make([]controlapi.ProxyStatus, 0, len(statuses))
	for _, s := range statuses {
		ps := controlapi.ProxyStatus{
			ID: s.ID, Connected: s.Connected, Delta: s.Delta, ConnectedAt: s.ConnectedAt, DisconnectedAt: s.DisconnectedAt,
			Problems: cp.problems[s.ID],
		}
		if m := cp.registrations[s.ID]; m != nil {
			ps.Kind = m.Kind
			ps.Workload = m.Namespace + "/" + m.Name
			ps.Identity = identity.ID{TrustDomain: cp.opts.TrustDomain, Namespace: m.Namespace, ServiceAccount: m.ServiceAccount}.String()
			ps.Address = m.Address
			ps.Version = m.Version
			if m.Kind == "gateway" {
				ps.Workload = m.Gateway
			}
		}
		for _, t := range s.Types {
			ps.Types = append(ps.Types, controlapi.TypeStatus{
				Type: typeNames[t.TypeURL], TypeURL: t.TypeURL, State: t.State,
				Current: t.Current, Sent: t.Sent, Acked: t.Acked, Nack: t.Nack, Responses: t.Responses, Bytes: t.Bytes,
			})
		}
		out = append(out, ps)
	}
	cp.mu.Unlock()
	writeJSON(w, out)
}

// handleConfigDump returns, for one proxy and each xDS type asked for
// (all by default), the resources last sent and those the proxy
// acknowledged. Secrets carry certificates only: private keys never reach
// the control plane.
func (cp *controlPlane) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxy")
	types := xds.Types
	if t := r.URL.Query().Get("type"); t != "" {
		url, ok := typeURLs[strings.ToUpper(t)]
		if !ok {
			writeErrors(w, http.StatusBadRequest, fmt.Sprintf("unknown type %q: use CDS, EDS, LDS, RDS or SDS", t))
			return
		}
		types = []string{url}
	}
	status := map[string]xds.TypeStatus{}
	known := false
	for _, ps := range cp.xds.Status() {
		if ps.ID == id {
			known = true
			for _, ts := range ps.Types {
				status[ts.TypeURL] = ts
			}
		}
	}
	if !known {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("proxy %q is not known to the control plane; `trellis proxy-status` lists them", id))
		return
	}
	var out []controlapi.ProxyConfig
	for _, typ := range types {
		pc := controlapi.ProxyConfig{Proxy: id, Type: typeNames[typ], TypeURL: typ, State: status[typ].State}
		sent, acked, ok := cp.xds.SentConfig(id, typ)
		if ok {
			var err error
			if pc.Sent, err = versionedJSON(sent); err == nil {
				pc.Acked, err = versionedJSON(acked)
			}
			if err != nil {
				writeErrors(w, http.StatusInternalServerError, err.Error())
				return
			}
		}
		out = append(out, pc)
	}
	writeJSON(w, out)
}

// typeURLs maps the short names of xDS types to their URLs.
var typeURLs = func() map[string]string {
	m := map[string]string{}
	for url, name := range typeNames {
		m[name] = url
	}
	return m
}()

func versionedJSON(c xds.Config) (controlapi.VersionedConfig, error) {
	out := controlapi.VersionedConfig{Version: c.Version, Resources: []json.RawMessage{}}
	for _, a := range c.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			return out, err
		}
		b, err := marshalResource(m)
		if err != nil {
			return out, err
		}
		out.Resources = append(out.Resources, b)
	}
	return out, nil
}

func marshalResource(r proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(r)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
