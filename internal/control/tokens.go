package control

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"time"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/jointoken"
)

// maxTokensRequestBytes bounds a token request: jointoken.MaxCreate specs
// of a few hundred bytes each.
const maxTokensRequestBytes = 8 << 20

func tokenInfo(in jointoken.Info) controlapi.TokenInfo {
	return controlapi.TokenInfo{
		ID:             in.ID,
		Namespace:      in.Identity.Namespace,
		ServiceAccount: in.Identity.ServiceAccount,
		Identity:       in.Identity.String(),
		CreatedAt:      in.CreatedAt,
		ExpiresAt:      in.ExpiresAt,
		Uses:           in.Uses,
		UsesLeft:       in.UsesLeft,
		State:          string(in.State),
		RevokedAt:      in.RevokedAt,
		LastUsedAt:     in.LastUsedAt,
	}
}

// handleCreateTokens makes join tokens: all of them, or none with every
// problem of the request listed (422).
func (cp *controlPlane) handleCreateTokens(w http.ResponseWriter, r *http.Request) {
	var req controlapi.CreateTokensRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTokensRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, "tokens: malformed request: "+err.Error())
		return
	}
	specs := make([]jointoken.Spec, len(req.Tokens))
	for i, t := range req.Tokens {
		// Seconds too many for a Duration stay invalid rather than overflow.
		ttl := time.Duration(min(t.TTLSeconds, math.MaxInt64/int64(time.Second))) * time.Second
		specs[i] = jointoken.Spec{Namespace: t.Namespace, ServiceAccount: t.ServiceAccount, TTL: ttl, Uses: t.Uses}
	}
	created, err := cp.tokens.Create(r.Context(), specs)
	var specErr *jointoken.SpecError
	switch {
	case errors.As(err, &specErr):
		msgs := make([]string, len(specErr.Errs))
		for i, e := range specErr.Errs {
			msgs[i] = e.Error()
		}
		writeErrors(w, http.StatusUnprocessableEntity, append(msgs, "no token was made")...)
		return
	case err != nil:
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	resp := controlapi.CreateTokensResponse{Tokens: make([]controlapi.NewToken, len(created))}
	for i, c := range created {
		resp.Tokens[i] = controlapi.NewToken{TokenInfo: tokenInfo(c.Info), Token: c.Token}
	}
	writeJSON(w, resp)
}

// handleListTokens lists the stored tokens, never their secrets.
func (cp *controlPlane) handleListTokens(w http.ResponseWriter, r *http.Request) {
	list, err := cp.tokens.List(r.Context())
	if err != nil {
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := make([]controlapi.TokenInfo, len(list))
	for i, in := range list {
		out[i] = tokenInfo(in)
	}
	writeJSON(w, out)
}

// handleRevokeToken revokes one token by ID.
func (cp *controlPlane) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	in, err := cp.tokens.Revoke(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, jointoken.ErrMalformed):
		writeErrors(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, jointoken.ErrUnknown):
		writeErrors(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeErrors(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, tokenInfo(in))
	}
}
