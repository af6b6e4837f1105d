// Package webhook serves the Kubernetes admission webhooks of the control
// plane (port 15017): sidecar injection and validation.
//
//	kube-apiserver ──AdmissionReview v1──► POST /inject    a Pod: inject.Spec, answered
//	                                                       as a JSON patch (spec, annotations)
//	                                       POST /validate  a Gateway API, trellis.dev or Service
//	                                                       object: Review (the analyzer, over the
//	                                                       object and the mesh's current state);
//	                                                       errors deny it with their codes and
//	                                                       messages, warnings come back as warnings
//
// The handlers never fail open by themselves: a request they cannot read
// is answered with an HTTP error, and the webhook configuration's
// failurePolicy decides.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/inject"
)

// Paths of the webhooks.
const (
	InjectPath   = "/inject"
	ValidatePath = "/validate"
)

// maxReview bounds the size of an AdmissionReview (the API server's own
// request limit is 3 MiB).
const maxReview = 6 << 20

// Review judges an object before the API server stores it: file names
// it for messages, raw is its JSON, oldRaw the stored object's on an
// update or delete. It returns the warnings to pass on, and an error that
// denies the request.
type Review func(ctx context.Context, req Request) (warnings []string, deny error)

// Request is what Review is asked about.
type Request struct {
	Kind      string
	Namespace string
	Name      string
	Operation string // CREATE, UPDATE, DELETE
	Object    []byte // the new object (nil on DELETE)
	OldObject []byte // the stored object (nil on CREATE)
}

// Options configure the handlers.
type Options struct {
	Inject inject.Options
	// Review validates objects; nil allows everything.
	Review Review
}

// Handler serves both webhooks.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+InjectPath, func(w http.ResponseWriter, r *http.Request) { serve(w, r, o.inject) })
	mux.HandleFunc("POST "+ValidatePath, func(w http.ResponseWriter, r *http.Request) { serve(w, r, o.validate) })
	return mux
}

// serve reads an AdmissionReview, has it answered and writes the answer
// with the request's UID.
func serve(w http.ResponseWriter, r *http.Request, answer func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
	if err != nil {
		http.Error(w, "webhook: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxReview {
		http.Error(w, "webhook: request over 6 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("webhook: not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	resp := answer(r.Context(), review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func denied(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg}}
}

// inject answers for a Pod with the patch that adds the sidecar.
func (o Options) inject(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return denied(http.StatusBadRequest, "trellis injector: the pod does not decode: "+err.Error())
	}
	skipped, err := inject.Spec(&pod.ObjectMeta, &pod.Spec, o.Inject)
	if err != nil {
		name := pod.Name
		if name == "" {
			name = pod.GenerateName + "*"
		}
		return denied(http.StatusUnprocessableEntity, fmt.Sprintf("trellis injector: pod %s/%s: %v", req.Namespace, name, err))
	}
	if skipped != "" {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	// The whole spec and the annotations are replaced: they are what
	// injection changes, and the pod in the request is the current one.
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/spec", "value": pod.Spec},
		{"op": "add", "path": "/metadata/annotations", "value": pod.Annotations},
	})
	if err != nil {
		return denied(http.StatusInternalServerError, "trellis injector: "+err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

// validate answers with the Review's verdict.
func (o Options) validate(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if o.Review == nil {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	warnings, deny := o.Review(ctx, Request{
		Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name, Operation: string(req.Operation),
		Object: req.Object.Raw, OldObject: req.OldObject.Raw,
	})
	if deny != nil {
		resp := denied(http.StatusUnprocessableEntity, deny.Error())
		resp.Warnings = warnings
		return resp
	}
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}
