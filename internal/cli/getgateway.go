package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"trellis.dev/trellis/internal/controlapi"
)

// writeGateways prints Gateways with what their status says: the
// addresses clients reach them on, and whether they are programmed.
func writeGateways(tw *tabwriter.Writer, list []controlapi.Resource) error {
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tADDRESSES\tPROGRAMMED\tAGE")
	for _, r := range list {
		addrs, programmed := gatewayStatusColumns(r.Object)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, orDash(r.Namespace), r.Name, orDash(addrs), orDash(programmed), age(r.Object))
	}
	return tw.Flush()
}

// gatewayStatusColumns reads a Gateway's addresses (comma-separated) and
// its Programmed condition's status ("True", "False (Pending)").
func gatewayStatusColumns(obj json.RawMessage) (addrs, programmed string) {
	var gw struct {
		Status struct {
			Addresses []struct {
				Value string `json:"value"`
			} `json:"addresses"`
			Conditions []struct {
				Type, Status, Reason string
			} `json:"conditions"`
		} `json:"status"`
	}
	if json.Unmarshal(obj, &gw) != nil {
		return "", ""
	}
	var vs []string
	for _, a := range gw.Status.Addresses {
		vs = append(vs, a.Value)
	}
	for _, c := range gw.Status.Conditions {
		if c.Type == "Programmed" {
			programmed = c.Status
			if c.Status != "True" && c.Reason != "" {
				programmed += " (" + c.Reason + ")"
			}
		}
	}
	return strings.Join(vs, ","), programmed
}
