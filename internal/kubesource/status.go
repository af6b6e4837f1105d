package kubesource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
)

// ControllerName is the controllerName of GatewayClasses whose Gateways
// Trellis serves, and the one it writes in routes' parent statuses.
const ControllerName = "trellis.dev/gateway"

// View is what status is made of. The control plane implements it.
type View interface {
	Analysis() *Analysis
}

// Analysis is the config as the translator sees it, with the analyzer's
// findings and route attachments.
type Analysis struct {
	Config      *model.Config
	Findings    []analyze.Finding
	Attachments []analyze.Attachment
	// Proxies are the gateway proxies registered with the control plane
	// (gatewayinstances.go): what a Gateway's addresses and Programmed
	// condition are made of.
	Proxies []GatewayProxy
}

// statusInput indexes an Analysis for the status of each object.
type statusInput struct {
	*Analysis
	findings map[analyze.Resource][]analyze.Finding
	gateways map[model.Key]*model.Gateway
	sets     map[model.Key]*model.ListenerSet
	classes  map[string]bool // ours, by name
	// attached counts the routes attached to each listener.
	attached map[listenerKey]int
	// instances says what runs a Gateway; nil: its registered proxies.
	instances func(*gwv1.Gateway) Instances
}

type listenerKey struct {
	owner analyze.Resource
	index int
}

func newStatusInput(a *Analysis) *statusInput {
	in := &statusInput{
		Analysis: a,
		findings: map[analyze.Resource][]analyze.Finding{},
		gateways: map[model.Key]*model.Gateway{},
		sets:     map[model.Key]*model.ListenerSet{},
		classes:  map[string]bool{},
		attached: map[listenerKey]int{},
	}
	for _, f := range a.Findings {
		in.findings[f.Resource] = append(in.findings[f.Resource], f)
	}
	for _, g := range a.Config.Gateways {
		in.gateways[g.Key] = g
	}
	for _, s := range a.Config.ListenerSets {
		in.sets[s.Key] = s
	}
	for _, c := range a.Config.GatewayClasses {
		if c.ControllerName == ControllerName {
			in.classes[c.Name] = true
		}
	}
	// A route counts once per listener, however many of its parentRefs
	// attach there.
	seen := map[struct {
		route analyze.Resource
		l     listenerKey
	}]bool{}
	for _, at := range a.Attachments {
		l := listenerKey{at.Listener, at.ListenerIndex}
		k := struct {
			route analyze.Resource
			l     listenerKey
		}{at.Route, l}
		if !seen[k] {
			seen[k] = true
			in.attached[l]++
		}
	}
	return in
}

// ours reports whether Trellis serves Gateway key.
func (in *statusInput) ours(key model.Key) bool {
	g := in.gateways[key]
	return g != nil && in.classes[g.ClassName]
}

// under returns the findings of res whose field is path or within it.
func under(fs []analyze.Finding, path string) []analyze.Finding {
	var out []analyze.Finding
	for _, f := range fs {
		if f.Field == path || strings.HasPrefix(f.Field, path+".") || strings.HasPrefix(f.Field, path+"[") {
			out = append(out, f)
		}
	}
	return out
}

// condition returns a condition of generation gen.
func condition(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: truncate(msg), ObservedGeneration: gen}
}

// truncate keeps a message within the 32768 bytes a condition allows.
func truncate(msg string) string {
	const limit = 32768
	if len(msg) <= limit {
		return msg
	}
	return msg[:limit-3] + "..."
}

// merge returns conds with the lastTransitionTime of old kept for every
// condition whose status did not change, so that an unchanged status
// compares equal to the one written.
func merge(old, conds []metav1.Condition) []metav1.Condition {
	out := make([]metav1.Condition, len(conds))
	for i, c := range conds {
		c.LastTransitionTime = metav1.Now()
		if prev := meta.FindStatusCondition(old, c.Type); prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
		}
		out[i] = c
	}
	return out
}

func messages(fs []analyze.Finding) string {
	var b []string
	for _, f := range fs {
		s := f.Code + ": " + f.Message
		if f.Field != "" {
			s = f.Code + " " + f.Field + ": " + f.Message
		}
		b = append(b, s)
	}
	return strings.Join(b, "; ")
}

// gatewayClassStatus: a class of Trellis's is accepted, with the features
// Trellis supports.
func gatewayClassStatus(gc *gwv1.GatewayClass) gwv1.GatewayClassStatus {
	st := *gc.Status.DeepCopy()
	st.Conditions = merge(gc.Status.Conditions, []metav1.Condition{
		condition(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "Trellis serves the Gateways of this class", gc.Generation),
	})
	st.SupportedFeatures = supportedFeatures()
	return st
}

// listenerConflicts maps the analyzer's listener codes to the Conflicted
// reason of the Gateway API.
var listenerConflicts = map[string]gwv1.ListenerConditionReason{
	analyze.CodeProtocols: gwv1.ListenerReasonProtocolConflict,
	analyze.CodeL4Shared:  gwv1.ListenerReasonProtocolConflict,
	analyze.CodeDuplicate: gwv1.ListenerReasonHostnameConflict,
	// Two Gateways on one address and port: no Gateway API reason fits.
	analyze.CodeAddress: "AddressConflict",
}

// listenerStatus computes the status of listener i of owner (a Gateway
// or a ListenerSet in namespace ns): its conditions from the findings fs
// about owner, its kinds from ml (nil when the model has no such
// listener), its attached routes. programmed tells whether it is in the
// config proxies get.
func listenerStatus(in *statusInput, owner analyze.Resource, i int, name gwv1.SectionName, protocol gwv1.ProtocolType, tls *gwv1.ListenerTLSConfig, ml *model.Listener,
	fs []analyze.Finding, old []metav1.Condition, gen int64, secret func(ns, name string) error) (st gwv1.ListenerStatus, programmed bool) {
	switch {
	case !servedProtocols[protocol]:
		return unsupportedListener(name, gwv1.ListenerReasonUnsupportedProtocol,
			fmt.Sprintf("protocol %s is not served (HTTP, HTTPS, TLS and TCP are)", protocol), old, gen), false
	case protocol == gwv1.TLSProtocolType && tls != nil && tls.Mode != nil && *tls.Mode == gwv1.TLSModeTerminate:
		return unsupportedListener(name, gwv1.ListenerReasonUnsupportedValue,
			"TLS listeners are served in mode Passthrough only (HTTPS terminates TLS)", old, gen), false
	}
	lfs := under(fs, fmt.Sprintf("spec.listeners[%d]", i))
	st = gwv1.ListenerStatus{
		Name:           name,
		SupportedKinds: []gwv1.RouteGroupKind{},
		AttachedRoutes: int32(in.attached[listenerKey{owner, i}]),
	}
	resolved, refsReason, refsMsg := true, gwv1.ListenerReasonResolvedRefs, "references resolved"
	if ml != nil {
		supported, invalid := analyze.ListenerKinds(ml)
		for _, k := range supported {
			group := gwv1.Group(gwv1.GroupName)
			st.SupportedKinds = append(st.SupportedKinds, gwv1.RouteGroupKind{Group: &group, Kind: gwv1.Kind(k)})
		}
		if len(invalid) > 0 {
			var names []string
			for _, k := range invalid {
				names = append(names, k.String())
			}
			resolved, refsReason, refsMsg = false, gwv1.ListenerReasonInvalidRouteKinds, "route kinds not served: "+strings.Join(names, ", ")
		}
	}
	if tls != nil {
		for j, ref := range tls.CertificateRefs {
			field := fmt.Sprintf("spec.listeners[%d].tls.certificateRefs[%d]", i, j)
			ns := owner.Namespace
			if ref.Namespace != nil {
				ns = string(*ref.Namespace)
			}
			switch {
			case len(under(lfs, field)) > 0:
				resolved, refsReason, refsMsg = false, gwv1.ListenerReasonRefNotPermitted, messages(under(lfs, field))
			case (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret"):
				resolved, refsReason, refsMsg = false, gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: not a Secret (group \"\", kind Secret)", field)
			default:
				if err := secret(ns, string(ref.Name)); err != nil {
					resolved, refsReason, refsMsg = false, gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: %v", field, err)
				}
			}
		}
	}
	conflicted, conflictReason, conflictMsg := false, gwv1.ListenerReasonNoConflicts, "no conflicts"
	for _, f := range lfs {
		if r, ok := listenerConflicts[f.Code]; ok {
			conflicted, conflictReason, conflictMsg = true, r, messages([]analyze.Finding{f})
			break
		}
	}
	programmed = resolved && !conflicted
	progReason, progMsg := gwv1.ListenerReasonProgrammed, "in the config sent to the Gateway's proxies"
	acceptReason, acceptMsg := gwv1.ListenerReasonAccepted, ""
	switch {
	case conflicted:
		// A conflicted listener is neither accepted nor programmed, for
		// the conflict's reason (as the suite's ListenerSet tests read it).
		acceptReason, acceptMsg = conflictReason, conflictMsg
		progReason, progMsg = conflictReason, "not programmed: "+conflictMsg
	case !programmed:
		progReason, progMsg = gwv1.ListenerReasonInvalid, "not programmed: "+refsMsg
	}
	st.Conditions = merge(old, []metav1.Condition{
		condition(string(gwv1.ListenerConditionAccepted), !conflicted, string(acceptReason), acceptMsg, gen),
		condition(string(gwv1.ListenerConditionConflicted), conflicted, string(conflictReason), conflictMsg, gen),
		condition(string(gwv1.ListenerConditionResolvedRefs), resolved, string(refsReason), refsMsg, gen),
		condition(string(gwv1.ListenerConditionProgrammed), programmed, string(progReason), progMsg, gen),
	})
	return st, programmed
}

// oldListener returns the conditions a listener's status has.
func oldListener[T any](statuses []T, name gwv1.SectionName, get func(T) (gwv1.SectionName, []metav1.Condition)) []metav1.Condition {
	for _, st := range statuses {
		if n, conds := get(st); n == name {
			return conds
		}
	}
	return nil
}

// gatewayStatus computes a Gateway's status; secret tells whether a TLS
// Secret exists.
func gatewayStatus(gw *gwv1.Gateway, in *statusInput, secret func(ns, name string) error) gwv1.GatewayStatus {
	inst := in.instancesOf(gw)
	res := analyze.Resource{Kind: "Gateway", Namespace: gw.Namespace, Name: gw.Name}
	key := model.Key{Namespace: gw.Namespace, Name: gw.Name}
	mg := in.gateways[key]
	fs := in.findings[res]
	gen := gw.Generation
	st := gwv1.GatewayStatus{Addresses: inst.Addresses}
	// A Gateway naming parameters Trellis does not read is not accepted,
	// and none of its listeners is served.
	params := under(fs, "spec.infrastructure.parametersRef")
	programmed, acceptedListeners := 0, 0
	for i, l := range gw.Spec.Listeners {
		var ml *model.Listener
		if mg != nil && i < len(mg.Listeners) {
			ml = &mg.Listeners[i]
		}
		old := oldListener(gw.Status.Listeners, l.Name, func(s gwv1.ListenerStatus) (gwv1.SectionName, []metav1.Condition) { return s.Name, s.Conditions })
		ls, ok := listenerStatus(in, res, i, l.Name, l.Protocol, l.TLS, ml, fs, old, gen, secret)
		if len(params) > 0 {
			ok = false
			not := merge(old, []metav1.Condition{condition(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid),
				"not programmed: the Gateway is not accepted", gen)})[0]
			for j := range ls.Conditions {
				if ls.Conditions[j].Type == not.Type {
					ls.Conditions[j] = not
				}
			}
		}
		if ok {
			programmed++
		}
		if listenerAccepted(ls.Conditions) {
			acceptedListeners++
		}
		st.Listeners = append(st.Listeners, ls)
	}
	if gw.Spec.AllowedListeners != nil {
		n := int32(0)
		for _, set := range in.Config.ListenerSets {
			if set.Gateway == key && in.setAccepted(set, secret) {
				n++
			}
		}
		st.AttachedListenerSets = &n
	}
	// Accepted while any listener is, with reason ListenersNotValid when
	// some are not (as the Gateway API has it).
	accepted, reason, msg := true, gwv1.GatewayReasonAccepted, messages(fs)
	switch {
	case len(gw.Spec.Listeners) > 0 && (programmed == 0 || acceptedListeners == 0):
		accepted, reason = false, gwv1.GatewayReasonListenersNotValid
	case acceptedListeners < len(gw.Spec.Listeners):
		reason = gwv1.GatewayReasonListenersNotValid
	}
	if reason == gwv1.GatewayReasonListenersNotValid && msg == "" {
		msg = fmt.Sprintf("%d of %d listeners accepted", acceptedListeners, len(gw.Spec.Listeners))
	}
	if len(params) > 0 {
		accepted, reason, msg = false, gwv1.GatewayReasonInvalidParameters, messages(params)
	}
	progReason, progMsg := gwv1.GatewayReasonProgrammed, fmt.Sprintf("%d of %d listeners programmed", programmed, len(gw.Spec.Listeners))
	switch {
	case programmed == 0:
		progReason = gwv1.GatewayReasonInvalid
	case !inst.Ready:
		progReason, progMsg = inst.Reason, progMsg+"; "+inst.Message
	default:
		progMsg += "; " + inst.Message
	}
	st.Conditions = merge(gw.Status.Conditions, []metav1.Condition{
		condition(string(gwv1.GatewayConditionAccepted), accepted, string(reason), msg, gen),
		condition(string(gwv1.GatewayConditionProgrammed), programmed > 0 && inst.Ready, string(progReason), progMsg, gen),
	})
	return st
}

// setAttached reports whether a ListenerSet attaches to its Gateway: the
// analyzer found nothing wrong with its parentRef.
func (in *statusInput) setAttached(set *model.ListenerSet) bool {
	res := analyze.Resource{Kind: "ListenerSet", Namespace: set.Namespace, Name: set.Name}
	return len(under(in.findings[res], "spec.parentRef")) == 0
}

// setAccepted reports whether a ListenerSet is accepted: attached to its
// Gateway, with a listener programmed, as listenerSetStatus judges it from
// the model's copy of its listeners. A Gateway's attachedListenerSets
// counts these.
func (in *statusInput) setAccepted(set *model.ListenerSet, secret func(ns, name string) error) bool {
	if !in.setAttached(set) {
		return false
	}
	res := analyze.Resource{Kind: "ListenerSet", Namespace: set.Namespace, Name: set.Name}
	for i := range set.Listeners {
		ml := &set.Listeners[i]
		var tls *gwv1.ListenerTLSConfig
		if ml.TLS != nil {
			mode := gwv1.TLSModeType(ml.TLS.Mode)
			tls = &gwv1.ListenerTLSConfig{Mode: &mode}
			for _, r := range ml.TLS.CertificateRefs {
				group, kind, ns := gwv1.Group(r.Group), gwv1.Kind(r.Kind), gwv1.Namespace(r.Namespace)
				tls.CertificateRefs = append(tls.CertificateRefs, gwv1.SecretObjectReference{Group: &group, Kind: &kind, Namespace: &ns, Name: gwv1.ObjectName(r.Name)})
			}
		}
		if _, ok := listenerStatus(in, res, i, gwv1.SectionName(ml.Name), gwv1.ProtocolType(ml.Protocol), tls, ml, in.findings[res], nil, 0, secret); ok {
			return true
		}
	}
	return false
}

// listenerSetStatus computes the status of a ListenerSet whose Gateway
// Trellis serves.
func listenerSetStatus(ls *gwv1.ListenerSet, in *statusInput, secret func(ns, name string) error) gwv1.ListenerSetStatus {
	res := analyze.Resource{Kind: "ListenerSet", Namespace: ls.Namespace, Name: ls.Name}
	set := in.sets[model.Key{Namespace: ls.Namespace, Name: ls.Name}]
	fs := in.findings[res]
	gen := ls.Generation
	attached := set != nil && in.setAttached(set)
	var st gwv1.ListenerSetStatus
	programmed := 0
	for i, l := range ls.Spec.Listeners {
		var ml *model.Listener
		if set != nil && i < len(set.Listeners) {
			ml = &set.Listeners[i]
		}
		old := oldListener(ls.Status.Listeners, l.Name, func(s gwv1.ListenerEntryStatus) (gwv1.SectionName, []metav1.Condition) { return s.Name, s.Conditions })
		one, ok := listenerStatus(in, res, i, l.Name, l.Protocol, l.TLS, ml, fs, old, gen, secret)
		if ok && attached {
			programmed++
		}
		st.Listeners = append(st.Listeners, gwv1.ListenerEntryStatus{
			Name: one.Name, SupportedKinds: one.SupportedKinds, AttachedRoutes: one.AttachedRoutes, Conditions: one.Conditions,
		})
	}
	accepted, reason, msg := true, gwv1.ListenerSetReasonAccepted, messages(fs)
	switch {
	case !attached:
		accepted, reason, msg = false, gwv1.ListenerSetReasonNotAllowed, messages(under(fs, "spec.parentRef"))
	case programmed == 0:
		accepted, reason = false, gwv1.ListenerSetReasonListenersNotValid
	}
	progReason := gwv1.ListenerSetReasonProgrammed
	switch {
	case !attached:
		progReason = gwv1.ListenerSetReasonNotAllowed
	case programmed == 0:
		progReason = gwv1.ListenerSetReasonListenersNotValid
	}
	st.Conditions = merge(ls.Status.Conditions, []metav1.Condition{
		condition(string(gwv1.ListenerSetConditionAccepted), accepted, string(reason), msg, gen),
		condition(string(gwv1.ListenerSetConditionProgrammed), programmed > 0, string(progReason), fmt.Sprintf("%d of %d listeners programmed", programmed, len(ls.Spec.Listeners)), gen),
	})
	return st
}

// servedProtocols are the listener protocols Trellis gateways serve.
var servedProtocols = map[gwv1.ProtocolType]bool{
	gwv1.HTTPProtocolType: true, gwv1.HTTPSProtocolType: true, gwv1.TLSProtocolType: true, gwv1.TCPProtocolType: true,
}

// unsupportedListener is the status of a listener Trellis does not serve
// (its protocol, or a value of it): not accepted for reason, nothing
// attached, not programmed.
func unsupportedListener(name gwv1.SectionName, reason gwv1.ListenerConditionReason, msg string, old []metav1.Condition, gen int64) gwv1.ListenerStatus {
	return gwv1.ListenerStatus{
		Name:           name,
		SupportedKinds: []gwv1.RouteGroupKind{},
		Conditions: merge(old, []metav1.Condition{
			condition(string(gwv1.ListenerConditionAccepted), false, string(reason), msg, gen),
			condition(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "no conflicts", gen),
			condition(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "references resolved", gen),
			condition(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), "not programmed: "+msg, gen),
		}),
	}
}

// listenerAccepted tells whether a listener's status says Accepted.
func listenerAccepted(conds []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conds, string(gwv1.ListenerConditionAccepted))
}

// parentReasons maps the analyzer's parentRef codes to the Accepted
// reason of a route's parent status.
var parentReasons = map[string]gwv1.RouteConditionReason{
	analyze.CodeNoParent:      gwv1.RouteReasonNoMatchingParent,
	analyze.CodeNoListener:    gwv1.RouteReasonNoMatchingParent,
	analyze.CodeNoParentSvc:   gwv1.RouteReasonNoMatchingParent,
	analyze.CodeNotAllowedNS:  gwv1.RouteReasonNotAllowedByListeners,
	analyze.CodeNotAllowedKin: gwv1.RouteReasonNotAllowedByListeners,
	analyze.CodeSelectorUnkn:  gwv1.RouteReasonNotAllowedByListeners,
	analyze.CodeNoHostname:    gwv1.RouteReasonNoMatchingListenerHostname,
	analyze.CodePortProtocol:  gwv1.RouteReasonUnsupportedValue,
}

// refReasons maps the analyzer's backend codes to the ResolvedRefs
// reason of a route.
var refReasons = map[string]gwv1.RouteConditionReason{
	analyze.CodeNoBackend:     gwv1.RouteReasonBackendNotFound,
	analyze.CodeNoBackendPort: gwv1.RouteReasonBackendNotFound,
	analyze.CodeNoGrant:       gwv1.RouteReasonRefNotPermitted,
	analyze.CodeBackendKind:   gwv1.RouteReasonInvalidKind,
}

// routeStatus computes the parent statuses of a route of kind: those of
// the parentRefs Trellis serves (Gateways of its classes, ListenerSets of
// them, Services) replaced, the other controllers' kept.
func routeStatus(kind string, meta metav1.ObjectMeta, parents []gwv1.ParentReference, old gwv1.RouteStatus, in *statusInput) gwv1.RouteStatus {
	res := analyze.Resource{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}
	fs := in.findings[res]
	var refs []analyze.Finding
	for _, f := range under(fs, "spec.rules") {
		if _, ok := refReasons[f.Code]; ok {
			refs = append(refs, f)
		}
	}
	resolved, refsReason, refsMsg := true, gwv1.RouteReasonResolvedRefs, "references resolved"
	if len(refs) > 0 {
		resolved, refsReason, refsMsg = false, refReasons[refs[0].Code], messages(refs)
	}
	st := gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{}}
	for _, p := range old.Parents {
		if p.ControllerName != ControllerName {
			st.Parents = append(st.Parents, p)
		}
	}
	for i, p := range parents {
		if !in.servesParent(meta.Namespace, p) {
			continue
		}
		var prev []metav1.Condition
		for _, op := range old.Parents {
			if op.ControllerName == ControllerName && apiequality.Semantic.DeepEqual(op.ParentRef, p) {
				prev = op.Conditions
			}
		}
		accepted, reason, msg := true, gwv1.RouteReasonAccepted, "attached"
		for _, f := range fs {
			if r, ok := parentReasons[f.Code]; ok && f.Field == fmt.Sprintf("spec.parentRefs[%d]", i) {
				accepted, reason, msg = false, r, messages([]analyze.Finding{f})
				break
			}
		}
		st.Parents = append(st.Parents, gwv1.RouteParentStatus{
			ParentRef:      p,
			ControllerName: ControllerName,
			Conditions: merge(prev, []metav1.Condition{
				condition(string(gwv1.RouteConditionAccepted), accepted, string(reason), msg, meta.Generation),
				condition(string(gwv1.RouteConditionResolvedRefs), resolved, string(refsReason), refsMsg, meta.Generation),
			}),
		})
	}
	return st
}

// servesParent reports whether Trellis serves a route's parentRef: a
// Gateway of its classes, a ListenerSet of one, or a Service (mesh).
func (in *statusInput) servesParent(routeNS string, p gwv1.ParentReference) bool {
	group, kind := gwv1.GroupName, "Gateway"
	if p.Group != nil {
		group = string(*p.Group)
	}
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	key := model.Key{Namespace: ns, Name: string(p.Name)}
	switch {
	case (group == "" || group == "core") && kind == "Service":
		return true
	case group == gwv1.GroupName && kind == "Gateway":
		return in.ours(key)
	case group == gwv1.GroupName && kind == "ListenerSet":
		s := in.sets[key]
		return s != nil && in.ours(s.Gateway)
	}
	return false
}

// trellisStatus computes the conditions of a trellis.dev resource from the
// analyzer's findings about it.
func trellisStatus(kind string, meta metav1.ObjectMeta, old v1alpha1.Status, in *statusInput) v1alpha1.Status {
	fs := in.findings[analyze.Resource{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}]
	var errs, targets []analyze.Finding
	for _, f := range fs {
		if f.Severity == analyze.Error {
			errs = append(errs, f)
		}
		if f.Code == analyze.CodeNoTarget || f.Code == analyze.CodeNoTargetPort {
			targets = append(targets, f)
		}
	}
	accepted := condition("Accepted", true, "Accepted", "in effect", meta.Generation)
	if len(errs) > 0 {
		accepted = condition("Accepted", false, "Invalid", messages(errs), meta.Generation)
	}
	refs := condition("ResolvedRefs", true, "ResolvedRefs", "references resolved", meta.Generation)
	if len(targets) > 0 {
		refs = condition("ResolvedRefs", false, "TargetNotFound", messages(targets), meta.Generation)
	}
	analyzed := condition("Analyzed", true, "NoFindings", "the analyzer finds nothing to report", meta.Generation)
	if len(fs) > 0 {
		analyzed = condition("Analyzed", true, "Findings", messages(fs), meta.Generation)
	}
	return v1alpha1.Status{Conditions: merge(old.Conditions, []metav1.Condition{accepted, refs, analyzed})}
}

// reconcile computes the status of every object Trellis reports on and
// writes those that differ from the object's, returning what it wrote.
func (s *Source) reconcile(ctx context.Context, view View) ([]*unstructured.Unstructured, error) {
	in := newStatusInput(view.Analysis())
	in.instances = s.podInstances(in.Proxies)
	secret := s.certificateSecret
	var written []*unstructured.Unstructured
	var errs []error
	for _, kind := range statusKinds {
		gvr, ok := s.gvr(kind)
		if !ok {
			continue
		}
		list, err := s.crds.ForResource(gvr).Lister().List(labels.Everything())
		if err != nil {
			return written, err
		}
		for _, obj := range list {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			id := kind + "/" + u.GetNamespace() + "/" + u.GetName()
			if rv, ok := s.pending[id]; ok {
				if rv == u.GetResourceVersion() {
					// Written from this version; the informer has not
					// delivered the result yet.
					continue
				}
				delete(s.pending, id)
			}
			oldStatus, newStatus, err := desiredStatus(kind, u, in, secret)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if newStatus == nil || apiequality.Semantic.DeepEqual(oldStatus, newStatus) {
				continue
			}
			got, err := s.writeStatus(ctx, kind, u, newStatus)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.pending[id] = u.GetResourceVersion()
			written = append(written, got)
		}
	}
	return written, errors.Join(errs...)
}

// statusKinds are the kinds whose status Trellis writes.
var statusKinds = []string{"GatewayClass", "Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute",
	"Workload", "MTLSPolicy", "AccessPolicy", "BackendPolicy"}

// desiredStatus returns an object's status and the one Trellis computes
// for it; a nil new status when Trellis does not report on it.
func desiredStatus(kind string, u *unstructured.Unstructured, in *statusInput, secret func(ns, name string) error) (old, next any, err error) {
	from := func(dst any) error { return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, dst) }
	switch kind {
	case "GatewayClass":
		var gc gwv1.GatewayClass
		if err := from(&gc); err != nil {
			return nil, nil, err
		}
		if gc.Spec.ControllerName != ControllerName {
			return nil, nil, nil
		}
		st := gatewayClassStatus(&gc)
		return &gc.Status, &st, nil
	case "Gateway":
		var gw gwv1.Gateway
		if err := from(&gw); err != nil {
			return nil, nil, err
		}
		if !in.ours(model.Key{Namespace: gw.Namespace, Name: gw.Name}) {
			return nil, nil, nil
		}
		st := gatewayStatus(&gw, in, secret)
		return &gw.Status, &st, nil
	case "ListenerSet":
		var ls gwv1.ListenerSet
		if err := from(&ls); err != nil {
			return nil, nil, err
		}
		if !in.servesParent(ls.Namespace, gwv1.ParentReference{Group: ls.Spec.ParentRef.Group, Kind: ls.Spec.ParentRef.Kind,
			Namespace: ls.Spec.ParentRef.Namespace, Name: ls.Spec.ParentRef.Name}) {
			return nil, nil, nil
		}
		st := listenerSetStatus(&ls, in, secret)
		return &ls.Status, &st, nil
	case "HTTPRoute":
		var r gwv1.HTTPRoute
		if err := from(&r); err != nil {
			return nil, nil, err
		}
		st := routeStatus(kind, r.ObjectMeta, r.Spec.ParentRefs, r.Status.RouteStatus, in)
		return &r.Status.RouteStatus, &st, nil
	case "GRPCRoute":
		var r gwv1.GRPCRoute
		if err := from(&r); err != nil {
			return nil, nil, err
		}
		st := routeStatus(kind, r.ObjectMeta, r.Spec.ParentRefs, r.Status.RouteStatus, in)
		return &r.Status.RouteStatus, &st, nil
	case "TLSRoute":
		var r gwv1.TLSRoute
		if err := from(&r); err != nil {
			return nil, nil, err
		}
		st := routeStatus(kind, r.ObjectMeta, r.Spec.ParentRefs, r.Status.RouteStatus, in)
		return &r.Status.RouteStatus, &st, nil
	case "TCPRoute":
		var r gwv1.TCPRoute
		if err := from(&r); err != nil {
			return nil, nil, err
		}
		st := routeStatus(kind, r.ObjectMeta, r.Spec.ParentRefs, r.Status.RouteStatus, in)
		return &r.Status.RouteStatus, &st, nil
	default:
		var m struct {
			metav1.ObjectMeta `json:"metadata"`
			Status            v1alpha1.Status `json:"status"`
		}
		if err := from(&m); err != nil {
			return nil, nil, err
		}
		st := trellisStatus(kind, m.ObjectMeta, m.Status, in)
		return &m.Status, &st, nil
	}
}

// writeStatus patches the status subresource of u to status, on
// condition that u is still the object's current version.
func (s *Source) writeStatus(ctx context.Context, kind string, u *unstructured.Unstructured, status any) (*unstructured.Unstructured, error) {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()},
		"status":   status,
	})
	if err != nil {
		return nil, err
	}
	gvr, _ := s.gvr(kind)
	r := s.dyn.Resource(gvr)
	var ri interface {
		Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
	} = r
	if ns := u.GetNamespace(); ns != "" {
		ri = r.Namespace(ns)
	}
	got, err := ri.Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if err != nil {
		return nil, fmt.Errorf("kubesource: status of %s %s/%s: %w", kind, u.GetNamespace(), u.GetName(), err)
	}
	return got, nil
}

// fieldManager names Trellis's status writes.
const fieldManager = "trellis-control"
