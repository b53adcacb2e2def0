package detector

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fleetClock drives one node's Lease and direct heartbeats on a virtual
// clock, ticking the Core every 200 ms.
type fleetClock struct {
	t           *testing.T
	core        *Core
	now         time.Time
	lease       time.Duration // Lease renewal interval (0: none)
	direct      bool          // direct heartbeats every 100 ms
	nextLease   time.Time
	nextDirect  time.Time
	lastDirect  time.Time
	suspectedAt time.Time
	intents     int
}

func (f *fleetClock) run(d time.Duration) {
	end := f.now.Add(d)
	for f.now.Before(end) {
		f.now = f.now.Add(10 * time.Millisecond)
		if f.lease > 0 && !f.now.Before(f.nextLease) {
			f.core.Heartbeat("r", f.lease, f.now)
			f.nextLease = f.now.Add(f.lease)
		}
		if f.direct && !f.now.Before(f.nextDirect) {
			f.core.HeartbeatFrom("r", SourceDirect, 0, f.now)
			f.lastDirect = f.now
			f.nextDirect = f.now.Add(DefaultDirectInterval)
		}
		if f.now.Sub(t0)%tick == 0 {
			for _, in := range f.core.Tick(f.now, nil) {
				f.intents++
				if in.Kind == IntentSuspect && f.suspectedAt.IsZero() {
					f.suspectedAt = f.now
				}
			}
		}
	}
}

func newFleetClock(t *testing.T, m *Metrics) *fleetClock {
	t.Helper()
	c, err := NewCore(DefaultCoreConfig(), t0, m)
	if err != nil {
		t.Fatal(err)
	}
	return &fleetClock{t: t, core: c, now: t0}
}

// A robot with direct heartbeats is judged by them: when they stop it is
// suspected within the direct window's deadline, long before its Lease
// (renewed every 10 s) would tell; the Lease window stays warm meanwhile.
func TestDirectHeartbeatsJudgeTheRobot(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFleetClock(t, m)
	f.lease, f.direct = 10*time.Second, true
	f.run(time.Minute)
	if !f.suspectedAt.IsZero() {
		t.Fatalf("suspected at %v while heartbeating", f.suspectedAt.Sub(t0))
	}
	if src := f.core.ActiveSource("r"); src != SourceDirect {
		t.Fatalf("active source %v, want direct", src)
	}
	if st := f.core.Status("r", f.now); st.Phase != PhaseAlive {
		t.Fatalf("phase %v after a minute of heartbeats", st.Phase)
	}
	direct, lease := testutil.ToFloat64(m.Heartbeats.WithLabelValues("direct")), testutil.ToFloat64(m.Heartbeats.WithLabelValues("lease"))
	if direct < 500 || lease < 5 || lease > 10 {
		t.Errorf("roam_heartbeats_total: direct %v, lease %v; want ≈600 and ≈6", direct, lease)
	}

	f.direct = false // the agent's datagrams stop; the kubelet still renews
	f.run(20 * time.Second)
	if f.suspectedAt.IsZero() {
		t.Fatal("not suspected after direct heartbeats stopped")
	}
	pc := DefaultDirectPhi()
	bound := pc.FirstInterval + pc.AcceptablePause + 10*pc.MinStdDev + tick // phi 8 is z ≈ 5.6 floored std devs
	if took := f.suspectedAt.Sub(f.lastDirect); took > bound {
		t.Errorf("suspected %v after the last direct heartbeat; the direct window allows at most %v", took, bound)
	}
}

// Switching sources never suspects the robot: to direct heartbeats in
// the middle of a Lease interval, and back to the Lease when the direct
// sessions end.
func TestSwitchingSourcesIsNotSuspected(t *testing.T) {
	f := newFleetClock(t, nil)
	f.lease = time.Second
	f.run(30 * time.Second)
	f.run(500 * time.Millisecond) // mid-interval
	f.direct = true
	f.run(30 * time.Second)
	if src := f.core.ActiveSource("r"); src != SourceDirect {
		t.Fatalf("active source %v, want direct", src)
	}
	f.direct = false
	f.core.EndDirect("r", f.now)
	if src := f.core.ActiveSource("r"); src != SourceLease {
		t.Fatalf("active source %v after the direct sessions ended, want lease", src)
	}
	f.run(30 * time.Second)
	if !f.suspectedAt.IsZero() {
		t.Errorf("suspected at %v by switching sources", f.suspectedAt.Sub(t0))
	}
	// Still judged by the Lease: silent, it is suspected.
	f.lease = 0
	f.run(10 * time.Second)
	if f.suspectedAt.IsZero() {
		t.Error("not suspected after its Lease stopped")
	}
}

// A node without a Lease is judged by its Node heartbeats until a Lease
// appears, then by the Lease.
func TestLeaseTakesOverFromNodeHeartbeats(t *testing.T) {
	f := newFleetClock(t, nil)
	for range 15 {
		f.core.HeartbeatFrom("r", SourceNode, 0, f.now)
		f.run(time.Second)
	}
	if src := f.core.ActiveSource("r"); src != SourceNode {
		t.Fatalf("active source %v, want node", src)
	}
	f.lease = time.Second
	f.run(30 * time.Second) // no Node heartbeats any more: the Lease judges
	if src := f.core.ActiveSource("r"); src != SourceLease || !f.suspectedAt.IsZero() {
		t.Errorf("active source %v, suspected at %v; want lease, never", src, f.suspectedAt)
	}
}
