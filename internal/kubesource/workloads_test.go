package kubesource

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/inject"
)

func TestPodWorkload(t *testing.T) {
	running := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}
	app := corev1.Container{Name: "app", Ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 9090},
	}}
	sidecar := corev1.Container{Name: SidecarContainer, Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 15000}}}
	now := metav1.Now()
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		// want is "" for no workload, else address/serviceAccount/meshPort/ports.
		want string
	}{
		{"plain", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{app}}, Status: running}, "10.0.0.1/default/-/http:8080,:9090"},
		{"sidecar", corev1.Pod{Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{app, sidecar}}, Status: running}, "10.0.0.1/web/15008/http:8080,:9090"},
		{"sidecar mesh port", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: SidecarContainer, Ports: []corev1.ContainerPort{{Name: MeshPortName, ContainerPort: 16008}}}}}, Status: running}, "10.0.0.1/default/16008/"},
		{"injected (a native sidecar)", injected(t, corev1.Pod{Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{app}}, Status: running}), "10.0.0.1/web/15008/http:8080,:9090"},
		{"pending", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{app}}, Status: corev1.PodStatus{Phase: corev1.PodPending, PodIP: "10.0.0.1"}}, ""},
		{"no IP", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{app}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, ""},
		{"terminating", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Spec: corev1.PodSpec{Containers: []corev1.Container{app}}, Status: running}, ""},
		{"host network", corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{app}}, Status: running}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pod.Name, tc.pod.Namespace = "p", "ns"
			w := podWorkload(&tc.pod)
			got := ""
			if w != nil {
				mesh := "-"
				if w.Spec.MeshPort != nil {
					mesh = itoa(*w.Spec.MeshPort)
				}
				got = w.Spec.Address + "/" + w.Spec.ServiceAccount + "/" + mesh + "/"
				for i, p := range w.Spec.Ports {
					if i > 0 {
						got += ","
					}
					got += p.Name + ":" + itoa(p.Port)
				}
			}
			if got != tc.want {
				t.Errorf("workload %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSliceWorkloads(t *testing.T) {
	yes, no := true, false
	port, name := int32(5432), "pg"
	slices := []*discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "db-1"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"192.0.2.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
			{Addresses: []string{"192.0.2.3"}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}, {
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "db-2"},
		AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"2001:db8::1"}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}}
	var got []string
	for _, w := range sliceWorkloads("db", slices) {
		got = append(got, w.Name+"="+w.Spec.Address+"/"+w.Spec.Services[0]+"/"+w.Spec.Ports[0].Name+":"+itoa(w.Spec.Ports[0].Port))
	}
	want := []string{"db-192-0-2-1=192.0.2.1/db/pg:5432", "db-192-0-2-3=192.0.2.3/db/pg:5432", "db-2001-db8--1=2001:db8::1/db/pg:5432"}
	if len(got) != len(want) {
		t.Fatalf("workloads %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("workload %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// injected is pod as the injection webhook makes it.
func injected(t *testing.T, pod corev1.Pod) corev1.Pod {
	t.Helper()
	if skipped, err := inject.Spec(&pod.ObjectMeta, &pod.Spec, inject.Options{Image: "trellis-proxy:test"}); err != nil || skipped != "" {
		t.Fatalf("inject: %q %v", skipped, err)
	}
	return pod
}
