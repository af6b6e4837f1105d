package secrets

import (
	"bytes"
	"crypto/x509"
)

// Changed returns a channel that is closed at the next change of the
// certificate or of the trust bundle. Take the channel before reading
// what it guards (Certificate, TrustBundle): a change that happens after
// the read then closes it, and none is missed.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// notifyLocked wakes everyone waiting on Changed. m.mu is held for
// writing.
func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// sameCertificates reports whether a and b hold the same certificates in
// the same order: a trust bundle the control plane sends again unchanged
// is no change.
func sameCertificates(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
