// Package ca is the control plane's certificate authority: it keeps roots
// and intermediates and issues SPIFFE X.509 SVIDs (X509-SVIDs) to
// proxies, which ask for them over gRPC (capb.CertificateService) on the
// control plane's TLS port 15012.
//
//	root CA (self-signed, 10 years, pathlen 1)      the trust bundle (Roots, BundlePEM):
//	  URI SAN spiffe://<td>, keyCertSign+cRLSign     the active root first, and during a
//	  │                                              rotation the root coming or going
//	  └─ intermediate CA (1 year, pathlen 0)        renewed from the root when less
//	       URI SAN spiffe://<td>, keyCertSign+cRLSign   than 30 days remain
//	       │
//	       └─ workload SVID (24h by default)         never stored; the proxy keeps its
//	            URI SAN spiffe://<td>/ns/<ns>/sa/<sa>   key, the control plane serves
//	            digitalSignature, serverAuth+clientAuth the chain over SDS
//
//	proxy: key + CSR ──CreateCertificate──► Server ─► Authenticator ─► CA.Sign
//	proxy ◄── cert_chain (leaf, intermediate) + trust_bundle (roots) ──┘
//
// The control plane's Authenticator is PeerOrToken: a proxy renews with the
// certificate it presents on the TLS connection (verified again here, now,
// as an X509-SVID for exactly the identity it asks for), and on first
// contact proves its right to an identity with a token in the request
// (jointoken; a Kubernetes service account token later). The Server checks
// everything about a request's content before it asks the Authenticator,
// so a malformed or oversized request never spends a token.
//
// # Where the keys come from
//
// By default the CA generates its root and intermediate. An operator may
// supply a root with its key (the CA then issues its own intermediate under
// it), or an intermediate with its key and its chain up to a root (the CA
// signs with it as is, and cannot renew it): LoadSupplied reads and checks
// them. All keys are ECDSA P-256.
//
// # Where the keys are kept
//
// The CA's State (every root, intermediate and key it holds, and the
// rotation in progress) is one record in a Storage:
//
//   - a directory (NewDirStorage): state.json (mode 0600, the record), and
//     copies for people, proxies and tools: root-cert.pem, ca-cert.pem,
//     bundle.pem (0644), root-key.pem and ca-key.pem (0600). Files are
//     written atomically (temporary file, fsync, rename) in a directory
//     created 0700, under a file lock that control planes sharing it take
//     in turn. A directory of an older Trellis, with only the four PEM
//     files, is read and converted;
//   - the etcd store, sealed with AES-256-GCM (package castore), so that
//     control planes on one external etcd share the CA.
//
// Control planes sharing a CA follow each other's changes with Reload; the
// State's Generation tells them whether they hold the latest.
//
// # Root rotation
//
// StartRotation, Advance and AbortRotation move the State through the
// phases of a root rotation (rotation.go); the control plane decides when
// the proxies completed a phase (Rotation.Progress).
//
// # Certificates
//
// The certificates follow the SPIFFE X509-SVID standard
// (github.com/spiffe/spiffe/standards/X509-SVID.md): a leaf has exactly one
// URI SAN (its SPIFFE ID), CA=false, a critical key usage of
// digitalSignature only (keyEncipherment and keyAgreement are allowed but
// useless for ECDSA keys under TLS 1.3), and both serverAuth and clientAuth;
// its subject is empty, so the SAN extension is critical. Signing
// certificates have CA=true, keyCertSign and cRLSign, no extended key usage,
// and the trust domain's SPIFFE ID (no path) as their only URI SAN. URI name
// constraints are not set: the standard still urges caution with them.
package ca
