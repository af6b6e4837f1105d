package control

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/kubeauth"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/store"
)

// registrationTTL, plus the grace period, is how long a registration
// outlives the last renewal of its lease by the control plane holding the
// proxy's stream: long enough to ride out a control plane restart.
const registrationTTL = 30 * time.Second

func decodeRegistration(b []byte) (*nodemeta.Metadata, error) {
	var m nodemeta.Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, m.Validate()
}

// Connected registers the workload of a proxy whose ADS stream opened, after
// checking that the certificate it presents is the identity it claims.
// Proxyless gRPC applications (kind grpc) register the same way, with the
// registration in their bootstrap's node metadata and the certificate in
// its tls channel credentials.
func (cp *controlPlane) Connected(streamID int64, node *corev3.Node, peer []*x509.Certificate) error {
	if cp.stop.Load() {
		return status.Error(codes.Unavailable, errShuttingDown.Error())
	}
	meta, err := nodemeta.Decode(node.GetMetadata())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if len(peer) == 0 {
		if meta.Kind == nodemeta.KindGRPC {
			return status.Error(codes.Unauthenticated, "xDS needs a client certificate: get one from the certificate service and "+
				"name it in the xDS bootstrap's channel_creds of type tls (certificate_file, private_key_file)")
		}
		return status.Error(codes.Unauthenticated, "xDS needs a client certificate: request one from the certificate service first")
	}
	got, err := identity.FromCertificate(peer[0])
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	want := identity.ID{TrustDomain: cp.opts.TrustDomain, Namespace: meta.Namespace, ServiceAccount: meta.ServiceAccount}
	if got != want {
		cp.log.Warn("proxy claims an identity its certificate does not hold", "node", node.GetId(), "certificate", got.String(), "claimed", want.String())
		return status.Errorf(codes.PermissionDenied, "certificate identity %s does not match the registration's %s", got, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	lease, err := cp.store.Grant(ctx, registrationTTL+cp.opts.RegistrationGrace)
	if err == nil {
		var value []byte
		value, err = json.Marshal(meta)
		if err == nil {
			err = lease.Put(ctx, proxiesPrefix+node.GetId(), value)
		}
	}
	if err != nil {
		cancel()
		return status.Errorf(codes.Unavailable, "registering %s: %v", node.GetId(), err)
	}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		_ = lease.KeepAlive(ctx)
	}()

	var chain []byte
	for _, c := range peer {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	cp.mu.Lock()
	if old := cp.connected[node.GetId()]; old != nil {
		old.cancel()
	}
	if t := cp.pending[node.GetId()]; t != nil {
		t.Stop()
		delete(cp.pending, node.GetId())
	}
	cp.connected[node.GetId()] = &connection{streamID: streamID, cancel: cancel, lease: lease}
	if old := cp.registrations[node.GetId()]; old != nil {
		cp.markDirtyLocked(cp.registrationKeysLocked(node.GetId(), old)...)
	}
	cp.registrations[node.GetId()] = meta
	cp.regsGen++
	cp.markDirtyLocked(cp.registrationKeysLocked(node.GetId(), meta)...)
	if _, ok := cp.chains[node.GetId()]; !ok {
		cp.chains[node.GetId()] = chain
	}
	cp.mu.Unlock()

	cp.log.Info("proxy registered", "node", node.GetId(), "kind", meta.Kind, "workload", meta.Namespace+"/"+meta.Name,
		"identity", got.String(), "address", meta.Address)
	// The new proxy gets its config before its first response; everyone
	// else learns of the new endpoint with the next debounced push.
	cp.pushOne(context.Background(), node.GetId())
	cp.trigger()
	return nil
}

// Disconnected deregisters the workload of a proxy whose stream ended,
// after a grace period in which the proxy may come back (to this control
// plane or another); unless the control plane itself is stopping: then
// the registration stays for the next control plane to find.
func (cp *controlPlane) Disconnected(streamID int64, node *corev3.Node) {
	id := node.GetId()
	cp.mu.Lock()
	c := cp.connected[id]
	if c == nil || c.streamID != streamID {
		cp.mu.Unlock()
		return
	}
	delete(cp.connected, id)
	cp.mu.Unlock()
	c.cancel()
	if cp.stop.Load() {
		return
	}
	cp.log.Info("proxy disconnected", "node", id, "deregisterIn", cp.opts.RegistrationGrace)
	cp.mu.Lock()
	if t := cp.pending[id]; t != nil {
		t.Stop()
	}
	cp.pending[id] = time.AfterFunc(cp.opts.RegistrationGrace, func() { cp.deregister(id, c.lease) })
	cp.mu.Unlock()
}

// deregister removes the registration of a proxy that did not come back
// within the grace period.
func (cp *controlPlane) deregister(id string, lease *store.Lease) {
	cp.mu.Lock()
	delete(cp.pending, id)
	_, back := cp.connected[id]
	cp.mu.Unlock()
	if back || cp.stop.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Revoking the lease deletes the registration, unless the proxy
	// registered again elsewhere: its key is then under another lease.
	if err := lease.Revoke(ctx); err != nil {
		cp.log.Warn("deregistering", "node", id, "err", err)
	}
	cp.mu.Lock()
	delete(cp.chains, id)
	delete(cp.problems, id)
	delete(cp.deps, id)
	delete(cp.built, id)
	cp.mu.Unlock()
	cp.xds.Forget(id)
	cp.log.Info("proxy deregistered", "node", id)
	cp.trigger()
}

// authenticator approves certificate requests: renewals by the
// certificate the proxy presents, first contacts by a join token. The
// Kubernetes service account token (TokenReview) will join the join token
// store as a second judge of tokens, told apart by their form.
func (cp *controlPlane) authenticator() ca.Authenticator {
	if cp.opts.Kube == nil {
		return ca.PeerOrToken(cp.ca, cp.tokens)
	}
	// On Kubernetes, sidecars present their projected service account
	// token, which the API server reviews; join tokens still serve
	// workloads outside the cluster.
	reviewer := &kubeauth.TokenReviewer{Client: kubernetes.NewForConfigOrDie(cp.opts.Kube)}
	return ca.PeerOrToken(cp.ca, kubeauth.Tokens(cp.tokens, reviewer))
}
