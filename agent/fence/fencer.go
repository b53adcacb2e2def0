// Package fence is roam-agent's fencing: when the robot has had no
// acknowledged heartbeat for fenceAfter (package lease), it freezes the
// cgroups of the pods roam would move off it (package cgroup), so that no
// pod roam removes from a lost robot keeps running there. On reconnection it
// kills the frozen pods that roam removed meanwhile, without letting them
// run again, and thaws the others.
package fence

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/fence/lease"
)

// Pod is what the fencer knows of one pod on its robot.
type Pod struct {
	UID string
	// Name is "namespace/name", for logs and events.
	Name string
	// Freeze: roam moves the pod on node failure and may freeze it
	// (policies.OnNodeFailure).
	Freeze bool
	// Removed: roam removed the pod or is removing it: it is being deleted,
	// or carries DisruptionTarget with reason RoamNodeUnreachable.
	Removed bool
}

// Pods are the robot's pods.
type Pods interface {
	// Cached is the informer cache's view. Fencing uses only it: no API
	// call is needed (or possible) when the robot has lost the cluster.
	Cached() []Pod
	// Fresh reads the robot's pods from the API server (a quorum read), to
	// decide which frozen pods were removed.
	Fresh(ctx context.Context) ([]Pod, error)
}

// Observer hears what the fencer does (metrics, events, logs); every
// method is called from the fencer's goroutine.
type Observer interface {
	// Fenced: the lease expired (revoked: the cluster revoked it).
	Fenced(revoked bool)
	// Frozen: pod was frozen.
	Frozen(pod Pod)
	// Thawed: pod was thawed (it is still wanted).
	Thawed(pod Pod)
	// Killed: pod was killed while frozen (roam removed it).
	Killed(pod Pod)
	// Failed: pod could not be fenced, thawed or killed; it counts as
	// unfenced.
	Failed(pod Pod, op string, err error)
	// FrozenPods is the number of pods frozen now.
	FrozenPods(n int)
}

// Options configure a Fencer.
type Options struct {
	// Poll is how often a fenced robot looks for pods the kubelet started
	// meanwhile, and retries what failed (default 100ms).
	Poll time.Duration
	// OpTimeout bounds one freeze, thaw or kill (default 5s).
	OpTimeout time.Duration
	// RevokedHold: a pod killed because the cluster revoked the lease, but
	// that the cluster then did not remove, is thawed this long after the
	// revocation (so that the kubelet restarts it) — long enough for a
	// detector that revoked and failed over to have removed it (default
	// 60s, four leader-election lease durations).
	RevokedHold time.Duration
	Clock       clock.WithTicker
	Observer    Observer
}

func (o *Options) defaults() {
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.RevokedHold <= 0 {
		o.RevokedHold = time.Minute
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// held is a pod the fencer froze (or killed and keeps frozen).
type held struct {
	pod     Pod
	cg      *cgroup.Pod
	revoked bool // frozen while the lease was revoked: it is killed, never thawed
	killed  bool
	killAt  time.Time // killed after a revocation: thawed at killAt+RevokedHold if still wanted
}

// Fencer freezes the robot's governed pods while its lease is expired.
type Fencer struct {
	lease *lease.Lease
	h     cgroup.Hierarchy
	pods  Pods
	opts  Options

	fenced bool
	held   map[string]*held
	// failed are the pods whose freeze failed, reported once per fence.
	failed map[string]bool
	// revocations is the number of the lease's revocations handled;
	// reported the number reported to the Observer.
	revocations, reported uint64
}

// New returns a Fencer for the pods of this robot.
func New(l *lease.Lease, h cgroup.Hierarchy, pods Pods, opts Options) *Fencer {
	opts.defaults()
	return &Fencer{lease: l, h: h, pods: pods, opts: opts, held: map[string]*held{}, failed: map[string]bool{}}
}

// Run fences and unfences until ctx ends. Call it first thing at start:
// a lease restored as expired is acted on before anything else.
func (f *Fencer) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	f.adopt(ctx)
	for {
		st := f.lease.State()
		now := f.opts.Clock.Now()
		var wake <-chan time.Time
		var stop func() bool
		revoked := st.Revocations > f.revocations
		if st.Expired(now) || revoked {
			if !f.fenced || st.Revocations > f.reported {
				f.fenced, f.reported = true, st.Revocations
				logger.Info("No acknowledged heartbeat: fencing", "lastAck", st.LastAck, "revoked", revoked)
				f.opts.Observer.Fenced(revoked)
			}
			// A revocation is handled once every pod is frozen and marked
			// to be killed, even if the lease is valid again already.
			if f.freeze(ctx, revoked) {
				f.revocations = st.Revocations
			}
			t := f.opts.Clock.NewTimer(f.opts.Poll)
			wake, stop = t.C(), t.Stop
		} else {
			if f.fenced {
				if err := f.release(ctx); err != nil {
					logger.Error(err, "Cannot decide which frozen pods roam removed; they stay frozen")
				} else {
					f.fenced = false
					clear(f.failed)
					logger.Info("Heartbeats acknowledged again: unfenced")
				}
			}
			f.thawHeldOver(ctx, now)
			d := st.Deadline.Sub(now)
			if f.fenced || len(f.held) > 0 {
				d = min(d, f.opts.Poll)
			}
			t := f.opts.Clock.NewTimer(d)
			wake, stop = t.C(), t.Stop
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-f.lease.Changed():
			stop()
		case <-wake:
		}
	}
}

// adopt takes over the pods a previous agent left frozen (it stopped
// between freezing and releasing them): they are released like pods this
// agent froze, once a heartbeat is acknowledged.
func (f *Fencer) adopt(ctx context.Context) {
	revoked := f.lease.State().Revoked
	for _, p := range f.pods.Cached() {
		if !p.Freeze {
			continue
		}
		cg, err := f.h.Find(p.UID)
		if err != nil {
			continue
		}
		if frozen, err := cg.Frozen(); err == nil && frozen {
			f.held[p.UID] = &held{pod: p, cg: cg, revoked: revoked}
			f.fenced = true
			klog.FromContext(ctx).Info("Adopted a pod a previous agent froze", "pod", p.Name)
		}
	}
	f.opts.Observer.FrozenPods(len(f.held))
}

// freeze freezes every pod of the cache that may be frozen and is not yet,
// and reports whether none failed.
func (f *Fencer) freeze(ctx context.Context, revoked bool) bool {
	ok := true
	for _, p := range f.pods.Cached() {
		if h, ok := f.held[p.UID]; ok {
			h.revoked = h.revoked || revoked
			continue
		}
		if !p.Freeze {
			continue
		}
		cg, err := f.h.Find(p.UID)
		if cgroup.IsKind(err, cgroup.NoCgroup) {
			continue // not started (yet): looked for again at the next poll
		}
		if err == nil {
			err = f.op(ctx, cg.Freeze)
		}
		if err != nil {
			if !f.failed[p.UID] {
				f.failed[p.UID] = true
				f.opts.Observer.Failed(p, "freeze", err)
			}
			ok = false
			continue
		}
		delete(f.failed, p.UID)
		f.held[p.UID] = &held{pod: p, cg: cg, revoked: revoked}
		f.opts.Observer.Frozen(p)
	}
	f.opts.Observer.FrozenPods(len(f.held))
	return ok
}

// release decides, from a fresh read of the robot's pods, what happens to
// each frozen pod: removed by roam (or frozen while the lease was revoked,
// when the cluster removes it) → killed while frozen; still wanted →
// thawed.
func (f *Fencer) release(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, f.opts.OpTimeout)
	fresh, err := f.pods.Fresh(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("reading the robot's pods: %w", err)
	}
	now := f.opts.Clock.Now()
	byUID := make(map[string]Pod, len(fresh))
	for _, p := range fresh {
		byUID[p.UID] = p
	}
	for uid, h := range f.held {
		if h.killed {
			continue
		}
		p, present := byUID[uid]
		if present && !p.Removed && !h.revoked {
			if err := f.op(ctx, h.cg.Thaw); err != nil {
				f.opts.Observer.Failed(h.pod, "thaw", err)
				continue
			}
			delete(f.held, uid)
			f.opts.Observer.Thawed(h.pod)
			continue
		}
		if err := f.op(ctx, h.cg.Kill); err != nil && !cgroup.IsKind(err, cgroup.NoCgroup) {
			f.opts.Observer.Failed(h.pod, "kill", err)
			continue
		}
		f.opts.Observer.Killed(h.pod)
		if present && !p.Removed {
			// Killed on a revocation, but not removed (yet): kept frozen so
			// the kubelet's restart waits, thawed after RevokedHold unless
			// removed by then.
			h.killed, h.killAt = true, now
			continue
		}
		delete(f.held, uid)
	}
	f.opts.Observer.FrozenPods(len(f.held))
	return nil
}

// thawHeldOver thaws the pods killed on a revocation that the cluster did
// not remove within RevokedHold, and forgets those it removed.
func (f *Fencer) thawHeldOver(ctx context.Context, now time.Time) {
	if len(f.held) == 0 {
		return
	}
	cached := map[string]Pod{}
	for _, p := range f.pods.Cached() {
		cached[p.UID] = p
	}
	for uid, h := range f.held {
		if !h.killed {
			continue
		}
		p, present := cached[uid]
		switch {
		case !present || p.Removed:
			delete(f.held, uid)
		case now.Sub(h.killAt) >= f.opts.RevokedHold:
			if err := f.op(ctx, h.cg.Thaw); err != nil && !cgroup.IsKind(err, cgroup.NoCgroup) {
				f.opts.Observer.Failed(h.pod, "thaw", err)
				continue
			}
			delete(f.held, uid)
			f.opts.Observer.Thawed(h.pod)
		}
	}
	f.opts.Observer.FrozenPods(len(f.held))
}

func (f *Fencer) op(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, f.opts.OpTimeout)
	defer cancel()
	return fn(ctx)
}

type nopObserver struct{}

func (nopObserver) Fenced(bool)               {}
func (nopObserver) Frozen(Pod)                {}
func (nopObserver) Thawed(Pod)                {}
func (nopObserver) Killed(Pod)                {}
func (nopObserver) Failed(Pod, string, error) {}
func (nopObserver) FrozenPods(int)            {}
