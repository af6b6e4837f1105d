package inject

import (
	"bytes"
	"testing"
)

// FuzzFile injects arbitrary manifests: an error or a manifest, never a
// panic; and a manifest that was injected is left as it is the second
// time.
func FuzzFile(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, ports: [{containerPort: 80}], readinessProbe: {grpc: {port: 80}}}]\n"))
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c}]}}}\n---\nkind: Service\n"))
	f.Add([]byte("{\"apiVersion\":\"batch/v1\",\"kind\":\"CronJob\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := File("fuzz.yaml", data, Options{Image: "i"})
		if err != nil {
			return
		}
		again, _, err := File("fuzz.yaml", out, Options{Image: "i"})
		if err != nil {
			t.Fatalf("the injected manifest does not read back: %v\n%s", err, out)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("a second injection changed the manifest:\n%s\n---- became ----\n%s", out, again)
		}
	})
}
