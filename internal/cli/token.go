package cli

import (
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/jointoken"
	"trellis.dev/trellis/internal/usage"
)

func tokenCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "token create|list|revoke",
		Short: "Make, list and revoke join tokens, with which proxies off Kubernetes get their first certificate",
		Long: `A join token lets one proxy get a certificate for one identity
(spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT) from the control
plane, once by default, until it expires. Give it to the proxy with
trellis-proxy --token-file; the proxy presents it on first contact and then
renews its certificate with the certificate itself. The control plane keeps
only a hash of the token's secret; the token is shown once, when made.`,
		Args: func(c *cobra.Command, args []string) error {
			return usage.Errorf("%s: expects a subcommand: create, list or revoke\nsee '%s --help'", c.CommandPath(), c.CommandPath())
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	c.AddCommand(tokenCreateCommand(g), tokenListCommand(g), tokenRevokeCommand(g))
	return c
}

func tokenCreateCommand(g *globals) *cobra.Command {
	var (
		spec   controlapi.TokenSpec
		ttl    time.Duration
		output string
	)
	c := &cobra.Command{
		Use:   "create --namespace NAMESPACE --service-account SERVICE_ACCOUNT [--ttl DURATION] [--uses N] [-o json]",
		Short: "Make a join token for one identity and print it, once",
		Long: `Make a join token for the identity NAMESPACE/SERVICE_ACCOUNT and print it on
standard output, alone on a line (with -o json, as the "token" field). It is
never shown again: store it where the proxy reads it (--token-file), e.g.

  trellis token create -n shop --service-account web > web.token

Each use gets one certificate; --uses N lets N proxies of the identity
start with it. It expires after --ttl whether used or not.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			switch {
			case spec.Namespace == "":
				return usage.Errorf("--namespace is required")
			case spec.ServiceAccount == "":
				return usage.Errorf("--service-account is required")
			case ttl <= 0:
				return usage.Errorf("--ttl %v: must be positive", ttl)
			case spec.Uses < 1:
				return usage.Errorf("--uses %d: must be at least 1", spec.Uses)
			}
			spec.TTLSeconds = int64(math.Ceil(ttl.Seconds()))
			client, err := g.client()
			if err != nil {
				return err
			}
			made, err := client.CreateTokens(c.Context(), []controlapi.TokenSpec{spec})
			if err != nil {
				return err
			}
			if len(made) != 1 {
				return fmt.Errorf("the control plane made %d tokens, want 1", len(made))
			}
			t := made[0]
			if output == "json" {
				return printJSON(g.stdout, t)
			}
			if _, err := fmt.Fprintln(g.stdout, t.Token); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "join token %s for %s: %s, expires %s (%s); it is not shown again\n",
				t.ID, t.Identity, plural(t.Uses, "use"), t.ExpiresAt.UTC().Format(time.RFC3339), relative(t.ExpiresAt))
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&spec.Namespace, "namespace", "n", "", "namespace of the identity (required)")
	f.StringVar(&spec.ServiceAccount, "service-account", "", "service account of the identity (required)")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid, whether used or not (at most 8784h)")
	f.IntVar(&spec.Uses, "uses", 1, "how many certificates the token gets: one per proxy starting with it")
	f.StringVarP(&output, "output", "o", "text", "output format: text (the token alone) or json")
	return c
}

func tokenListCommand(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list [-o json]",
		Short: "List join tokens: IDs, identities, state, uses left and expiry (never secrets)",
		Long: `List the join tokens the control plane keeps: every token until it expires,
also those used up or revoked, which are refused when presented. STATE is
active, used (no uses left), revoked or expired.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			list, err := client.Tokens(c.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stderr, "no join tokens")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAMESPACE\tSERVICE ACCOUNT\tSTATE\tUSES LEFT\tEXPIRES")
			for _, t := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s (%s)\n", t.ID, t.Namespace, t.ServiceAccount, t.State,
					t.UsesLeft, t.Uses, t.ExpiresAt.UTC().Format(time.RFC3339), relative(t.ExpiresAt))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func tokenRevokeCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: it gets no certificate any more",
		Long: `Revoke the join token ID (tok_ and 16 hex digits, as 'trellis token list'
shows). Certificates it already got stay valid until they expire.`,
		Args: argsBetween(1, 1, "one token ID"),
		RunE: func(c *cobra.Command, args []string) error {
			// A whole token works too; only its ID is sent.
			id, _, _ := strings.Cut(strings.TrimSpace(args[0]), ".")
			if err := jointoken.CheckID(id); err != nil {
				return usage.Errorf("%q is not a token ID: want tok_ and 16 hex digits, as `trellis token list` shows", id)
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			t, err := client.RevokeToken(c.Context(), id)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "join token %s for %s revoked\n", t.ID, t.Identity)
			return err
		},
	}
	return c
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// relative says how far t is from now: "in 59m", "3h ago".
func relative(t time.Time) string {
	d := time.Until(t)
	ago := d < 0
	if ago {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if ago {
		return s + " ago"
	}
	return "in " + s
}
