package proxy

import (
	"context"
	"io/fs"

	"trellis.dev/trellis/internal/proxy/workloadapi"
)

// workloadAPISocketMode is the mode of the Workload API socket: anyone who
// can reach it may connect, so the permissions of its directory decide who
// gets the workload's identity.
const workloadAPISocketMode fs.FileMode = 0o666

// startWorkloadAPI serves the SPIFFE Workload API on
// Options.WorkloadAPISocket, if set, until ctx ends; the socket file is
// removed then. Applications that call before the first certificate are
// told to retry (Unavailable).
func (p *Proxy) startWorkloadAPI(ctx context.Context) error {
	path := p.opts.WorkloadAPISocket
	if path == "" {
		return nil
	}
	ln, err := workloadapi.Listen(path, workloadAPISocketMode)
	if err != nil {
		return err
	}
	srv := workloadapi.New(p.secrets, p.log)
	p.log.Info("serving the SPIFFE Workload API", "socket", path)
	p.goRun(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			p.log.Error("the SPIFFE Workload API stopped", "socket", path, "err", err)
		}
	})
	return nil
}
