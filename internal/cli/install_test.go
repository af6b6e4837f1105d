package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/usage"
)

func TestInstall(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"install", "--crds-only"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	crds := strings.Count(out.String(), "\nkind: CustomResourceDefinition\n")
	if kinds := strings.Count(out.String(), "\nkind: "); crds != 13 || kinds != crds {
		t.Errorf("--crds-only: %d CRDs among %d objects, want 13 and nothing else", crds, kinds)
	}

	out.Reset()
	if err := Run(context.Background(), []string{"install", "-n", "mesh", "--image", "example.com/trellis:1"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nkind: Deployment\n", "image: example.com/trellis:1\n", "  namespace: mesh\n", "\nkind: MutatingWebhookConfiguration\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("install -n mesh --image example.com/trellis:1: no %q", want)
		}
	}

	for _, args := range [][]string{
		{"install", "-o", "table"},
		{"install", "--namespace", "Not_A_Namespace"},
		{"install", "--image", ""},
		{"install", "extra"},
		{"install", "--no-such-flag"},
	} {
		if err := Run(context.Background(), args, &out, &errOut); !usage.Is(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
