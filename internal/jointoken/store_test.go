package jointoken

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/store"
)

// testStore is one embedded etcd shared by the package's tests; each test
// uses identities of its own.
var testStore *store.Store

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jointoken-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testStore, err = store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testStore.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testTD = "example.org"

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTokens(t testing.TB, clk *clock) *Store {
	t.Helper()
	opts := Options{TrustDomain: testTD}
	if clk != nil {
		opts.Now = clk.Now
	}
	return New(testStore, opts)
}

func id(ns, sa string) identity.ID {
	return identity.ID{TrustDomain: testTD, Namespace: ns, ServiceAccount: sa}
}

func create(t testing.TB, s *Store, sp Spec) Created {
	t.Helper()
	out, err := s.Create(context.Background(), []Spec{sp})
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// stored returns the raw stored token, to show that a refusal changed
// nothing.
func stored(t testing.TB, tokenID string) store.Item {
	t.Helper()
	it, err := testStore.Get(context.Background(), Prefix+tokenID)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func TestParse(t *testing.T) {
	tokID, secret, err := generate(strings.NewReader(strings.Repeat("\x01", idBytes+secretBytes)))
	if err != nil {
		t.Fatal(err)
	}
	token := tokID + "." + secret
	if len(token) != TokenLen || tokID != "tok_0101010101010101" {
		t.Fatalf("token %q (%d bytes)", token, len(token))
	}
	gotID, gotSecret, err := Parse(token)
	if err != nil || gotID != tokID || gotSecret != secret {
		t.Fatalf("Parse = %q, %q, %v", gotID, gotSecret, err)
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"short":          token[:TokenLen-1],
		"long":           token + "A",
		"no prefix":      "tik" + token[3:],
		"uppercase ID":   "tok_0101010101010A01" + token[IDLen:],
		"no dot":         token[:IDLen] + "x" + token[IDLen+1:],
		"not base64url":  token[:TokenLen-1] + "+",
		"trailing bits":  token[:TokenLen-1] + "B",
		"newline inside": token[:30] + "\n" + token[31:],
	} {
		_, _, err := Parse(bad)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, want ErrMalformed", name, err)
			continue
		}
		if len(bad) > 8 && strings.Contains(err.Error(), bad[IDLen-4:]) {
			t.Errorf("%s: the error repeats the input: %v", name, err)
		}
	}
}

func TestValidate(t *testing.T) {
	s := New(nil, Options{TrustDomain: testTD})
	errs := s.Validate([]Spec{
		{Namespace: "demo", ServiceAccount: "web"},
		{Namespace: "", ServiceAccount: "Web", TTL: time.Millisecond, Uses: -1},
		{Namespace: "demo", ServiceAccount: "a/b", TTL: 400 * 24 * time.Hour, Uses: MaxUses + 1},
	})
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	for _, want := range []string{
		"tokens[1].namespace: required", "tokens[1].ttl: 1ms is outside", "tokens[1].uses: -1 is outside",
		"tokens[2].namespace/serviceAccount:", "tokens[2].ttl: 9600h0m0s is outside", "tokens[2].uses: 1000001 is outside",
	} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("errors %q lack %q", got, want)
		}
	}
	if strings.Contains(strings.Join(got, "\n"), "tokens[0]") {
		t.Errorf("the valid spec was refused: %q", got)
	}
	if errs := s.Validate(nil); len(errs) != 1 {
		t.Errorf("no specs: %v", errs)
	}
}

// TestCreateListRevoke: tokens are listed without secrets, revoking marks
// one revoked (twice is fine), and an unknown ID is an error.
func TestCreateListRevoke(t *testing.T) {
	ctx := context.Background()
	s := newTokens(t, nil)
	before, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.Create(ctx, []Spec{
		{Namespace: "list", ServiceAccount: "a", TTL: time.Hour, Uses: 3},
		{Namespace: "list", ServiceAccount: "b", TTL: 2 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 2 || created[0].Uses != 3 || created[1].Uses != 1 || created[0].State != Active {
		t.Fatalf("created %+v", created)
	}
	for _, c := range created {
		if _, secret, err := Parse(c.Token); err != nil || !strings.HasPrefix(c.Token, c.ID+".") {
			t.Errorf("token %s: %v", c.ID, err)
		} else if it := stored(t, c.ID); strings.Contains(string(it.Value), secret) {
			t.Errorf("the secret of %s is stored", c.ID)
		}
	}
	if got := created[1].ExpiresAt.Sub(created[1].CreatedAt); got != 2*time.Hour {
		t.Errorf("lifetime %v, want 2h", got)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(before)+2 {
		t.Fatalf("listed %d tokens, want %d", len(list), len(before)+2)
	}
	mine := map[string]Info{}
	for _, in := range list {
		mine[in.ID] = in
	}
	if in := mine[created[0].ID]; in.Identity != id("list", "a") || in.UsesLeft != 3 || in.State != Active {
		t.Errorf("listed %+v", in)
	}

	in, err := s.Revoke(ctx, created[0].ID)
	if err != nil || in.State != Revoked || in.RevokedAt.IsZero() {
		t.Fatalf("Revoke = %+v, %v", in, err)
	}
	if again, err := s.Revoke(ctx, created[0].ID); err != nil || !again.RevokedAt.Equal(in.RevokedAt) {
		t.Errorf("revoking twice: %+v, %v", again, err)
	}
	if _, err := s.Revoke(ctx, "tok_0000000000000000"); !errors.Is(err, ErrUnknown) {
		t.Errorf("revoking an unknown token: %v", err)
	}
	if _, err := s.Revoke(ctx, "tok_nope"); !errors.Is(err, ErrMalformed) {
		t.Errorf("revoking a malformed ID: %v", err)
	}
}

// TestConsume: a token gets a certificate for its own identity as often as
// its uses allow; every refusal says why and leaves the stored token as it
// was.
func TestConsume(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	s := newTokens(t, clk)
	web := id("consume", "web")

	good := create(t, s, Spec{Namespace: "consume", ServiceAccount: "web", TTL: time.Hour})
	// A refusal for the wrong identity spends nothing.
	unchanged := func(tokenID string, before store.Item) {
		t.Helper()
		if after := stored(t, tokenID); after.Revision != before.Revision || string(after.Value) != string(before.Value) {
			t.Errorf("a refusal changed token %s", tokenID)
		}
	}
	before := stored(t, good.ID)
	_, err := s.Consume(ctx, good.Token, id("consume", "db"))
	if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "join token "+good.ID+" is for spiffe://example.org/ns/consume/sa/web only, not spiffe://example.org/ns/consume/sa/db") {
		t.Errorf("wrong identity: %v", err)
	}
	unchanged(good.ID, before)

	in, err := s.Consume(ctx, good.Token, web)
	if err != nil || in.UsesLeft != 0 || in.State != Used || in.LastUsedAt.IsZero() {
		t.Fatalf("first use: %+v, %v", in, err)
	}
	before = stored(t, good.ID)
	_, err = s.Consume(ctx, good.Token, web)
	if !errors.Is(err, ErrUsed) || !strings.Contains(err.Error(), "no uses left") || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("replay: %v", err)
	}
	unchanged(good.ID, before)

	revoked := create(t, s, Spec{Namespace: "consume", ServiceAccount: "web"})
	if _, err := s.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	expiring := create(t, s, Spec{Namespace: "consume", ServiceAccount: "web", TTL: time.Minute})
	_, secret, _ := Parse(expiring.Token)
	wrongSecret := revoked.ID + "." + secret

	clk.Advance(2 * time.Minute)
	for _, tc := range []struct {
		name, token string
		reason      error
		want        string
	}{
		{"revoked", revoked.Token, ErrRevoked, "join token " + revoked.ID + " was revoked at "},
		{"expired", expiring.Token, ErrExpired, "join token " + expiring.ID + " expired at "},
		{"wrong secret", wrongSecret, ErrSecret, "join token " + revoked.ID + " does not match"},
		{"unknown", "tok_00000000000000ff." + secret, ErrUnknown, "join token tok_00000000000000ff is unknown"},
		{"malformed", "tok_123", ErrMalformed, "join token is malformed: it is 7 bytes, not 64"},
		{"empty", "", ErrMalformed, "join token is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokID, _, _ := strings.Cut(tc.token, ".")
			var before store.Item
			if tc.reason != ErrUnknown && tc.reason != ErrMalformed {
				before = stored(t, tokID)
			}
			_, err := s.Consume(ctx, tc.token, web)
			var refused *RefusedError
			if !errors.Is(err, tc.reason) || !errors.As(err, &refused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, tc.reason, tc.want)
			}
			if tc.reason != ErrMalformed && refused.TokenID() != tokID {
				t.Errorf("TokenID %q, want %q", refused.TokenID(), tokID)
			}
			if _, sec, ok := strings.Cut(tc.token, "."); ok && strings.Contains(err.Error(), sec) {
				t.Errorf("the error repeats the secret: %v", err)
			}
			if before.Key != "" {
				unchanged(tokID, before)
			}
		})
	}
}

// TestConcurrentUses: of many requests at once with a single-use token
// exactly one succeeds, the others are told the token was used; a token
// with three uses serves exactly three.
func TestConcurrentUses(t *testing.T) {
	s := newTokens(t, nil)
	for _, uses := range []int{1, 3} {
		t.Run(fmt.Sprint(uses), func(t *testing.T) {
			tok := create(t, s, Spec{Namespace: "race", ServiceAccount: "web", Uses: uses})
			const n = 8
			errs := make(chan error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					<-start
					_, err := s.Consume(context.Background(), tok.Token, id("race", "web"))
					errs <- err
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			won := 0
			for err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrUsed):
					t.Errorf("a loser got %v, want ErrUsed", err)
				}
			}
			if won != uses {
				t.Errorf("%d of %d concurrent uses succeeded, want %d", won, n, uses)
			}
			if left := stored(t, tok.ID); !strings.Contains(string(left.Value), `"usesLeft":0`) {
				t.Errorf("stored after the race: %s", left.Value)
			}
		})
	}
}

// TestExpiredTokensAreDeleted: etcd deletes a token when its lease, as
// long as its TTL, runs out.
func TestExpiredTokensAreDeleted(t *testing.T) {
	s := newTokens(t, nil)
	tok := create(t, s, Spec{Namespace: "gc", ServiceAccount: "web", TTL: time.Second})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := testStore.Get(context.Background(), Prefix+tok.ID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired token is still stored")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := s.Consume(context.Background(), tok.Token, id("gc", "web")); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "expired and was deleted") {
		t.Errorf("a deleted token: %v", err)
	}
}
