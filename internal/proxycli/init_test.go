package proxycli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/capture"
	"trellis.dev/trellis/internal/usage"
)

func runInit(args []string) (cmds []string, out string, err error) {
	run := capture.RunnerFunc(func(stdin, name string, a ...string) (string, error) {
		cmds = append(cmds, name+" "+strings.Join(a, " ")+" "+stdin)
		return "", nil
	})
	var buf bytes.Buffer
	root := &cobra.Command{Use: "trellis-proxy", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(initCommand(&buf, run))
	root.SetArgs(append([]string{"init"}, args...))
	root.SetOut(&buf)
	root.SetErr(&buf)
	err = root.Execute()
	return cmds, buf.String(), err
}

func TestInit(t *testing.T) {
	cmds, _, err := runInit([]string{"--mode", "nftables", "--proxy-uid", "1337", "--exclude-outbound-ports", "22,5432",
		"--exclude-outbound-cidrs", "10.0.0.0/8,192.168.1.1", "--inbound-ports", "8080"})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(cmds, "\n")
	for _, want := range []string{"nft -f -", "meta skuid 1337 return", "tcp dport { 22, 5432 } return",
		"ip daddr 192.168.1.1/32 return", "tcp dport { 8080 } redirect to :15006"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	cmds, out, err := runInit([]string{"--mode", "nftables", "--clean"})
	if err != nil || len(cmds) != 1 || !strings.Contains(cmds[0], "delete table inet trellis") || !strings.Contains(out, "removed") {
		t.Errorf("clean: %v %q %q", err, cmds, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "neither a proxy uid nor a proxy mark"},
		{[]string{"--proxy-uid", "0", "--exclude-outbound-ports", "x"}, "--exclude-outbound-ports"},
		{[]string{"--proxy-uid", "0", "--exclude-outbound-cidrs", "nope"}, "--exclude-outbound-cidrs"},
		{[]string{"--proxy-uid", "0", "--ipv6", "maybe"}, "--ipv6"},
	} {
		_, _, err := runInit(tc.args)
		if !usage.Is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want a usage error with %q", tc.args, err, tc.want)
		}
	}
}
