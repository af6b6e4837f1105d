package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/testcert"
)

// serveTLS serves h over HTTPS on ip with a certificate for ip, and
// returns the URL and the CA bundle (the certificate itself).
func serveTLS(t *testing.T, ip string, h http.Handler) (string, []byte) {
	t.Helper()
	p := testcert.Make(t, testcert.Options{CommonName: "webhook", IPs: []net.IP{net.ParseIP(ip)}, CA: true})
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.Cert}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String(), p.CertPEM
}

// TestAdmission registers both webhooks with a real API server: a pod
// created in a namespace labelled for injection comes back with the
// sidecar and its probes rewritten; one labelled disabled does not; a
// Service the review denies is refused with the review's message, and
// one it warns about is created with the warning.
func TestAdmission(t *testing.T) {
	c := kubetest.Start(t)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	review := func(_ context.Context, r Request) ([]string, error) {
		var svc corev1.Service
		if err := json.Unmarshal(r.Object, &svc); err != nil {
			return nil, err
		}
		switch svc.Name {
		case "forbidden":
			return []string{"look at spec.ports"}, errors.New("TRL0000: Service shop/forbidden: spec: refused by the test")
		case "warned":
			return []string{"TRL9999: Service shop/warned: spec.ports[0]: a warning"}, nil
		}
		return nil, nil
	}
	url, bundle := serveTLS(t, c.IP, Handler(Options{Inject: inject.Options{Image: "trellis-proxy:test"}, Review: review}))

	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	hook := func(path string) admissionregistrationv1.WebhookClientConfig {
		u := url + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: bundle}
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "trellis-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "inject.trellis.dev", ClientConfig: hook(InjectPath), FailurePolicy: &fail, SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{inject.InjectLabel: "enabled"}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "trellis-validator"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate.trellis.dev", ClientConfig: hook(ValidatePath), FailurePolicy: &fail, SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"services"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{inject.InjectLabel: "enabled"}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{inject.InjectLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: "example.com/web:1",
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			}},
		}}
	}
	// The configuration takes a moment to reach the API server's
	// admission chain.
	var got *corev1.Pod
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		p, err := cs.CoreV1().Pods("shop").Create(ctx, pod("web-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) > 0 || time.Now().After(deadline) {
			got = p
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(got.Spec.InitContainers) != 2 || got.Spec.InitContainers[0].Name != inject.InitContainer || got.Spec.InitContainers[1].Name != inject.ProxyContainer {
		t.Fatalf("the created pod's init containers: %+v", got.Spec.InitContainers)
	}
	if hg := got.Spec.Containers[0].ReadinessProbe.HTTPGet; hg == nil || hg.Path != "/app-health/8080/ready" || hg.Port.IntValue() != inject.StatsPort {
		t.Errorf("readiness probe: %+v", got.Spec.Containers[0].ReadinessProbe)
	}
	if got.Annotations[inject.StatusAnnotation] == "" {
		t.Errorf("annotations: %v", got.Annotations)
	}
	out, err := cs.CoreV1().Pods("shop").Create(ctx, pod("debug", map[string]string{inject.InjectLabel: "disabled"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Spec.InitContainers) != 0 {
		t.Errorf("a pod labelled disabled was injected: %+v", out.Spec.InitContainers)
	}

	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	_, err = cs.CoreV1().Services("shop").Create(ctx, svc("forbidden"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "TRL0000: Service shop/forbidden: spec: refused by the test") {
		t.Errorf("a Service the review denies: %v", err)
	}
	var warnings recordWarnings
	wc := *c.Config
	wc.WarningHandler = &warnings
	if _, err := kubernetes.NewForConfigOrDie(&wc).CoreV1().Services("shop").Create(ctx, svc("warned"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(warnings, "\n"), "TRL9999") {
		t.Errorf("warnings: %q", warnings)
	}
}

type recordWarnings []string

func (r *recordWarnings) HandleWarningHeader(_ int, _ string, text string) { *r = append(*r, text) }

// TestHandlerRefusesGarbage: what is not an AdmissionReview is an HTTP
// error, so that the configuration's failurePolicy decides.
func TestHandlerRefusesGarbage(t *testing.T) {
	h := Handler(Options{})
	for _, body := range []string{"", "{", `{"kind":"AdmissionReview"}`} {
		rec := &responseRecorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodPost, InjectPath, strings.NewReader(body))
		h.ServeHTTP(rec, req)
		if rec.code != http.StatusBadRequest {
			t.Errorf("%q: %d", body, rec.code)
		}
	}
}

type responseRecorder struct {
	header http.Header
	code   int
}

func (r *responseRecorder) Header() http.Header         { return r.header }
func (r *responseRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *responseRecorder) WriteHeader(code int)        { r.code = code }
