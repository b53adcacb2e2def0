package fence_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/fence"
	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/fence/cgroup/cgrouptest"
	"github.com/roam-dev/roam/agent/fence/lease"
)

// fakePods is the robot's pods as the test sets them.
type fakePods struct {
	mu      sync.Mutex
	pods    []fence.Pod
	offline bool // Fresh fails: the API server is unreachable
}

func (f *fakePods) Cached() []fence.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pods)
}

func (f *fakePods) Fresh(context.Context) ([]fence.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.offline {
		return nil, errors.New("offline")
	}
	return slices.Clone(f.pods), nil
}

func (f *fakePods) set(uid string, change func(*fence.Pod)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.pods {
		if f.pods[i].UID == uid {
			change(&f.pods[i])
		}
	}
}

// recorder is an Observer that remembers what happened and when.
type recorder struct {
	mu     sync.Mutex
	events []string
	at     map[string]time.Time
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if r.at == nil {
		r.at = map[string]time.Time{}
	}
	if _, ok := r.at[e]; !ok {
		r.at[e] = time.Now()
	}
}

func (r *recorder) has(e string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.events, e)
}

func (r *recorder) when(e string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at[e]
}

func (r *recorder) Fenced(revoked bool) { r.add(fmt.Sprintf("fenced revoked=%v", revoked)) }
func (r *recorder) Frozen(p fence.Pod)  { r.add("frozen " + p.Name) }
func (r *recorder) Thawed(p fence.Pod)  { r.add("thawed " + p.Name) }
func (r *recorder) Killed(p fence.Pod)  { r.add("killed " + p.Name) }
func (r *recorder) FrozenPods(int)      {}
func (r *recorder) Failed(p fence.Pod, op string, err error) {
	r.add(fmt.Sprintf("failed %s %s: %v", op, p.Name, err))
}

// robot is a fencer over three real pods: "removed" and "kept" may be
// frozen, "optout" (freeze: "false") may not.
type robot struct {
	pods  *fakePods
	rec   *recorder
	lease *lease.Lease
	procs map[string]*cgrouptest.Proc
	cgs   map[string]*cgroup.Pod
}

func startRobot(t *testing.T, v cgroup.Version, l *lease.Lease, hold time.Duration) *robot {
	h := cgrouptest.Hierarchy(t, v)
	r := &robot{pods: &fakePods{}, rec: &recorder{}, lease: l, procs: map[string]*cgrouptest.Proc{}, cgs: map[string]*cgroup.Pod{}}
	for _, name := range []string{"removed", "kept", "optout"} {
		uid := "uid-" + name
		_, ctrs := cgrouptest.MakePod(t, h, cgrouptest.Cgroupfs, "besteffort", uid, "app")
		r.procs[name] = cgrouptest.Start(t, ctrs[0])
		r.procs[name].WaitCounting(t)
		cg, err := h.Find(uid)
		if err != nil {
			t.Fatal(err)
		}
		r.cgs[name] = cg
		r.pods.pods = append(r.pods.pods, fence.Pod{UID: uid, Name: name, Freeze: name != "optout"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f := fence.New(l, h, r.pods, fence.Options{Poll: 10 * time.Millisecond, RevokedHold: hold, Observer: r.rec})
	go func() {
		f.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// keepAcking acknowledges a heartbeat every 50 ms, as the renewer does
// while the cluster is reachable, until the returned stop is called (or
// the test ends); stop returns the send time of the last acknowledgement.
func keepAcking(t *testing.T, l *lease.Lease) (stop func() time.Time) {
	quit, done := make(chan struct{}), make(chan time.Time)
	go func() {
		var last time.Time
		for {
			last = time.Now()
			l.Acked(last)
			select {
			case <-quit:
				done <- last
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	var last time.Time
	stop = func() time.Time {
		once.Do(func() {
			close(quit)
			last = <-done
		})
		return last
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (r *robot) frozen(t *testing.T, name string) bool {
	ok, err := r.cgs[name].Frozen()
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestFencerFreezesAtTheDeadlineAndKillsRemovedPodsOnReturn(t *testing.T) {
	for _, v := range []cgroup.Version{cgroup.V1, cgroup.V2} {
		t.Run(v.String(), func(t *testing.T) {
			const fenceAfter = time.Second
			l, _ := lease.New(fenceAfter, time.Now())
			stopAcks := keepAcking(t, l)
			r := startRobot(t, v, l, time.Hour)
			// Heartbeats acknowledged for a while keep every pod running.
			time.Sleep(fenceAfter)
			if r.rec.has("frozen kept") || r.rec.has("frozen removed") {
				t.Fatal("froze while heartbeats were acknowledged")
			}
			// The cluster is lost: no more acknowledgements.
			lastAck := stopAcks()
			cgrouptest.Eventually(t, "both governed pods frozen", func() bool { return r.rec.has("frozen kept") && r.rec.has("frozen removed") })
			for _, name := range []string{"kept", "removed"} {
				if at := r.rec.when("frozen " + name); at.Sub(lastAck) < fenceAfter {
					t.Errorf("%s frozen %v after the last acknowledged send, before fenceAfter %v", name, at.Sub(lastAck), fenceAfter)
				}
			}
			atFreeze := r.procs["removed"].Count()
			r.procs["optout"].WaitCounting(t) // opted out: never frozen
			if r.frozen(t, "optout") {
				t.Fatal("the opted-out pod was frozen")
			}
			// Meanwhile roam removed one pod. The robot comes back, but the
			// API server cannot be read yet: nothing is thawed.
			r.pods.set("uid-removed", func(p *fence.Pod) { p.Removed = true })
			r.pods.mu.Lock()
			r.pods.offline = true
			r.pods.mu.Unlock()
			keepAcking(t, l)
			time.Sleep(100 * time.Millisecond)
			if !r.frozen(t, "kept") || !r.frozen(t, "removed") {
				t.Fatal("thawed without knowing which pods were removed")
			}
			r.pods.mu.Lock()
			r.pods.offline = false
			r.pods.mu.Unlock()
			select {
			case <-r.procs["removed"].Done():
			case <-time.After(20 * time.Second):
				t.Fatal("the removed pod's process was not killed")
			}
			if n := r.procs["removed"].Count(); n != atFreeze {
				t.Errorf("the removed pod ran after its freeze: counter %d, %d at the freeze", n, atFreeze)
			}
			r.procs["kept"].WaitCounting(t)
			if !r.rec.has("thawed kept") || !r.rec.has("killed removed") || r.rec.has("thawed removed") {
				t.Errorf("events %v", r.rec.events)
			}
		})
	}
}

func TestFencerKillsOnRevocationAndThawsWhatWasNotRemoved(t *testing.T) {
	l, _ := lease.New(time.Hour, time.Now())
	r := startRobot(t, cgroup.V2, l, 200*time.Millisecond)
	revokedAt := time.Now()
	l.Revoke(revokedAt)
	cgrouptest.Eventually(t, "pods frozen on revocation", func() bool { return r.frozen(t, "kept") && r.frozen(t, "removed") })
	// A heartbeat sent after the revocation is acknowledged; the cluster
	// had revoked the lease to remove the robot's pods, so both are killed
	// whatever the API says yet.
	l.Acked(time.Now())
	for _, name := range []string{"kept", "removed"} {
		select {
		case <-r.procs[name].Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s not killed after the revocation", name)
		}
	}
	// Neither was removed (the detector that revoked failed over): after
	// RevokedHold their cgroups are thawed so the kubelet restarts them.
	cgrouptest.Eventually(t, "killed but kept pods thawed after the hold", func() bool { return !r.frozen(t, "kept") && !r.frozen(t, "removed") })
	if !r.rec.has("fenced revoked=true") {
		t.Errorf("events %v", r.rec.events)
	}
}

func TestFencerRestoredExpiredFencesAtOnce(t *testing.T) {
	// A restarted agent whose previous lease ran out (or was revoked).
	l, _ := lease.New(time.Second, time.Time{})
	r := startRobot(t, cgroup.V1, l, time.Hour)
	cgrouptest.Eventually(t, "pods frozen at start", func() bool { return r.frozen(t, "kept") && r.frozen(t, "removed") })
	keepAcking(t, l)
	r.procs["kept"].WaitCounting(t)
	r.procs["removed"].WaitCounting(t)
}

func TestFencerAdoptsPodsAPreviousAgentLeftFrozen(t *testing.T) {
	h := cgrouptest.Hierarchy(t, cgroup.V2)
	_, ctrs := cgrouptest.MakePod(t, h, cgrouptest.Systemd, "", "uid-left", "app")
	proc := cgrouptest.Start(t, ctrs[0])
	proc.WaitCounting(t)
	cg, err := h.Find("uid-left")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cg.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	// The new agent's lease is not expired (its predecessor had an
	// acknowledgement and stopped before thawing).
	l, _ := lease.New(time.Hour, time.Now())
	pods := &fakePods{pods: []fence.Pod{{UID: "uid-left", Name: "left", Freeze: true}}}
	rec := &recorder{}
	f := fence.New(l, h, pods, fence.Options{Poll: 10 * time.Millisecond, Observer: rec})
	go f.Run(ctx)
	proc.WaitCounting(t)
	if !rec.has("thawed left") {
		t.Errorf("events %v", rec.events)
	}
}

// A revocation followed at once by a newer acknowledgement (the agent took
// its Lease back before the fencer ran) is still handled: the pods are
// frozen and killed, never left running.
func TestFencerHandlesARevocationEndedAtOnce(t *testing.T) {
	l, _ := lease.New(time.Hour, time.Now())
	r := startRobot(t, cgroup.V2, l, time.Hour)
	l.Revoke(time.Now())
	l.Acked(time.Now().Add(time.Millisecond))
	for _, name := range []string{"kept", "removed"} {
		select {
		case <-r.procs[name].Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s not killed after a revocation", name)
		}
	}
	r.procs["optout"].WaitCounting(t)
}
