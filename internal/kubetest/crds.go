package kubetest

import (
	"context"
	"slices"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CreateCRDs creates crds (install.CRDs() has Trellis's) and waits until
// each is Established and discovery serves its kind, failing the test
// otherwise.
func (c *Cluster) CreateCRDs(ctx context.Context, t testing.TB, crds []*apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	client := apiextensions.NewForConfigOrDie(c.Config).ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		if _, err := client.Create(ctx, crd.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatalf("kubetest: CRD %s: %v", crd.Name, err)
		}
	}
	disco := kubernetes.NewForConfigOrDie(c.Config).Discovery()
	for _, crd := range crds {
		for {
			got, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("kubetest: CRD %s: %v", crd.Name, err)
			}
			established := slices.ContainsFunc(got.Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
				return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
			})
			served := false
			if established {
				for _, v := range crd.Spec.Versions {
					if !v.Served {
						continue
					}
					list, err := disco.ServerResourcesForGroupVersion(crd.Spec.Group + "/" + v.Name)
					served = err == nil && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == crd.Spec.Names.Plural })
					if !served {
						break
					}
				}
			}
			if served {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("kubetest: CRD %s not served: %v", crd.Name, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
