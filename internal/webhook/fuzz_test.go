package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/inject"
)

// FuzzInjectReview sends arbitrary bodies to the injection webhook: it
// answers every one, with 200 or a client error, and never panics.
func FuzzInjectReview(f *testing.F) {
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":80}],"livenessProbe":{"tcpSocket":{"port":"x"}}}]}}}}`)
	f.Add(`{"request":{"kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"hostNetwork":true}}}}`)
	f.Add(`{"request":{"kind":{"kind":"Service"},"operation":"UPDATE"}}`)
	h := Handler(Options{Inject: inject.Options{Image: "i"}})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{InjectPath, ValidatePath} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
			if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
				t.Fatalf("%s: status %d", path, rec.Code)
			}
		}
	})
}
