// Package ca is the control plane's certificate authority: it keeps a root
// and an intermediate on disk and issues SPIFFE X.509 SVIDs (X509-SVIDs) to
// proxies, which ask for them over gRPC (capb.CertificateService) on the
// control plane's TLS port 15012.
//
//	root CA (self-signed, 10 years, pathlen 1)      root-cert.pem, root-key.pem
//	  URI SAN spiffe://<td>, keyCertSign+cRLSign     -> the trust bundle (Roots, BundlePEM)
//	  │
//	  └─ intermediate CA (1 year, pathlen 0)        ca-cert.pem, ca-key.pem
//	       URI SAN spiffe://<td>, keyCertSign+cRLSign   renewed from the root when
//	       │                                            less than 30 days remain
//	       └─ workload SVID (24h by default)         never written here; the proxy
//	            URI SAN spiffe://<td>/ns/<ns>/sa/<sa>   keeps its key, the control
//	            digitalSignature, serverAuth+clientAuth plane serves the chain over SDS
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
// All keys are ECDSA P-256. Key files are PKCS#8 PEM, mode 0600, written
// atomically (temporary file, fsync, rename); certificates are PEM, mode
// 0644; the directory is created 0700. Open creates what is missing on first
// use and on every later start checks that the files belong together and to
// the configured trust domain.
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
