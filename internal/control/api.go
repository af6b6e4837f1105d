package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
	trellisresource "trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/xds"
)

// maxApplyBytes bounds an apply request.
const maxApplyBytes = 32 << 20

func (cp *controlPlane) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+controlapi.PathApply, cp.handleApply)
	mux.HandleFunc("GET "+controlapi.PathResources, cp.handleList)
	mux.HandleFunc("DELETE "+controlapi.PathResources, cp.handleDelete)
	mux.HandleFunc("GET "+controlapi.PathProxies, cp.handleProxies)
	mux.HandleFunc("GET "+controlapi.PathConfig, cp.handleConfigDump)
	mux.HandleFunc("GET "+controlapi.PathReady, func(w http.ResponseWriter, r *http.Request) {
		if !cp.ready.Load() {
			writeErrors(w, http.StatusServiceUnavailable, "starting")
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
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

// messages splits a joined error into its messages.
func messages(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, messages(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func (cp *controlPlane) handleApply(w http.ResponseWriter, r *http.Request) {
	var req controlapi.ApplyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxApplyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, "apply: malformed request: "+err.Error())
		return
	}
	resp, errs := cp.apply(r.Context(), req)
	if len(errs) > 0 {
		writeErrors(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	writeJSON(w, resp)
}

// apply validates every resource of the request and, only if all are
// valid, stores them in one transaction.
func (cp *controlPlane) apply(ctx context.Context, req controlapi.ApplyRequest) (*controlapi.ApplyResponse, []string) {
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	var errs []string
	var objs []*trellisresource.Object
	for _, f := range req.Files {
		decoded, err := trellisresource.Decode(f.Name, []byte(f.Content))
		if err != nil {
			errs = append(errs, messages(err)...)
		}
		objs = append(objs, decoded...)
	}
	seen := map[string]*trellisresource.Object{}
	for _, o := range objs {
		trellisresource.Default(o, ns)
		if err := trellisresource.Validate(o); err != nil {
			errs = append(errs, messages(err)...)
		}
		key := resourceKey(o.Kind, o.Namespace, o.Name)
		if prev, ok := seen[key]; ok {
			errs = append(errs, fmt.Sprintf("%s:%d: %s: also defined at %s:%d; each resource may appear once", o.File, o.Line, o.Ref(), prev.File, prev.Line))
		}
		seen[key] = o
	}
	if len(errs) == 0 && len(objs) == 0 {
		errs = append(errs, "apply: no resources in the input")
	}
	if len(errs) > 0 {
		return nil, append(errs, "nothing was applied")
	}

	now := time.Now().UTC()
	var writes []store.Write
	resp := &controlapi.ApplyResponse{}
	for _, o := range objs {
		key := resourceKey(o.Kind, o.Namespace, o.Name)
		meta, ok := o.Obj.(metav1.Object)
		if !ok {
			return nil, []string{fmt.Sprintf("%s: internal error: %T has no metadata", o.Ref(), o.Obj)}
		}
		action := "created"
		meta.SetCreationTimestamp(metav1.NewTime(now.Truncate(time.Second)))
		meta.SetGeneration(1)
		meta.SetResourceVersion("")
		if old, err := cp.store.Get(ctx, key); err == nil {
			action = "configured"
			if prev, err := trellisresource.DecodeOne(o.Kind, old.Value); err == nil {
				if pm, ok := prev.Obj.(metav1.Object); ok {
					meta.SetCreationTimestamp(pm.GetCreationTimestamp())
					meta.SetGeneration(pm.GetGeneration())
				}
			}
			if value, err := trellisresource.Encode(o); err == nil && bytes.Equal(value, old.Value) {
				resp.Results = append(resp.Results, controlapi.ApplyResult{Ref: o.Ref(), Action: "unchanged"})
				continue
			}
			meta.SetGeneration(meta.GetGeneration() + 1)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, []string{"apply: " + err.Error(), "nothing was applied"}
		}
		value, err := trellisresource.Encode(o)
		if err != nil {
			return nil, []string{fmt.Sprintf("%s: encoding: %v", o.Ref(), err), "nothing was applied"}
		}
		writes = append(writes, store.Write{Key: key, Value: value})
		resp.Results = append(resp.Results, controlapi.ApplyResult{Ref: o.Ref(), Action: action})
	}
	if req.DryRun || len(writes) == 0 {
		return resp, nil
	}
	if _, err := cp.store.Apply(ctx, writes); err != nil {
		return nil, []string{"apply: " + err.Error(), "nothing was applied"}
	}
	return resp, nil
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
	items, _, err := cp.store.List(r.Context(), prefix)
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
	if name := q.Get("name"); name != "" && len(out) == 0 {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("%s %q not found", k.Kind, name))
		return
	}
	writeJSON(w, out)
}

func (cp *controlPlane) handleDelete(w http.ResponseWriter, r *http.Request) {
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
	deleted, err := cp.store.Delete(r.Context(), resourceKey(k.Kind, ns, name))
	if err != nil {
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	ref := k.Kind + " " + name
	if ns != "" {
		ref = k.Kind + " " + ns + "/" + name
	}
	if !deleted {
		writeErrors(w, http.StatusNotFound, ref+" not found")
		return
	}
	writeJSON(w, controlapi.DeleteResponse{Ref: ref})
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
			ID: s.ID, Connected: s.Connected, ConnectedAt: s.ConnectedAt, DisconnectedAt: s.DisconnectedAt,
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
				Current: t.Current, Sent: t.Sent, Acked: t.Acked, Nack: t.Nack,
			})
		}
		out = append(out, ps)
	}
	cp.mu.Unlock()
	writeJSON(w, out)
}

// handleConfigDump returns the config last pushed to a proxy, by xDS type.
// Secrets carry certificates only: private keys never reach the control
// plane.
func (cp *controlPlane) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxy")
	snap := cp.xds.Snapshot(id)
	if snap == nil {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("no config was built for proxy %q; see `trellis proxy-status`", id))
		return
	}
	out := map[string][]json.RawMessage{}
	for _, typ := range xds.Types {
		items := snap.GetResources(typ)
		names := make([]string, 0, len(items))
		for n := range items {
			names = append(names, n)
		}
		slices.Sort(names)
		list := []json.RawMessage{}
		for _, n := range names {
			b, err := marshalResource(items[n])
			if err != nil {
				writeErrors(w, http.StatusInternalServerError, err.Error())
				return
			}
			list = append(list, b)
		}
		out[typeNames[typ]] = list
	}
	writeJSON(w, out)
}

func marshalResource(r types.Resource) (json.RawMessage, error) {
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
