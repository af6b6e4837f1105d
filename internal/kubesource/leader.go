package kubesource

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// StatusOptions configure status write-back.
type StatusOptions struct {
	// View is what status is made of.
	View View
	// LeaseNamespace and LeaseName name the Lease the control planes
	// elect their status writer with (default trellis-system and
	// trellis-control).
	LeaseNamespace, LeaseName string
	// Identity names this control plane in the Lease (default: host name
	// and a random suffix).
	Identity string
	// LeaseDuration is how long a leader's Lease lasts unrenewed (default
	// 15 s); the leader renews it within two thirds of that, and the
	// others retry every fifth of it.
	LeaseDuration time.Duration
	// Resync is how often the leader recomputes status with no change seen
	// (default 30 s): findings also change with proxies' registrations,
	// which no informer delivers.
	Resync time.Duration
	// Gateways configure the objects the leader keeps for each Gateway
	// (gatewaydeploy.go).
	Gateways GatewayOptions
}

func (o *StatusOptions) defaults() {
	o.LeaseNamespace = cmp.Or(o.LeaseNamespace, "trellis-system")
	o.LeaseName = cmp.Or(o.LeaseName, "trellis-control")
	if o.Identity == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.Identity = cmp.Or(host, "trellis") + "_" + hex.EncodeToString(b)
	}
	o.LeaseDuration = cmp.Or(o.LeaseDuration, 15*time.Second)
	o.Resync = cmp.Or(o.Resync, 30*time.Second)
}

// RunStatus takes part in the leader election until ctx is done and,
// while leading, keeps status current: one control plane writes it, so
// that replicas do not fight over it and its writes stay few.
func (s *Source) RunStatus(ctx context.Context, opts StatusOptions) error {
	opts.defaults()
	s.gateways = opts.Gateways
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaseNamespace, Name: opts.LeaseName},
		Client:     s.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.LeaseDuration * 2 / 3,
		RetryPeriod:     opts.LeaseDuration / 5,
		ReleaseOnCancel: true,
		Name:            opts.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				s.log.Info("leading: writing status", "identity", opts.Identity, "lease", opts.LeaseNamespace+"/"+opts.LeaseName)
				s.deployer = gatewayDeployer{}
				s.statusLoop(ctx, opts)
			},
			OnStoppedLeading: func() {
				s.log.Info("no longer leading: not writing status", "identity", opts.Identity)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("kubesource: leader election: %w", err)
	}
	// Run returns when leadership is lost: stand again.
	for ctx.Err() == nil {
		le.Run(ctx)
	}
	return nil
}

// statusLoop writes status after changes, once they have been quiet for
// a moment (or at most a second later), and every opts.Resync, until ctx
// is done.
func (s *Source) statusLoop(ctx context.Context, opts StatusOptions) {
	const quiet = 100 * time.Millisecond
	resync := time.NewTicker(opts.Resync)
	defer resync.Stop()
	for {
		// One analysis for both: what Gateways run on, and status.
		view := fixedView{opts.View.Analysis()}
		err := s.deployGateways(ctx, view)
		if _, serr := s.reconcile(ctx, view); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil && ctx.Err() == nil {
			// A stale object (another writer, a change since) is retried
			// with the change that made it stale.
			s.log.Warn("writing status or what Gateways run on", "err", err)
		}
		// A proxy's ACK reaches no informer: while a Gateway's Ready pods
		// have not acknowledged their config, look again soon.
		var ack <-chan time.Time
		if s.awaitingACK {
			ack = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-resync.C:
		case <-ack:
		}
		// Let a burst of changes settle, but not for ever: pod churn may
		// never pause.
		t, deadline := time.NewTimer(quiet), time.NewTimer(10*quiet)
	settle:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				deadline.Stop()
				return
			case <-s.changed:
				t.Reset(quiet)
			case <-t.C:
				break settle
			case <-deadline.C:
				break settle
			}
		}
		t.Stop()
		deadline.Stop()
	}
}

// fixedView is a View of one Analysis.
type fixedView struct{ a *Analysis }

func (v fixedView) Analysis() *Analysis { return v.a }
