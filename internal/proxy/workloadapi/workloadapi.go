// Package workloadapi serves the SPIFFE Workload API (the X.509-SVID
// profile) from the sidecar on a UNIX socket, so that SPIFFE-aware
// applications get the identity the mesh gave their workload without
// talking to the control plane:
//
//	control plane ──CSR/SDS──► secrets.Manager ──Changed──► Server ══gRPC over UNIX socket══► app
//	                           (key, SVID, bundle)                  (go-spiffe, java-spiffe, ...)
//
// FetchX509SVID streams the sidecar's own X.509-SVID (certificate chain,
// PKCS#8 private key, the trust domain's bundle) and sends it again
// whenever the certificate is renewed or the trust bundle changes;
// FetchX509Bundles streams the bundle alone. Trellis issues no JWT-SVIDs:
// FetchJWTSVID and ValidateJWTSVID answer Unimplemented, and
// FetchJWTBundles streams an empty key set for the trust domain, so that
// clients that wait for both kinds of bundle (go-spiffe's BundleSource)
// still start.
//
// As the SPIFFE Workload Endpoint standard requires, every call must carry
// the gRPC metadata "workload.spiffe.io: true" (else InvalidArgument), and
// the first answer comes at once: before the sidecar has its first
// certificate, FetchX509SVID answers Unavailable, which clients retry.
//
// The server does not attest its callers: whoever can connect to the
// socket gets the workload's identity and private key. Access to the
// socket, through the permissions of its directory and its own mode, is
// the access control.
package workloadapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"runtime/debug"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/identity"
)

// Source is the identity the server hands out: the sidecar's
// secrets.Manager.
type Source interface {
	// ID is the workload's SPIFFE identity.
	ID() identity.ID
	// Certificate returns the current certificate with its private key,
	// or nil before the first is issued.
	Certificate() *tls.Certificate
	// TrustBundle returns the roots of the trust domain.
	TrustBundle() []*x509.Certificate
	// Changed returns a channel closed at the next change of either; it is
	// taken before they are read.
	Changed() <-chan struct{}
}

// HeaderKey and HeaderValue are the metadata every call must carry, a
// guard against server-side request forgery.
const (
	HeaderKey   = "workload.spiffe.io"
	HeaderValue = "true"
)

// emptyJWKS is the JWT bundle of a trust domain without JWT authorities.
const emptyJWKS = `{"keys":[]}`

// Server implements the SpiffeWorkloadAPI gRPC service over a Source.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	src Source
	log *slog.Logger
}

var _ workload.SpiffeWorkloadAPIServer = (*Server)(nil)

// New returns a server handing out src's identity. A nil log discards.
func New(src Source, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{src: src, log: log}
}

// grpcServer returns a gRPC server with the Workload API registered and
// the header check and panic recovery in front of every method.
func (s *Server) grpcServer() *grpc.Server {
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryGuard),
		grpc.ChainStreamInterceptor(s.streamGuard),
	)
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
	return g
}

// checkHeader refuses calls without the security header.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(HeaderKey); len(v) == 0 || v[0] != HeaderValue {
		return status.Errorf(codes.InvalidArgument, "workloadapi: security header missing from request: send the gRPC metadata %q: %q", HeaderKey, HeaderValue)
	}
	return nil
}

func (s *Server) recovered(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("workload API call panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "workloadapi: internal error")
	}
}

func (s *Server) unaryGuard(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
	defer s.recovered(info.FullMethod, &err)
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamGuard(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.recovered(info.FullMethod, &err)
	if err := checkHeader(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// FetchX509SVID streams the workload's X.509-SVID, again on every change.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return watch(stream.Context(), s.src, s.x509SVIDResponse, stream.Send)
}

// FetchX509Bundles streams the trust domain's bundle, again on every
// change.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return watch(stream.Context(), s.src, s.x509BundlesResponse, stream.Send)
}

// FetchJWTBundles streams an empty JWT bundle for the trust domain: Trellis
// has no JWT authorities, so no JWT-SVID of it validates.
func (s *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	resp := func() (*workload.JWTBundlesResponse, error) {
		return &workload.JWTBundlesResponse{Bundles: map[string][]byte{s.trustDomainID(): []byte(emptyJWKS)}}, nil
	}
	return watch(stream.Context(), s.src, resp, stream.Send)
}

// errNoJWT answers the JWT-SVID methods.
var errNoJWT = status.Error(codes.Unimplemented, "workloadapi: Trellis issues no JWT-SVIDs; use the X.509-SVID (FetchX509SVID)")

// FetchJWTSVID answers Unimplemented: Trellis issues no JWT-SVIDs.
func (s *Server) FetchJWTSVID(context.Context, *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	return nil, errNoJWT
}

// ValidateJWTSVID answers Unimplemented: no JWT-SVID of the trust domain
// exists to validate.
func (s *Server) ValidateJWTSVID(context.Context, *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	return nil, errNoJWT
}

// trustDomainID is the SPIFFE ID of the trust domain, which keys bundles.
func (s *Server) trustDomainID() string { return "spiffe://" + s.src.ID().TrustDomain }

// bundleDER concatenates the DER of the trust bundle's roots.
func (s *Server) bundleDER() []byte {
	var out []byte
	for _, c := range s.src.TrustBundle() {
		out = append(out, c.Raw...)
	}
	return out
}

// errNoCertificate is what callers get before the first certificate:
// Unavailable, which the standard tells clients to retry with a backoff.
var errNoCertificate = status.Error(codes.Unavailable, "workloadapi: the sidecar has no certificate yet (it is asking the control plane for one); retry")

func (s *Server) x509SVIDResponse() (*workload.X509SVIDResponse, error) {
	cert := s.src.Certificate()
	if cert == nil {
		return nil, errNoCertificate
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "workloadapi: private key: %v", err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, der...)
	}
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    s.src.ID().String(),
		X509Svid:    chain,
		X509SvidKey: key,
		Bundle:      s.bundleDER(),
	}}}, nil
}

func (s *Server) x509BundlesResponse() (*workload.X509BundlesResponse, error) {
	return &workload.X509BundlesResponse{Bundles: map[string][]byte{s.trustDomainID(): s.bundleDER()}}, nil
}

// watch sends what build returns now and again after every change of src
// that alters it, until ctx ends or a send fails. Every message is
// complete, as the standard requires.
func watch[T proto.Message](ctx context.Context, src Source, build func() (T, error), send func(T) error) error {
	var last T
	sent := false
	for {
		changed := src.Changed()
		msg, err := build()
		if err != nil {
			return err
		}
		if !sent || !proto.Equal(msg, last) {
			if err := send(msg); err != nil {
				return err
			}
			last, sent = msg, true
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}
