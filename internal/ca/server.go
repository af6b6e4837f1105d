package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
)

// Log keys.
const (
	logKeyNode               = "node"
	logKeyIdentity           = "identity"
	logKeySerial             = "serial"
	logKeyExpiry             = "expiry"
	logKeyError              = "error"
	logKeyDir                = "dir"
	logKeyFile               = "file"
	logKeyMode               = "mode"
	logKeyTrustDomain        = "trust_domain"
	logKeyRootExpiry         = "root_expiry"
	logKeyIntermediateExpiry = "intermediate_expiry"
	logKeyToken              = "token_id"
	logKeyCode               = "code"
)

// Bounds of a request's fields; the CSR is bounded by ParseCSR (16 KiB).
const (
	maxNodeIDLen = 1024
	// maxTokenLen leaves room for a Kubernetes service account token (a
	// JWT, typically 1-2 KiB); a join token is 64 bytes.
	maxTokenLen = 8 << 10
)

// Authenticator decides whether the caller of CreateCertificate may have a
// certificate for id, the identity its CSR asks for (already checked to be
// a well-formed workload identity in the CA's trust domain). It may use the
// request's token and the peer in ctx (google.golang.org/grpc/peer). A nil
// error approves. An error carrying a gRPC status (other than Unknown) is
// returned to the caller as is; any other error becomes PermissionDenied.
type Authenticator interface {
	Authenticate(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
	return f(ctx, req, id)
}

var (
	_ Authenticator                 = AuthenticatorFunc(nil)
	_ capb.CertificateServiceServer = (*Server)(nil)
)

// Server serves capb.CertificateService with a CA.
type Server struct {
	capb.UnimplementedCertificateServiceServer

	ca   *CA
	auth Authenticator
	log  *slog.Logger

	mu      sync.Mutex
	onIssue []func(nodeID string, chain []*x509.Certificate)
}

// NewServer returns a Server that signs with ca the requests auth approves.
// A nil auth refuses every request; a nil logger discards.
func NewServer(ca *CA, auth Authenticator, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{ca: ca, auth: auth, log: logger}
}

// Register registers s on a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	capb.RegisterCertificateServiceServer(r, s)
}

// OnIssue adds fn to the functions called after each issuance with the
// requesting node's ID and the chain (leaf, intermediate), in the order
// added, before the response is sent. fn must be quick and must not modify
// the chain. The control plane uses it to serve each node's chain over SDS.
func (s *Server) OnIssue(fn func(nodeID string, chain []*x509.Certificate)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onIssue = append(s.onIssue, fn)
}

// CreateCertificate checks the request and its CSR (InvalidArgument: sizes,
// lifetime, key type and size, SANs), then asks the Authenticator
// (Unauthenticated or PermissionDenied, logged with the token's ID when the
// refusal names one), signs, notifies OnIssue functions, logs the issuance
// and returns the chain and the trust bundle as PEM. Everything a request
// can get wrong is checked before the Authenticator runs, so that a
// request refused for its content never spends a token.
func (s *Server) CreateCertificate(ctx context.Context, req *capb.CreateCertificateRequest) (*capb.CreateCertificateResponse, error) {
	node := req.GetNodeId()
	switch {
	case node == "":
		return nil, status.Error(codes.InvalidArgument, "ca: node_id is empty; set it to the proxy's xDS node ID")
	case len(node) > maxNodeIDLen:
		return nil, status.Errorf(codes.InvalidArgument, "ca: node_id is %d bytes, more than %d", len(node), maxNodeIDLen)
	}
	if n := len(req.GetToken()); n > maxTokenLen {
		return nil, status.Errorf(codes.InvalidArgument, "ca: token is %d bytes, more than %d", n, maxTokenLen)
	}
	ttl, err := requestedLifetime(req.GetValiditySeconds())
	if err == nil {
		_, err = s.ca.lifetime(ttl)
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	csr, err := ParseCSR([]byte(req.GetCsr()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, err := CheckCSR(csr, s.ca.TrustDomain())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.authenticate(ctx, req, id); err != nil {
		st := status.Convert(err)
		attrs := []any{logKeyNode, node, logKeyIdentity, id.String(), logKeyCode, st.Code().String(), logKeyError, st.Message()}
		var tok interface{ TokenID() string }
		if errors.As(err, &tok) && tok.TokenID() != "" {
			attrs = append(attrs, logKeyToken, tok.TokenID())
		}
		s.log.Warn("certificate request refused", attrs...)
		return nil, err
	}
	// CheckCSR approved csr for id above: signChecked does not verify it
	// again.
	chain, err := s.ca.signChecked(csr, id, ttl)
	if err != nil {
		if errors.Is(err, ErrInvalidRequest) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		s.log.Error("certificate signing failed", logKeyNode, node, logKeyIdentity, id.String(), logKeyError, err)
		return nil, status.Error(codes.Internal, err.Error())
	}

	s.mu.Lock()
	fns := slices.Clone(s.onIssue)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(node, chain)
	}

	leaf := chain[0]
	s.log.Info("issued certificate",
		logKeyNode, node, logKeyIdentity, id.String(),
		logKeySerial, serialHex(leaf), logKeyExpiry, leaf.NotAfter)

	resp := &capb.CreateCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(certPEM(c)))
	}
	for _, r := range s.ca.Roots() {
		resp.TrustBundle = append(resp.TrustBundle, string(certPEM(r)))
	}
	return resp, nil
}

func (s *Server) authenticate(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
	if s.auth == nil {
		return status.Error(codes.PermissionDenied, "ca: no authenticator is configured; the control plane issues no certificates")
	}
	err := s.auth.Authenticate(ctx, req, id)
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	return status.Errorf(codes.PermissionDenied, "ca: not allowed to have identity %s: %v", id, err)
}

// requestedLifetime turns validity_seconds into a duration for Sign: zero
// is the default, negative is an error, and values too large for a
// time.Duration are capped (Sign caps them further).
func requestedLifetime(seconds int64) (time.Duration, error) {
	switch {
	case seconds < 0:
		return 0, fmt.Errorf("%w: validity_seconds is %d; send 0 for the default or a positive number", ErrInvalidRequest, seconds)
	case seconds > int64(MaxWorkloadTTL/time.Second):
		return MaxWorkloadTTL, nil
	}
	return time.Duration(seconds) * time.Second, nil
}
