package kubetest

import (
	"context"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// NodeLeaseNamespace holds the nodes' Leases.
const NodeLeaseNamespace = corev1.NamespaceNodeLease

// nodeLeaseDuration is the Leases' leaseDurationSeconds, kubelet's default.
const nodeLeaseDuration = 40

// heartbeat keeps the node alive as kubelet does, until ctx ends: every
// period it renews its Lease in kube-node-lease (created at first, owned
// by the Node so that it goes with it) and sets the heartbeat time of its
// Ready condition.
func (n *Node) heartbeat(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := n.renewLease(ctx); err != nil && ctx.Err() == nil {
			n.logf("lease: %v", err)
		}
		if err := n.postStatus(ctx); err != nil && ctx.Err() == nil {
			n.logf("status heartbeat: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) renewLease(ctx context.Context) error {
	leases := n.cs.CoordinationV1().Leases(NodeLeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := n.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: NodeLeaseNamespace, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n.Name), LeaseDurationSeconds: ptr.To[int32](nodeLeaseDuration), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = ptr.To(n.Name)
	l.Spec.LeaseDurationSeconds = ptr.To[int32](nodeLeaseDuration)
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// postStatus writes the node's status: its addresses, the kubelet API's
// port, capacity, and the Ready condition with a fresh heartbeat.
func (n *Node) postStatus(ctx context.Context) error {
	node, err := n.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubetest node is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			ready.LastTransitionTime = c.LastTransitionTime
		}
	}
	node.Status.Conditions = []corev1.NodeCondition{ready}
	node.Status.Addresses = n.addresses()
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(n.kubeletPort)
	node.Status.Capacity = nodeCapacity()
	node.Status.Allocatable = nodeCapacity()
	node.Status.NodeInfo.KubeletVersion = n.c.Version
	node.Status.NodeInfo.OperatingSystem = "linux"
	node.Status.NodeInfo.Architecture = goarch
	_, err = n.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

const goarch = runtime.GOARCH

// nodeCapacity is what the node says it has: the pods' resource requests
// are not checked here.
func nodeCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
}
