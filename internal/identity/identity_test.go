package identity

import "testing"

func TestParseRoundTrip(t *testing.T) {
	id := ID{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "web"}
	got, err := Parse(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if got != id {
		t.Fatalf("Parse(%q) = %+v, want %+v", id.String(), got, id)
	}
	if id.URL().String() != id.String() {
		t.Fatalf("URL() = %q, want %q", id.URL(), id.String())
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"http://cluster.local/ns/a/sa/b",
		"spiffe://cluster.local",
		"spiffe://cluster.local/ns/a",
		"spiffe://cluster.local/ns/a/sa/b/extra",
		"spiffe://cluster.local/namespace/a/sa/b",
		"spiffe://Cluster.Local/ns/a/sa/b",
		"spiffe://cluster.local/ns//sa/b",
		"spiffe://cluster.local/ns/a/sa/..",
		"spiffe://cluster.local/ns/a b/sa/c",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("spiffe://cluster.local/ns/demo/sa/web")
	f.Add("spiffe://x/ns/a/sa/b/c")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}
