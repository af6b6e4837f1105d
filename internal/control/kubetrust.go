package control

import (
	"bytes"
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
)

// On Kubernetes the mesh's roots reach those who must trust the control
// plane: the API server, which calls the webhooks (the caBundle of the
// trellis-validator and trellis-injector configurations), and the injected
// sidecars, which verify the control plane (ConfigMap trellis-ca-root in
// every namespace labelled trellis.dev/inject=enabled). publishTrust keeps
// both equal to the trust bundle, which a root rotation changes, writing
// only what differs.

// trustInterval is how often publishTrust looks again.
const trustInterval = 10 * time.Second

// caRootKey is the ConfigMap's key, the file the sidecar reads.
const caRootKey = "root-cert.pem"

func (cp *controlPlane) publishTrust(ctx context.Context, cs kubernetes.Interface) error {
	for {
		cp.syncTrust(ctx, cs)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(trustInterval):
		}
	}
}

// syncTrust writes the trust bundle where it differs; failures are
// logged and tried again next time.
func (cp *controlPlane) syncTrust(ctx context.Context, cs kubernetes.Interface) {
	bundle := cp.ca.BundlePEM()
	adm := cs.AdmissionregistrationV1()
	if v, err := adm.ValidatingWebhookConfigurations().Get(ctx, install.ValidatingWebhookName, metav1.GetOptions{}); err == nil {
		var bundles []*[]byte
		for i := range v.Webhooks {
			bundles = append(bundles, &v.Webhooks[i].ClientConfig.CABundle)
		}
		if setBundles(bundles, bundle) {
			_, err = adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
		}
		cp.warnTrust(err, v.Name)
	} else if !apierrors.IsNotFound(err) {
		cp.warnTrust(err, install.ValidatingWebhookName)
	}
	if m, err := adm.MutatingWebhookConfigurations().Get(ctx, install.MutatingWebhookName, metav1.GetOptions{}); err == nil {
		var bundles []*[]byte
		for i := range m.Webhooks {
			bundles = append(bundles, &m.Webhooks[i].ClientConfig.CABundle)
		}
		if setBundles(bundles, bundle) {
			_, err = adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
		}
		cp.warnTrust(err, m.Name)
	} else if !apierrors.IsNotFound(err) {
		cp.warnTrust(err, install.MutatingWebhookName)
	}

	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: inject.InjectLabel + "=enabled"})
	if err != nil {
		cp.log.Warn("listing the injected namespaces", "err", err)
		return
	}
	for _, ns := range nss.Items {
		cms := cs.CoreV1().ConfigMaps(ns.Name)
		cm, err := cms.Get(ctx, inject.CARootConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: inject.CARootConfigMap, Labels: map[string]string{"app.kubernetes.io/managed-by": install.Name}},
				Data:       map[string]string{caRootKey: string(bundle)},
			}, metav1.CreateOptions{})
		case err == nil && cm.Data[caRootKey] != string(bundle):
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[caRootKey] = string(bundle)
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			cp.log.Warn("publishing the mesh's roots", "namespace", ns.Name, "configmap", inject.CARootConfigMap, "err", err)
		}
	}
}

// setBundles sets each caBundle to bundle and reports whether one changed.
func setBundles(bundles []*[]byte, bundle []byte) bool {
	changed := false
	for _, b := range bundles {
		if !bytes.Equal(*b, bundle) {
			*b, changed = bundle, true
		}
	}
	return changed
}

// warnTrust logs a failure to read or update a webhook configuration;
// the next round tries again.
func (cp *controlPlane) warnTrust(err error, webhook string) {
	if err != nil {
		cp.log.Warn("keeping the webhook's caBundle current", "webhook", webhook, "err", err)
	}
}
