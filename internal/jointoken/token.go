// Package jointoken issues and checks join tokens: the credential a proxy
// off Kubernetes presents once, on first contact, to get a certificate for
// one workload identity from the control plane's CA. After that the proxy
// renews with its certificate (see ca.PeerOrToken).
//
//	trellis token create ──API──► Store.Create ──► etcd tokens/tok_<id>:
//	  prints tok_<id>.<secret> once                  identity, SHA-256 of the secret,
//	                                                 expiry, uses left (a lease
//	                                                 deletes it at expiry)
//	trellis-proxy --token-file ──CreateCertificate{token}──► ca.Server
//	  ──► ca.PeerOrToken ──► Store.Authenticate ──► Store.Consume: check, then
//	      decrement the uses left in one etcd transaction (compare-and-swap)
//
// A token is "tok_" and 16 hex digits (the ID, which is not secret), a dot,
// and 43 base64url characters: 256 random bits from crypto/rand (the
// secret). The store keeps only the SHA-256 of the secret, which is enough
// for a secret of that entropy, and compares it in constant time. A token
// is scoped to exactly one identity (namespace and service account), lives
// until its expiry, and is good for a number of uses, one by default. Two
// concurrent uses of the last use cannot both succeed: each use rewrites
// the token only if nobody changed it since it was read, and the loser
// reads it again and finds it used up.
//
// Used-up and revoked tokens stay stored, so that presenting one again is
// refused with the reason, until they expire; then etcd deletes them.
package jointoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Token format.
const (
	// IDPrefix starts every token and its ID.
	IDPrefix = "tok_"
	// idBytes random bytes make the ID's hex digits; secretBytes those of
	// the secret.
	idBytes     = 8
	secretBytes = 32
	// IDLen and TokenLen are the lengths of an ID and of a whole token.
	IDLen    = len(IDPrefix) + 2*idBytes
	TokenLen = IDLen + 1 + (secretBytes*8+5)/6
)

// Why a token is refused. A *RefusedError wraps one of them.
var (
	ErrMalformed = errors.New("jointoken: malformed token")
	ErrUnknown   = errors.New("jointoken: unknown token")
	ErrSecret    = errors.New("jointoken: wrong secret")
	ErrRevoked   = errors.New("jointoken: revoked")
	ErrExpired   = errors.New("jointoken: expired")
	ErrUsed      = errors.New("jointoken: no uses left")
	ErrIdentity  = errors.New("jointoken: another identity")
)

var secretEncoding = base64.RawURLEncoding

// generate returns a new token's ID and secret, read from random.
func generate(random io.Reader) (id, secret string, err error) {
	b := make([]byte, idBytes+secretBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", "", fmt.Errorf("jointoken: reading random bytes: %w", err)
	}
	return IDPrefix + hex.EncodeToString(b[:idBytes]), secretEncoding.EncodeToString(b[idBytes:]), nil
}

// Parse splits a token into its ID and secret. Its errors wrap
// ErrMalformed and never repeat the input, which may be a mistyped secret.
func Parse(token string) (id, secret string, err error) {
	id, secret, problem := parse(token)
	if problem != "" {
		return "", "", fmt.Errorf("%w: %s", ErrMalformed, problem)
	}
	return id, secret, nil
}

const wantForm = "want tok_<16 hex digits>.<43 characters> as `trellis token create` printed it"

// parse splits a token, or says what is wrong with it.
func parse(token string) (id, secret, problem string) {
	if len(token) != TokenLen {
		return "", "", fmt.Sprintf("it is %d bytes, not %d; %s", len(token), TokenLen, wantForm)
	}
	id, secret, _ = strings.Cut(token, ".")
	if problem := checkID(id); problem != "" {
		return "", "", problem + "; " + wantForm
	}
	if len(secret) != TokenLen-IDLen-1 {
		return "", "", "no dot after the ID; " + wantForm
	}
	if b, err := secretEncoding.Strict().DecodeString(secret); err != nil || len(b) != secretBytes {
		return "", "", fmt.Sprintf("the part after the dot is not %d bytes of unpadded base64url; %s", secretBytes, wantForm)
	}
	return id, secret, ""
}

// CheckID checks that id is a token ID: tok_ and 16 lowercase hex digits.
// Its errors wrap ErrMalformed.
func CheckID(id string) error {
	if problem := checkID(id); problem != "" {
		return fmt.Errorf("%w: %s", ErrMalformed, problem)
	}
	return nil
}

func checkID(id string) string {
	hexPart, ok := strings.CutPrefix(id, IDPrefix)
	if !ok || len(id) != IDLen {
		return "the ID is not tok_ and 16 hex digits"
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "the ID is not tok_ and 16 lowercase hex digits"
		}
	}
	return ""
}

// hashSecret is what the store keeps of a secret: its SHA-256, in hex.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// secretMatches compares a secret with a stored hash in constant time.
func secretMatches(secret, storedHash string) bool {
	want, err := hex.DecodeString(storedHash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
