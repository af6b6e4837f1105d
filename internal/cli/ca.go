package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/usage"
)

func caCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Inspect the mesh's certificate authority and rotate its root",
		Args:  argsBetween(0, 0, "a subcommand: status, rotate or bundle"),
		RunE: func(c *cobra.Command, args []string) error {
			return usage.Errorf("%s: expects a subcommand: status, rotate or bundle\nsee '%s --help'", c.CommandPath(), c.CommandPath())
		},
	}
	c.AddCommand(caStatusCommand(g), caRotateCommand(g), caBundleCommand(g))
	return c
}

func caStatusCommand(g *globals) *cobra.Command {
	var (
		output string
		wait   bool
		limit  time.Duration
	)
	c := &cobra.Command{
		Use:   "status [-o json] [--wait]",
		Short: "Show the CA's roots, intermediate, root rotation and where the proxies stand",
		Long: `Show the roots of the trust bundle (fingerprint, state, expiry), the
intermediate that signs workload certificates, the root rotation in progress
with the proxies it waits for, and how many proxies acknowledged the current
trust bundle and hold a certificate of the active root.

With --wait, wait until no rotation runs (or a manual one waits for its next
step), showing its progress.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			st, err := client.CAStatus(c.Context())
			if err != nil {
				return err
			}
			if wait {
				if st, err = waitRotation(c.Context(), g, client, st, limit); err != nil {
					return err
				}
			}
			return printCAStatus(g.stdout, st, output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	c.Flags().BoolVar(&wait, "wait", false, "wait until no rotation runs, or a manual one waits for its next step")
	c.Flags().DurationVar(&limit, "timeout", 30*time.Minute, "with --wait, give up after this long")
	return c
}

func caRotateCommand(g *globals) *cobra.Command {
	var (
		step, abort, wait, generate bool
		caCert, caKey, output       string
		limit                       time.Duration
	)
	c := &cobra.Command{
		Use:   "rotate [--wait] [--step] [--abort] [--ca-cert FILE --ca-key FILE] [--generate]",
		Short: "Replace the mesh's root without dropping a connection",
		Long: `Run a whole root rotation:

  1 adding     a new root joins every proxy's trust bundle; waits until every
               proxy acknowledged it
  2 reissuing  an intermediate of the new root signs; proxies renew their
               certificates at once; waits until every proxy holds one
  3 removing   the old root leaves the trust bundle; waits until every proxy
               acknowledged it

Proxies trust both roots while certificates of both exist, so no connection
fails. The rotation is kept with the CA and goes on if a control plane
restarts. Only one runs at a time: a second 'rotate' is refused.

By default the control plane advances by itself as each phase completes.
With --step it waits after each phase: run 'trellis ca rotate --step' again
to move on (refused, changing nothing, while the phase is not complete).
--wait waits for the rotation to end (or, with --step, for the phase to
complete), showing its progress. --abort stops a rotation in phase 1, or
turns one in phase 2 back to the old root; in phase 3 it is too late.

The new root is generated, unless --ca-cert and --ca-key name a root (or an
intermediate with its chain to a root) and its key, in files the control
plane reads. A CA that was supplied that way rotates to a generated root only
with --generate.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			if abort && (step || caCert != "" || caKey != "" || generate) {
				return usage.Errorf("--abort goes alone (with --wait at most)")
			}
			if (caCert == "") != (caKey == "") {
				return usage.Errorf("--ca-cert and --ca-key go together")
			}
			req := controlapi.RotateRequest{Action: controlapi.RotateStart, Generate: generate}
			switch {
			case abort:
				req.Action = controlapi.RotateAbort
			case step:
				req.Action = controlapi.RotateStep
			}
			if caCert != "" {
				var err error
				if req.CACert, err = filepath.Abs(caCert); err != nil {
					return err
				}
				if req.CAKey, err = filepath.Abs(caKey); err != nil {
					return err
				}
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			st, err := client.Rotate(c.Context(), req)
			if err != nil {
				return err
			}
			if output == "table" && st.Message != "" {
				fmt.Fprintln(g.stdout, st.Message)
			}
			if wait {
				if st, err = waitRotation(c.Context(), g, client, st, limit); err != nil {
					return err
				}
			}
			if output == "json" {
				return printCAStatus(g.stdout, st, output)
			}
			if r := st.Rotation; r != nil {
				fmt.Fprintf(g.stdout, "%s: phase %d/3 %s: %s\n", r.ID, r.PhaseNumber, r.Phase, progressLine(r))
				switch {
				case r.Manual && r.Complete:
					fmt.Fprintln(g.stdout, "phase complete: run `trellis ca rotate --step` to go on")
				case r.Manual:
					fmt.Fprintln(g.stdout, "when `trellis ca status` shows the phase complete, run `trellis ca rotate --step` to go on")
				case !wait:
					fmt.Fprintln(g.stdout, "it advances by itself; follow it with `trellis ca status`")
				}
			} else if l := st.LastRotation; l != nil && wait {
				fmt.Fprintf(g.stdout, "%s %s; the trust bundle holds only root %s\n", l.ID, l.Outcome, short(st.Roots[0].Fingerprint))
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&step, "step", false, "advance one phase at a time: start a rotation that waits after each phase, or move a waiting one on")
	f.BoolVar(&wait, "wait", false, "wait until the rotation ends (with --step: until the phase is complete)")
	f.BoolVar(&abort, "abort", false, "stop the rotation (phase 1) or turn it back to the old root (phase 2)")
	f.StringVar(&caCert, "ca-cert", "", "rotate to this root, or intermediate with its chain to a root (a file the control plane reads)")
	f.StringVar(&caKey, "ca-key", "", "the key of --ca-cert's first certificate (a file the control plane reads)")
	f.BoolVar(&generate, "generate", false, "generate the new root even though the active one was supplied with --ca-cert")
	f.DurationVar(&limit, "timeout", 30*time.Minute, "with --wait, give up after this long")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func caBundleCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "bundle",
		Short: "Print the trust bundle (PEM): the roots proxies start with (trellis-proxy --ca-bundle)",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			client, err := g.client()
			if err != nil {
				return err
			}
			pem, err := client.CABundle(c.Context())
			if err != nil {
				return err
			}
			_, err = io.WriteString(g.stdout, pem)
			return err
		},
	}
}

// waitRotation polls the CA until no rotation runs, or a manual one has
// completed its phase, printing progress on stderr.
func waitRotation(ctx context.Context, g *globals, client *controlapi.Client, st *controlapi.CAStatus, limit time.Duration) (*controlapi.CAStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := ""
	for {
		r := st.Rotation
		if r == nil || (r.Manual && r.Complete) {
			return st, nil
		}
		if line := fmt.Sprintf("%s: phase %d/3 %s: %s", r.ID, r.PhaseNumber, r.Phase, progressLine(r)); line != last {
			fmt.Fprintln(g.stderr, line)
			last = line
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("the rotation did not end within %v; it goes on: follow it with `trellis ca status`", limit)
			}
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		next, err := client.CAStatus(ctx)
		if err != nil {
			// The control plane may restart during a long rotation.
			fmt.Fprintln(g.stderr, "waiting:", err)
			continue
		}
		st = next
	}
}

func progressLine(r *controlapi.CARotation) string {
	s := fmt.Sprintf("%d of %d proxies done", r.Done, r.Total)
	if len(r.Lagging) > 0 {
		s += fmt.Sprintf(", %d control plane(s) catching up", len(r.Lagging))
	}
	return s
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// maxWaiting bounds the proxies the table lists as waited for.
const maxWaiting = 20

func printCAStatus(w io.Writer, st *controlapi.CAStatus, output string) error {
	if output == "json" {
		return printJSON(w, st)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	fmt.Fprintf(w, "trust domain:  %s\nCA storage:    %s (generation %d)\n\n", st.TrustDomain, st.Storage, st.Generation)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tSTATE\tIN BUNDLE\tNOT AFTER\tSOURCE\tSUBJECT")
	for _, r := range st.Roots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", short(r.Fingerprint), r.State, yesNo(r.InBundle), ts(r.NotAfter), r.Source, r.Subject)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	in := st.Intermediate
	renew := "renewed from the root before it expires"
	if !in.Renewable {
		renew = "supplied: rotate to a new one before it expires"
	}
	fmt.Fprintf(w, "\nintermediate:  %s %s\n               under root %s, expires %s (%s)\n", short(in.Fingerprint), in.Subject, short(in.Root), ts(in.NotAfter), renew)
	if r := st.Rotation; r != nil {
		mode := "advances by itself"
		if r.Manual {
			mode = "advances on `trellis ca rotate --step`"
		}
		fmt.Fprintf(w, "\nrotation:      %s, %s\n", r.ID, mode)
		fmt.Fprintf(w, "               from root %s to %s", short(r.From), short(r.To))
		if r.Aborted {
			fmt.Fprint(w, " (aborted: returning to the root it started from)")
		}
		fmt.Fprintf(w, "\n               started %s\n", ts(r.StartedAt))
		fmt.Fprintf(w, "phase:         %d/3 %s since %s: %s\n", r.PhaseNumber, r.Phase, ts(r.PhaseSince), r.Description)
		fmt.Fprintf(w, "progress:      %s", progressLine(r))
		switch {
		case r.Complete && r.Manual:
			fmt.Fprint(w, "; complete: run `trellis ca rotate --step` to go on")
		case r.Complete:
			fmt.Fprint(w, "; complete")
		}
		fmt.Fprintln(w)
		for i, wt := range r.Waiting {
			if i == maxWaiting {
				fmt.Fprintf(w, "               ... and %d more (-o json lists them all)\n", len(r.Waiting)-maxWaiting)
				break
			}
			fmt.Fprintf(w, "               waiting for %s\n", wt)
		}
		for _, l := range r.Lagging {
			fmt.Fprintf(w, "               waiting for control plane %s to read the latest CA state\n", l)
		}
	} else {
		fmt.Fprintln(w, "\nrotation:      none running")
	}
	if l := st.LastRotation; l != nil {
		fmt.Fprintf(w, "last rotation: %s %s at %s (root %s to %s)\n", l.ID, l.Outcome, ts(l.EndedAt), short(l.From), short(l.To))
	}
	p := st.Proxies
	fmt.Fprintf(w, "\nproxies:       %d registered, %d reported by a control plane\n", p.Registered, p.Reported)
	fmt.Fprintf(w, "trust bundle:  %d of %d acknowledged the current bundle\n", p.BundleCurrent, p.TakingBundle)
	fmt.Fprintf(w, "certificates:  %d from the active root, %d from another root, %d unknown\n", p.OnActiveRoot, p.OnOtherRoot, p.CertUnknown)
	var cps []string
	for _, cp := range st.ControlPlanes {
		s := fmt.Sprintf("%s (generation %d", cp.ID, cp.Generation)
		if !cp.Current {
			s += ", behind"
		}
		cps = append(cps, s+")")
	}
	if len(cps) > 0 {
		fmt.Fprintf(w, "control planes: %s\n", strings.Join(cps, ", "))
	}
	return nil
}
