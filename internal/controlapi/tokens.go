package controlapi

import (
	"context"
	"net/http"
	"time"
)

// PathTokens is the join token API: POST creates, GET lists, and
// POST PathTokens/ID/revoke revokes.
const PathTokens = "/api/v1/tokens"

// TokenSpec asks for one join token.
type TokenSpec struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// TTLSeconds is how long the token is valid; 0 means an hour.
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
	// Uses is how many certificates the token gets; 0 means one.
	Uses int `json:"uses,omitempty"`
}

// CreateTokensRequest asks for tokens, all made or none shown.
type CreateTokensRequest struct {
	Tokens []TokenSpec `json:"tokens"`
}

// TokenInfo describes a stored join token, never its secret.
type TokenInfo struct {
	// ID is tok_ and 16 hex digits: the token's name, not a secret.
	ID             string `json:"id"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// Identity is the SPIFFE ID the token gets a certificate for.
	Identity  string    `json:"identity"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Uses      int       `json:"uses"`
	UsesLeft  int       `json:"usesLeft"`
	// State is active, used (no uses left), revoked or expired.
	State      string    `json:"state"`
	RevokedAt  time.Time `json:"revokedAt,omitzero"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
}

// NewToken is a token just made: the only time the token itself is shown.
type NewToken struct {
	TokenInfo
	// Token is what the proxy presents: tok_<id>.<secret>.
	Token string `json:"token"`
}

// CreateTokensResponse returns the new tokens in the order asked for.
type CreateTokensResponse struct {
	Tokens []NewToken `json:"tokens"`
}

// CreateTokens makes join tokens.
func (c *Client) CreateTokens(ctx context.Context, specs []TokenSpec) ([]NewToken, error) {
	var out CreateTokensResponse
	if err := c.do(ctx, http.MethodPost, PathTokens, nil, CreateTokensRequest{Tokens: specs}, &out); err != nil {
		return nil, err
	}
	return out.Tokens, nil
}

// Tokens lists the stored join tokens, oldest first.
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	if err := c.do(ctx, http.MethodGet, PathTokens, nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeToken revokes the join token id.
func (c *Client) RevokeToken(ctx context.Context, id string) (*TokenInfo, error) {
	var out TokenInfo
	if err := c.do(ctx, http.MethodPost, PathTokens+"/"+id+"/revoke", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
