package heartbeat

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
)

// AckGate decides whether this replica may acknowledge heartbeats: only
// while it is sure to lead. Agents fence their robots' pods when
// acknowledgements stop, and the detector evicts those pods once fenced,
// so an acknowledgement from a replica that has lost the lead could keep a
// robot unfenced while the new leader evicts its pods.
//
// Leader election gives that certainty for a bounded time: another replica
// takes the Lease only after it has watched the Lease record unchanged for
// the lease duration, counted from when it observed our last renewal —
// which is after our renewal request was sent. So from the moment a
// renewal request was sent, we lead for at least the lease duration (on a
// clock running at the same rate). The gate opens at each successful
// renewal for Window counted from the send time of that request, and
// closes at once when leadership is lost. Use the renew deadline as
// Window (15 s lease, 10 s deadline by default): a leader that cannot
// renew within it steps down anyway, and the 5 s left to the lease
// duration absorb clock-rate differences and a stalled process between
// the check and the send.
type AckGate struct {
	clock  clock.PassiveClock
	window time.Duration

	mu      sync.Mutex
	leading bool
	until   time.Time // monotonic reading; acks stop here
}

// NewAckGate returns a closed gate whose renewals open it for window.
func NewAckGate(clk clock.PassiveClock, window time.Duration) *AckGate {
	return &AckGate{clock: clk, window: window}
}

// Renewed records a successful Lease write by this replica whose request
// was sent at sent.
func (g *AckGate) Renewed(sent time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leading = true
	if u := sent.Add(g.window); u.After(g.until) {
		g.until = u
	}
}

// Stop closes the gate (leadership lost or released).
func (g *AckGate) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leading = false
	g.until = time.Time{}
}

// Acking reports whether acknowledgements may be sent at now.
func (g *AckGate) Acking(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leading && now.Before(g.until)
}

// Lock wraps a leader-election lock so that every successful write that
// makes or keeps this replica the holder opens the gate.
func (g *AckGate) Lock(l resourcelock.Interface) resourcelock.Interface {
	return &gatedLock{Interface: l, gate: g}
}

type gatedLock struct {
	resourcelock.Interface
	gate *AckGate
}

func (l *gatedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := l.gate.clock.Now()
	err := l.Interface.Create(ctx, ler)
	l.observe(sent, ler, err)
	return err
}

func (l *gatedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := l.gate.clock.Now()
	err := l.Interface.Update(ctx, ler)
	l.observe(sent, ler, err)
	return err
}

func (l *gatedLock) observe(sent time.Time, ler resourcelock.LeaderElectionRecord, err error) {
	switch {
	case err == nil && ler.HolderIdentity == l.Identity():
		l.gate.Renewed(sent)
	case err == nil:
		l.gate.Stop() // released
	}
}
