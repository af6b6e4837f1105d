package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/install"
)

// Result is what became of one document of a manifest.
type Result struct {
	// Object names it: Kind namespace/name.
	Object string
	// Injected is true when a sidecar was added; else Skipped says why,
	// or the document holds no pod.
	Injected bool
	Skipped  Skipped
}

// File injects the sidecar into the pods of a manifest (YAML documents or
// JSON): Pods and the pod templates of Deployments, StatefulSets,
// DaemonSets, ReplicaSets, Jobs and CronJobs. Other documents are passed
// through. It returns the manifest as YAML documents, and what it did
// with each; an error names the file and the document.
func File(name string, data []byte, opts Options) ([]byte, []Result, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out bytes.Buffer
	var results []Result
	for i := 1; ; i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		doc, res, err := document(raw, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: document %d (%s): %w", name, i, res.Object, err)
		}
		results = append(results, res)
		out.WriteString("---\n")
		out.Write(doc)
	}
	return out.Bytes(), results, nil
}

// document injects one document, returned as YAML.
func document(raw json.RawMessage, opts Options) ([]byte, Result, error) {
	var tm struct {
		metav1.TypeMeta
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, Result{Object: "?"}, err
	}
	res := Result{Object: tm.Kind + " " + objectName(tm.Metadata)}
	var obj runtime.Object
	var meta *metav1.ObjectMeta
	var spec *corev1.PodSpec
	switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
	case "v1/Pod":
		o := &corev1.Pod{}
		obj, meta, spec = o, &o.ObjectMeta, &o.Spec
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		obj, meta, spec = o, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case "apps/v1/StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, meta, spec = o, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case "apps/v1/DaemonSet":
		o := &appsv1.DaemonSet{}
		obj, meta, spec = o, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case "apps/v1/ReplicaSet":
		o := &appsv1.ReplicaSet{}
		obj, meta, spec = o, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case "batch/v1/Job":
		o := &batchv1.Job{}
		obj, meta, spec = o, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case "batch/v1/CronJob":
		o := &batchv1.CronJob{}
		obj, meta, spec = o, &o.Spec.JobTemplate.Spec.Template.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec
	default:
		doc, err := yaml.JSONToYAML(raw)
		return doc, res, err
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(obj); err != nil {
		return nil, res, err
	}
	skipped, err := Spec(meta, spec, opts)
	if err != nil {
		return nil, res, err
	}
	res.Injected, res.Skipped = skipped == "", skipped
	u, err := install.Unstructured(obj.(install.Object))
	if err != nil {
		return nil, res, err
	}
	doc, err := yaml.Marshal(u)
	return doc, res, err
}

func objectName(m metav1.ObjectMeta) string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}
