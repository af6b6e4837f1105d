package route

import (
	"net/http"
	"testing"
)

// TestXXHash64 checks the package's xxHash64 against the reference
// implementation's output (github.com/cespare/xxhash/v2, seeds included)
// for every length class: bytes i*7+1.
func TestXXHash64(t *testing.T) {
	for _, v := range []struct {
		n    int
		seed uint64
		want uint64
	}{
		{0, 0, 0xef46db3751d8e999}, {0, 42, 0x98b1582b0977e704},
		{1, 0, 0x8a4127811b21e730}, {1, 42, 0x5c8a87f68bc4934a},
		{3, 0, 0xb6e6c910c2fd373a}, {3, 42, 0x5bbfbc9449838b0e},
		{4, 0, 0x22eda2cf6af4c124}, {4, 42, 0x6967d6f705a3f32e},
		{7, 0, 0x34084d91a233a751}, {7, 42, 0xba2a62ad1d10675d},
		{8, 0, 0xc6f1803a5e0b3222}, {8, 42, 0x99242947739c9fdb},
		{15, 0, 0x514c6f58d37ce6f1}, {15, 42, 0x9b6babf7e6b1ed09},
		{31, 0, 0x6ab1c40e29f50073}, {31, 42, 0x714a8d82b73f3ee9},
		{32, 0, 0x5a0756fbe9ecd3d1}, {32, 42, 0x451036e0e11a31d1},
		{33, 0, 0xdc50cdc37bb9c183}, {33, 42, 0xdee66e13fad7fe87},
		{64, 0, 0x90083da9cdb9d795}, {64, 42, 0x0c395a96800b1850},
		{100, 0, 0xd248bfc5208b0b16}, {100, 42, 0x1a14d1b72f915932},
	} {
		b := make([]byte, v.n)
		for i := range b {
			b[i] = byte(i*7 + 1)
		}
		if got := XXHash64(b, v.seed); got != v.want {
			t.Errorf("XXHash64(%d bytes, seed %d) = %#016x, want %#016x", v.n, v.seed, got, v.want)
		}
	}
	if got := XXHash64([]byte("abc"), 0); got != 0x44bc2cf5ad770999 {
		t.Errorf(`XXHash64("abc") = %#x`, got)
	}
}

func TestHashPolicies(t *testing.T) {
	rt := onlyRoute(mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c",
	  "hash_policy":[{"header":{"header_name":"x-user"}},{"cookie":{"name":"session"},"terminal":true},{"header":{"header_name":"x-never"}}]}`)))
	req := func(h map[string][]string, cookie string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://h/", nil)
		for k, v := range h {
			r.Header[http.CanonicalHeaderKey(k)] = v
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "session", Value: cookie})
		}
		return r
	}
	if _, ok := rt.Hash(req(nil, "")); ok {
		t.Error("a request with neither header nor cookie has a hash")
	}
	user := XXHash64([]byte("alice"), 0)
	if h, ok := rt.Hash(req(map[string][]string{"x-user": {"alice"}}, "")); !ok || h != user {
		t.Errorf("header hash = %x %v, want %x", h, ok, user)
	}
	// Envoy sorts a header's values and chains them as seeds.
	multi := XXHash64([]byte("b"), XXHash64([]byte("a"), 0))
	if h, _ := rt.Hash(req(map[string][]string{"x-user": {"b", "a"}}, "")); h != multi {
		t.Errorf("multi-valued header hash = %x, want %x", h, multi)
	}
	cookie := XXHash64([]byte("s1"), 0)
	if h, _ := rt.Hash(req(nil, "s1")); h != cookie {
		t.Errorf("cookie hash = %x, want %x", h, cookie)
	}
	// Both: rotate the first left by one and XOR; the cookie policy is
	// terminal, so x-never is not looked at.
	both := (user<<1 | user>>63) ^ cookie
	if h, _ := rt.Hash(req(map[string][]string{"x-user": {"alice"}, "x-never": {"z"}}, "s1")); h != both {
		t.Errorf("combined hash = %x, want %x", h, both)
	}
}

func TestHashPolicyRefusals(t *testing.T) {
	for _, tc := range []string{
		`{"header":{"header_name":"x","regex_rewrite":{"pattern":{"regex":"a"},"substitution":"b"}}}`,
		`{"cookie":{"name":"s","ttl":"1s"}}`,
		`{"connection_properties":{"source_ip":true}}`,
		`{"header":{"header_name":":path"}}`,
	} {
		if _, err := Compile(parse(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","hash_policy":[`+tc+`]}`))); err == nil {
			t.Errorf("hash policy %s accepted", tc)
		}
	}
}
