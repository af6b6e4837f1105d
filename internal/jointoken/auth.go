package jointoken

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
)

// Authenticate approves a certificate request for id if its token field
// holds a join token for exactly id with a use left, and spends that use.
// It has the signature of ca.Authenticator: the control plane hands it to
// ca.PeerOrToken as the judge of tokens. A refused token is Unauthenticated,
// or PermissionDenied when the token is for another identity; a store
// failure is Unavailable. Errors name the requested identity and the token's
// ID (TokenID, for logs), never its secret.
func (s *Store) Authenticate(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
	if _, err := s.Consume(ctx, req.GetToken(), id); err != nil {
		return &authError{want: id, err: err}
	}
	return nil
}

// authError is a refusal of Authenticate, carrying its gRPC status.
type authError struct {
	want identity.ID
	err  error
}

func (e *authError) Error() string { return fmt.Sprintf("no certificate for %s: %v", e.want, e.err) }
func (e *authError) Unwrap() error { return e.err }

// GRPCStatus tells gRPC which code to answer with.
func (e *authError) GRPCStatus() *status.Status {
	code := codes.Unavailable
	var r *RefusedError
	if errors.As(e.err, &r) {
		code = codes.Unauthenticated
		if errors.Is(r.Reason, ErrIdentity) {
			code = codes.PermissionDenied
		}
	}
	return status.New(code, e.Error())
}
