package detector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Defaults of ProbeConfig, each with its reason.
const (
	// DefaultProbeInterval: on 1 s renewals a live robot's phi reaches the
	// default threshold ≈2.6 s after its last heartbeat, so at least 1.6 s
	// after the API server stopped. A refused connection is seen within
	// one interval, well before that.
	DefaultProbeInterval = 500 * time.Millisecond
	// DefaultProbeTimeout: an API server (or a network path) that does not
	// answer within a second counts as unreachable; a probe started just
	// after it hung fails within interval + timeout (1.5 s).
	DefaultProbeTimeout = time.Second
	// ProbeResumeFallback: once the API server answers again, the stream
	// of heartbeats normally delivers within client-go's watch retry
	// back-off (at most 30 s, jittered up to 60 s), and its first object
	// ends the interruption (Core.SourceResumed). When nothing at all
	// changes in the cluster, nothing is delivered: the interruption then
	// ends this long after the probe first succeeded again, so the fleet
	// is judged again even then.
	ProbeResumeFallback = 90 * time.Second
)

// ProbeConfig configures the API server reachability probe. The zero
// value turns it off.
type ProbeConfig struct {
	// Interval between the end of one probe and the start of the next;
	// zero turns the probe off.
	Interval time.Duration
	// Timeout: a probe not answered within it has failed (positive when
	// the probe is on).
	Timeout time.Duration
}

// DefaultProbeConfig is roam-detector's default probe.
func DefaultProbeConfig() ProbeConfig {
	return ProbeConfig{Interval: DefaultProbeInterval, Timeout: DefaultProbeTimeout}
}

// Validate reports the first invalid setting.
func (c ProbeConfig) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("probe interval %v must not be negative (0: no probe)", c.Interval)
	case c.Interval > 0 && c.Timeout <= 0:
		return fmt.Errorf("probe timeout %v must be positive", c.Timeout)
	}
	return nil
}

// ReadyzCheck is the probe roam-detector runs: a GET of the API server's
// /readyz, which answers without touching etcd's data and fails while the
// server shuts down or has lost etcd.
func ReadyzCheck(client kubernetes.Interface) (func(context.Context) error, error) {
	rc := client.Discovery().RESTClient()
	if rc == nil {
		return nil, errors.New("the client has no REST client to probe /readyz with")
	}
	return func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("GET /readyz: %w", err)
		}
		if len(body) < 2 || string(body[:2]) != "ok" {
			return fmt.Errorf("GET /readyz: %q", body)
		}
		return nil
	}, nil
}

// sourceGate is what the probe tells: the Core's view of its heartbeat
// source.
type sourceGate interface {
	SourceInterrupted(now time.Time)
	SourceResumed(now time.Time)
}

// Probe checks that the API server answers, so the detector knows when the
// stream of heartbeats is cut off even though client-go's reflector does
// not say so: a refused connection makes it retry the watch without
// reporting an error, and every live robot would then look silent. Each
// failed probe marks the source interrupted (nothing is judged); the
// stream's next delivery ends that (see Core.SourceResumed), or, when
// nothing is delivered, ProbeResumeFallback after the API server answers
// again.
type Probe struct {
	cfg   ProbeConfig
	check func(context.Context) error
	gate  sourceGate
	clock clock.Clock
}

// NewProbe returns a probe that runs check (ReadyzCheck) on clk and tells
// gate (the Core) what it finds.
func NewProbe(cfg ProbeConfig, check func(context.Context) error, gate sourceGate, clk clock.Clock) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if check == nil || gate == nil || clk == nil {
		return nil, errors.New("probe: check, gate and clock are required")
	}
	return &Probe{cfg: cfg, check: check, gate: gate, clock: clk}, nil
}

// Run probes until ctx ends; it does nothing when the interval is zero.
func (p *Probe) Run(ctx context.Context) {
	if p.cfg.Interval == 0 {
		return
	}
	logger := klog.FromContext(ctx)
	var failedSince, answeredSince time.Time // zero: not failing / not recovering
	for {
		err := p.once(ctx)
		if ctx.Err() != nil {
			return
		}
		now := p.clock.Now()
		switch {
		case err != nil:
			if failedSince.IsZero() {
				logger.Info("API server unreachable: judging no robot until its heartbeats flow again and a warm-up has passed", "err", err)
				failedSince = now
			}
			answeredSince = time.Time{}
			p.gate.SourceInterrupted(now)
		case !failedSince.IsZero() && answeredSince.IsZero():
			logger.Info("API server answers again", "unreachableFor", now.Sub(failedSince))
			answeredSince = now
		case !failedSince.IsZero() && now.Sub(answeredSince) >= ProbeResumeFallback:
			// No-op when the stream has delivered since.
			p.gate.SourceResumed(now)
			failedSince, answeredSince = time.Time{}, time.Time{}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.clock.After(p.cfg.Interval):
		}
	}
}

// once runs one check, bounded by the timeout on the probe's clock.
func (p *Probe) once(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.check(cctx) }()
	timer := p.clock.NewTimer(p.cfg.Timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C():
		return fmt.Errorf("no answer within %s", p.cfg.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
