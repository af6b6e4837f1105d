package route

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// HashPolicy is one compiled hash_policy entry of a route: the request's
// load balancing hash for RING_HASH clusters comes from a header or a
// cookie, as in Envoy.
type HashPolicy struct {
	// Header is the canonical name of the header to hash, or "".
	Header string
	// Cookie is the name of the cookie to hash, or "".
	Cookie string
	// Terminal stops the evaluation once a hash was produced.
	Terminal bool
}

func init() {
	allow(&routev3.RouteAction_HashPolicy{}, map[string]rule{
		"header":   check,
		"cookie":   check,
		"terminal": accept,
	})
	allow(&routev3.RouteAction_HashPolicy_Header{}, map[string]rule{
		"header_name": accept, // regex_rewrite is refused
	})
	allow(&routev3.RouteAction_HashPolicy_Cookie{}, map[string]rule{
		"name": accept, // ttl (cookie generation), path and attributes are refused
	})
}

// hashPolicies compiles a route action's hash policies; checkFields has
// refused the kinds and fields not implemented.
func (c *compiler) hashPolicies(field string, hps []*routev3.RouteAction_HashPolicy) []HashPolicy {
	var out []HashPolicy
	for i, hp := range hps {
		f := fmt.Sprintf("%s[%d]", field, i)
		p := HashPolicy{Terminal: hp.GetTerminal()}
		switch {
		case hp.GetHeader() != nil:
			name := hp.GetHeader().GetHeaderName()
			if name == "" || name[0] == ':' {
				c.failf(f+".header.header_name", "%q: a regular header name is required", name)
				continue
			}
			p.Header = textproto.CanonicalMIMEHeaderKey(name)
		case hp.GetCookie() != nil:
			if hp.GetCookie().GetName() == "" {
				c.failf(f+".cookie.name", "required")
				continue
			}
			p.Cookie = hp.GetCookie().GetName()
		default:
			c.failf(f, "one of header or cookie is required")
			continue
		}
		out = append(out, p)
	}
	return out
}

// Hash computes the request's load balancing hash by the route's hash
// policies, as Envoy does: a header's values, sorted, hashed with
// xxHash64 (each value seeding the next); a cookie's value hashed with
// xxHash64; several hashes combined by rotating the previous one left by
// one bit and XORing the next; a terminal policy that produced a hash ends
// the evaluation. ok is false when no policy produced a hash.
func (r *Route) Hash(req *http.Request) (h uint64, ok bool) {
	for _, p := range r.HashPolicy {
		var v uint64
		var got bool
		switch {
		case p.Header != "":
			vals := req.Header[p.Header]
			if len(vals) == 0 {
				break
			}
			if len(vals) > 1 {
				vals = slices.Clone(vals)
				slices.Sort(vals)
			}
			var seed uint64
			for _, s := range vals {
				seed = XXHash64([]byte(s), seed)
			}
			v, got = seed, true
		case p.Cookie != "":
			if ck, err := req.Cookie(p.Cookie); err == nil {
				v, got = XXHash64([]byte(ck.Value), 0), true
			}
		}
		if got {
			if ok {
				h = (h<<1 | h>>63) ^ v
			} else {
				h, ok = v, true
			}
		}
		if p.Terminal && ok {
			break
		}
	}
	return h, ok
}
