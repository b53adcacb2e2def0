package detector

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const tick = 200 * time.Millisecond

// sim drives a Core on a virtual clock: heartbeats scheduled per node, a tick
// every 200 ms. No sleeps.
type sim struct {
	t       *testing.T
	core    *Core
	now     time.Time
	next    map[string]time.Time // next heartbeat; zero = silent
	gap     func(node string) time.Duration
	intents []Intent
}

// fixedRule is the default configuration with the fixed eviction rule (a
// suspected node is evicted after EvictionConfirm), which these tests
// exercise with nodes that have no history; adaptive timeouts have their
// own tests (adaptive_test.go).
func fixedRule() CoreConfig {
	c := DefaultCoreConfig()
	c.Adaptive = false
	return c
}

// with is the fixed-rule configuration changed by f.
func with(f func(*CoreConfig)) CoreConfig {
	c := fixedRule()
	f(&c)
	return c
}

func newSim(t *testing.T, cfg CoreConfig, m *Metrics) *sim {
	t.Helper()
	c, err := NewCore(cfg, t0, m)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{t: t, core: c, now: t0, next: map[string]time.Time{},
		gap: func(string) time.Duration { return time.Second }}
}

// add starts heartbeats of node (1 s lease interval) at the current time.
func (s *sim) add(node, zone string) {
	s.core.SetZone(node, zone)
	s.next[node] = s.now
}

func (s *sim) silence(node string) { s.next[node] = time.Time{} }
func (s *sim) resume(node string)  { s.next[node] = s.now }

// run advances virtual time by d, delivering heartbeats in time order
// between ticks, and returns the intents issued.
func (s *sim) run(d time.Duration) []Intent {
	var got []Intent
	end := s.now.Add(d)
	for s.now.Before(end) {
		tickAt := s.now.Add(tick)
		for node, at := range s.next {
			for !at.IsZero() && !at.After(tickAt) {
				s.core.Heartbeat(node, time.Second, at)
				at = at.Add(s.gap(node))
				s.next[node] = at
			}
		}
		s.now = tickAt
		got = s.core.Tick(s.now, got)
	}
	s.intents = append(s.intents, got...)
	return got
}

func count(in []Intent, kind IntentKind, node string) int {
	n := 0
	for _, i := range in {
		if i.Kind == kind && (node == "" || i.Node == node) {
			n++
		}
	}
	return n
}

func first(in []Intent, kind IntentKind, node string) (Intent, bool) {
	for _, i := range in {
		if i.Kind == kind && (node == "" || i.Node == node) {
			return i, true
		}
	}
	return Intent{}, false
}

func TestJitteryHeartbeatsNeverSuspected(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	rng := rand.New(rand.NewPCG(1, 2))
	// Wi-Fi-like: 1 s ± 100 ms, 5 % of heartbeats 200-600 ms late
	// (TCP retransmissions), one in 200 a full second late.
	s.gap = func(string) time.Duration {
		g := time.Second + time.Duration(rng.IntN(200)-100)*time.Millisecond
		switch r := rng.Float64(); {
		case r < 0.005:
			g += time.Second
		case r < 0.05:
			g += time.Duration(200+rng.IntN(400)) * time.Millisecond
		}
		return g
	}
	for i := range 20 {
		s.add(fmt.Sprintf("robot-%d", i), "a")
	}
	got := s.run(time.Hour)
	if n := count(got, IntentSuspect, ""); n != 0 {
		i, _ := first(got, IntentSuspect, "")
		t.Fatalf("%d suspicions of live jittery robots over 20 robot-hours; first: %+v", n, i)
	}
	if n := count(got, IntentEvict, ""); n != 0 {
		t.Fatalf("%d evictions of live robots", n)
	}
}

func TestSilentNodeSuspectedInTime(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, fixedRule(), m)
	for i := range 5 {
		s.add(fmt.Sprintf("robot-%d", i), "")
	}
	s.run(time.Minute)
	if n := len(s.intents) - count(s.intents, IntentRecover, ""); n != 0 {
		t.Fatalf("unexpected intents while all alive: %+v", s.intents)
	}
	s.silence("robot-3")
	got := s.run(10 * time.Second)
	sus, ok := first(got, IntentSuspect, "robot-3")
	if !ok {
		t.Fatalf("silent robot not suspected within 10 s: %+v", got)
	}
	// Regular 1 s heartbeats: phi reaches 8 at 1 + 0.5 + 5.61·0.2 ≈ 2.62 s
	// after the last heartbeat; the 200 ms tick adds at most one tick.
	if d := sus.At.Sub(sus.LastHeartbeat); d < 2400*time.Millisecond || d > 3*time.Second {
		t.Errorf("detected %v after the last heartbeat, want within [2.4 s, 3 s]", d)
	}
	if h := testutil.CollectAndCount(m.Detection); h != 1 {
		t.Errorf("roam_detection_seconds series = %d", h)
	}
	if sus.Phi < 8 || sus.Braked {
		t.Errorf("suspect intent %+v: want phi ≥ 8, not braked", sus)
	}
	if n := count(got, IntentEvict, "robot-3"); n != 1 {
		t.Errorf("evictions of robot-3 = %d, want 1", n)
	}
	if n := len(got) - count(got, IntentSuspect, "robot-3") - count(got, IntentEvict, "robot-3"); n != 0 {
		t.Errorf("other intents: %+v", got)
	}
	if v := testutil.ToFloat64(m.Suspicions); v != 1 {
		t.Errorf("roam_suspicions_total = %v", v)
	}
	if v := testutil.ToFloat64(m.Nodes.WithLabelValues(StateSuspected)); v != 1 {
		t.Errorf("roam_nodes{state=suspected} = %v", v)
	}
	if v := testutil.ToFloat64(m.Nodes.WithLabelValues(StateAlive)); v != 4 {
		t.Errorf("roam_nodes{state=alive} = %v", v)
	}
	if v := nodePhi(t, m, "robot-3"); v < 8 {
		t.Errorf("roam_node_phi{robot-3} = %v", v)
	}
	if v := testutil.ToFloat64(m.Heartbeats.WithLabelValues("lease")); v < 5*60 {
		t.Errorf("roam_heartbeats_total = %v", v)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP roam_eviction_brake_active 1 while the partition brake holds evictions (too many nodes of a zone or of the fleet suspected at once).
# TYPE roam_eviction_brake_active gauge
roam_eviction_brake_active 0
`), "roam_eviction_brake_active"); err != nil {
		t.Error(err)
	}

	// The robot comes back: it recovers after 3 heartbeats, once.
	s.resume("robot-3")
	got = s.run(10 * time.Second)
	rec, ok := first(got, IntentRecover, "robot-3")
	if !ok || count(got, IntentRecover, "robot-3") != 1 {
		t.Fatalf("robot-3 did not recover exactly once: %+v", got)
	}
	if rec.Phi >= 8 {
		t.Errorf("recovered with phi %v", rec.Phi)
	}
	if n := count(got, IntentSuspect, "") + count(got, IntentEvict, ""); n != 0 {
		t.Errorf("intents after recovery: %+v", got)
	}
	if v := testutil.ToFloat64(m.Recoveries); v != 1 {
		t.Errorf("roam_recoveries_total = %v", v)
	}
	// The outage did not widen the window: a second loss is detected as fast.
	s.silence("robot-3")
	got = s.run(10 * time.Second)
	if sus2, ok := first(got, IntentSuspect, "robot-3"); !ok {
		t.Fatal("second silence not suspected")
	} else {
		if d := sus2.At.Sub(sus2.LastHeartbeat); d > 3*time.Second {
			t.Errorf("second detection took %v, want ≤ 3 s", d)
		}
	}
}

func TestFlappingNodeBoundedActions(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	s.add("steady", "")
	s.add("flappy", "")
	s.run(time.Minute)
	// flappy: 4 heartbeats, then 4 s of silence, for an hour.
	beats := 0
	s.gap = func(node string) time.Duration {
		if node != "flappy" {
			return time.Second
		}
		beats++
		if beats%4 == 0 {
			return 5 * time.Second
		}
		return time.Second
	}
	got := s.run(time.Hour)
	sus, rec, ev := count(got, IntentSuspect, "flappy"), count(got, IntentRecover, "flappy"), count(got, IntentEvict, "flappy")
	t.Logf("flapping for 1 h (900 silences): %d suspicions, %d recoveries, %d evictions", sus, rec, ev)
	// Recovery needs 3, 6, 12, 24… heartbeats: a node that never shows
	// more than 4 in a row recovers at most once.
	if sus > 2 || rec > 1 || ev > 2 {
		t.Errorf("flapping node caused %d suspicions, %d recoveries, %d evictions; want ≤ 2, 1, 2", sus, rec, ev)
	}
	if sus == 0 {
		t.Error("flapping node never suspected")
	}
	if n := count(got, IntentSuspect, "steady") + count(got, IntentEvict, "steady"); n != 0 {
		t.Errorf("steady node got %d intents", n)
	}
}

func TestBrakeHoldsAndReleases(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, fixedRule(), m)
	for i := range 10 {
		s.add(fmt.Sprintf("a-%d", i), "site-a")
	}
	for i := range 4 {
		s.add(fmt.Sprintf("b-%d", i), "site-b")
	}
	s.run(time.Minute)

	// site-b's uplink fails: 3 of its 4 robots (75 %, > 2) go silent at once.
	for i := range 3 {
		s.silence(fmt.Sprintf("b-%d", i))
	}
	got := s.run(30 * time.Second)
	if n := count(got, IntentEvict, ""); n != 0 {
		t.Fatalf("brake did not hold: %d evictions: %+v", n, got)
	}
	br, ok := first(got, IntentBrake, "")
	if !ok || !br.Active || br.Scope != "site-b" || br.Suspected != 3 || br.Total != 4 {
		t.Fatalf("brake intent %+v (found %v), want active for site-b 3/4", br, ok)
	}
	if n := count(got, IntentSuspect, ""); n < 3 {
		t.Errorf("suspect intents = %d, want ≥ 3", n)
	}
	if !s.core.BrakeActive() || testutil.ToFloat64(m.BrakeActive) != 1 {
		t.Error("brake not reported active")
	}

	// Meanwhile one robot of site-a is really lost: site-a is not braked.
	s.silence("a-7")
	got = s.run(10 * time.Second)
	if n := count(got, IntentEvict, "a-7"); n != 1 {
		t.Errorf("a-7 evictions = %d, want 1 (its zone is not braked)", n)
	}

	// Two of site-b come back: 1 suspected < 3, the brake releases by itself
	// and the robot still lost is evicted.
	s.resume("b-0")
	s.resume("b-1")
	got = s.run(10 * time.Second)
	if br, ok := first(got, IntentBrake, ""); !ok || br.Active {
		t.Fatalf("brake not released: %+v", got)
	}
	if n := count(got, IntentEvict, "b-2"); n != 1 {
		t.Errorf("b-2 evictions after release = %d, want 1", n)
	}
	if n := count(got, IntentEvict, "b-0") + count(got, IntentEvict, "b-1"); n != 0 {
		t.Errorf("returned robots evicted %d times", n)
	}
	if s.core.BrakeActive() || testutil.ToFloat64(m.BrakeActive) != 0 {
		t.Error("brake still reported active")
	}
}

func TestGlobalBrake(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	for i := range 5 {
		s.add(fmt.Sprintf("r-%d", i), "") // no zones
	}
	s.run(time.Minute)
	for i := range 3 {
		s.silence(fmt.Sprintf("r-%d", i))
	}
	got := s.run(30 * time.Second)
	if n := count(got, IntentEvict, ""); n != 0 {
		t.Fatalf("%d evictions with 3/5 nodes suspected", n)
	}
	if br, ok := first(got, IntentBrake, ""); !ok || br.Scope != "" || !br.Active {
		t.Fatalf("no global brake: %+v", got)
	}
	for _, i := range got {
		if i.Kind == IntentSuspect && !i.Braked {
			t.Errorf("suspect intent not marked braked: %+v", i)
		}
	}
}

func TestRestartWarmup(t *testing.T) {
	// A new detector lists 20 live robots (their first heartbeat is the
	// list), one of which is dead; live robots renew at 1 s from a random
	// phase.
	s := newSim(t, fixedRule(), nil)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20 {
		n := fmt.Sprintf("r-%d", i)
		s.core.Heartbeat(n, time.Second, s.now)
		s.next[n] = s.now.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
	}
	s.silence("r-5")
	got := s.run(DefaultWarmup - tick)
	if n := count(got, IntentSuspect, "") + count(got, IntentEvict, ""); n != 0 {
		t.Fatalf("intents during warm-up: %+v", got)
	}
	got = s.run(5 * time.Second)
	if n := count(got, IntentSuspect, ""); n != 1 || count(got, IntentSuspect, "r-5") != 1 {
		t.Fatalf("after warm-up want exactly r-5 suspected: %+v", got)
	}
	if n := count(got, IntentEvict, ""); n != 1 {
		t.Fatalf("evictions = %d, want 1 (r-5)", n)
	}
	// Each live robot is cleared once when it leaves warm-up.
	if n := count(got, IntentRecover, ""); n != 19 {
		t.Errorf("recover intents at the end of warm-up = %d, want 19", n)
	}
}

func TestPerNodeThreshold(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	s.add("strict", "")
	s.add("default", "")
	s.core.SetThreshold("strict", 3)
	s.run(time.Minute)
	s.silence("strict")
	s.silence("default")
	got := s.run(10 * time.Second)
	a, ok1 := first(got, IntentSuspect, "strict")
	b, ok2 := first(got, IntentSuspect, "default")
	if !ok1 || !ok2 {
		t.Fatalf("not both suspected: %+v", got)
	}
	if !a.At.Before(b.At) || a.Threshold != 3 || b.Threshold != DefaultThreshold {
		t.Errorf("strict (phi 3) suspected at %v, default at %v; thresholds %v, %v", a.At.Sub(t0), b.At.Sub(t0), a.Threshold, b.Threshold)
	}
}

func TestForgetAndZones(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	s := newSim(t, fixedRule(), m)
	s.add("x", "a")
	s.add("y", "a")
	s.run(time.Minute)
	s.core.SetZone("x", "b")
	s.silence("x")
	s.run(10 * time.Second)
	s.core.Forget("x")
	delete(s.next, "x")
	s.core.Forget("nope")
	if st := s.core.Status("x", s.now); st.Known {
		t.Errorf("forgotten node still known: %+v", st)
	}
	s.run(time.Second)
	if v := testutil.ToFloat64(m.Nodes.WithLabelValues(StateSuspected)); v != 0 {
		t.Errorf("suspected after forget = %v", v)
	}
	if v := testutil.ToFloat64(m.Nodes.WithLabelValues(StateAlive)); v != 1 {
		t.Errorf("alive after forget = %v", v)
	}
	if n := testutil.CollectAndCount(m.NodePhi); n != 1 {
		t.Errorf("roam_node_phi series = %d, want 1", n)
	}
	if len(s.core.zones) != 1 || s.core.zones["a"].total != 1 {
		t.Errorf("zones = %+v", s.core.zones)
	}
}

func TestCoreConfigValidate(t *testing.T) {
	for _, c := range []CoreConfig{
		{}, with(func(c *CoreConfig) { c.Threshold = -1 }), with(func(c *CoreConfig) { c.Threshold = 0 }),
		with(func(c *CoreConfig) { c.BrakeFraction = 1.5 }), with(func(c *CoreConfig) { c.Warmup = -time.Second }),
		with(func(c *CoreConfig) { c.RecoverHeartbeats = 0 }), with(func(c *CoreConfig) { c.BrakeMinNodes = 0 }),
		with(func(c *CoreConfig) { c.EvictionConfirm = -1 }), with(func(c *CoreConfig) { c.EvictionDelay = -1 }),
		with(func(c *CoreConfig) { c.Phi.AcceptablePause = -1 }),
	} {
		if _, err := NewCore(c, t0, nil); err == nil {
			t.Errorf("NewCore(%+v) accepted", c)
		}
	}
}

func TestBrakeReleaseNeverEvictsTalkingNode(t *testing.T) {
	s := newSim(t, with(func(c *CoreConfig) { c.RecoverHeartbeats = 100 }), nil)
	for i := range 5 {
		s.add(fmt.Sprintf("r-%d", i), "")
	}
	s.run(time.Minute)
	s.silence("r-0")
	s.silence("r-1")
	s.silence("r-2")
	got := s.run(10 * time.Second)
	if count(got, IntentEvict, "") != 0 || !s.core.BrakeActive() {
		t.Fatalf("brake did not hold: %+v", got)
	}
	// r-0 talks again but needs 100 heartbeats to recover; r-2 is deleted,
	// which releases the brake (2 suspected < 3).
	s.resume("r-0")
	s.run(5 * time.Second)
	s.core.Forget("r-2")
	delete(s.next, "r-2")
	got = s.run(5 * time.Second)
	if s.core.BrakeActive() {
		t.Fatal("brake still active")
	}
	if n := count(got, IntentEvict, "r-0"); n != 0 {
		t.Errorf("r-0 evicted while heartbeating")
	}
	if n := count(got, IntentEvict, "r-1"); n != 1 {
		t.Errorf("r-1 (still silent) evictions = %d, want 1", n)
	}
	if st := s.core.Status("r-0", s.now); !st.Phase.suspected() {
		t.Errorf("r-0 recovered before 100 heartbeats: %+v", st)
	}
}

// Without a confirmation, a robot lost alone is emptied in the tick that
// suspects it: no other node is about to be suspected, so no brake could
// engage and nothing is gained by waiting out the eviction delay.
func TestLoneSilentNodeEvictedAtOnce(t *testing.T) {
	s := newSim(t, with(func(c *CoreConfig) { c.EvictionConfirm = 0 }), nil)
	for i := range 5 {
		s.add(fmt.Sprintf("r-%d", i), "site")
	}
	s.run(time.Minute)
	s.silence("r-2")
	got := s.run(10 * time.Second)
	sus, ok1 := first(got, IntentSuspect, "r-2")
	ev, ok2 := first(got, IntentEvict, "r-2")
	if !ok1 || !ok2 {
		t.Fatalf("r-2 suspected %v, evicted %v: %+v", ok1, ok2, got)
	}
	if !ev.At.Equal(sus.At) {
		t.Errorf("evicted %v after suspicion, want in the same tick", ev.At.Sub(sus.At))
	}
}

// Robots cut off together stop at different phases of their renewal period,
// so they cross the threshold up to one period apart. The first one's
// eviction waits while the others are about to be suspected, the brake
// engages, and nothing is evicted; without the eviction delay the first
// would have been emptied before the brake saw the partition.
func TestStaggeredPartitionIsBraked(t *testing.T) {
	for _, tc := range []struct {
		delay     time.Duration
		wantEvict bool
	}{{DefaultEvictionDelay, false}, {0, true}} {
		s := newSim(t, with(func(c *CoreConfig) { c.EvictionDelay, c.EvictionConfirm = tc.delay, 0 }), nil)
		for i := range 10 {
			s.add(fmt.Sprintf("a-%d", i), "site-a")
		}
		for i := range 4 {
			node := fmt.Sprintf("b-%d", i)
			s.core.SetZone(node, "site-b")
			s.next[node] = s.now.Add(time.Duration(i) * 250 * time.Millisecond)
		}
		s.run(time.Minute)
		for i := range 3 {
			s.silence(fmt.Sprintf("b-%d", i))
		}
		got := s.run(30 * time.Second)
		var firstAt, lastAt time.Time
		for i := range 3 {
			sus, ok := first(got, IntentSuspect, fmt.Sprintf("b-%d", i))
			if !ok {
				t.Fatalf("b-%d not suspected", i)
			}
			if firstAt.IsZero() || sus.At.Before(firstAt) {
				firstAt = sus.At
			}
			if sus.At.After(lastAt) {
				lastAt = sus.At
			}
		}
		if lastAt.Sub(firstAt) < 400*time.Millisecond {
			t.Fatalf("suspicions %v apart: the robots were not staggered", lastAt.Sub(firstAt))
		}
		if n := count(got, IntentEvict, ""); (n > 0) != tc.wantEvict {
			t.Errorf("eviction delay %v: %d evictions, want any: %v", tc.delay, n, tc.wantEvict)
		}
		if br, ok := first(got, IntentBrake, ""); !ok || !br.Active || br.Scope != "site-b" {
			t.Errorf("eviction delay %v: brake %+v (found %v), want site-b active", tc.delay, br, ok)
		}
	}
}

// With an eviction confirmation, a suspicion that ends within it costs the
// taint but no eviction; a robot that stays silent is evicted exactly the
// confirmation after its suspicion.
func TestEvictionConfirm(t *testing.T) {
	s := newSim(t, with(func(c *CoreConfig) { c.EvictionConfirm = time.Second }), nil)
	for i := range 5 {
		s.add(fmt.Sprintf("r-%d", i), "site")
	}
	s.run(time.Minute)
	s.silence("r-1")
	got := s.run(3 * time.Second)
	if _, ok := first(got, IntentSuspect, "r-1"); !ok {
		t.Fatalf("r-1 not suspected 3 s into its silence: %+v", got)
	}
	s.resume("r-1")
	got = append(got, s.run(5*time.Second)...)
	if n := count(got, IntentEvict, "r-1"); n != 0 {
		t.Errorf("r-1 resumed within the confirmation but was evicted %d times", n)
	}

	s.silence("r-2")
	got = s.run(10 * time.Second)
	sus, ok1 := first(got, IntentSuspect, "r-2")
	ev, ok2 := first(got, IntentEvict, "r-2")
	if !ok1 || !ok2 {
		t.Fatalf("r-2 suspected %v, evicted %v: %+v", ok1, ok2, got)
	}
	if d := ev.At.Sub(sus.At); d != time.Second {
		t.Errorf("r-2 evicted %v after its suspicion, want the 1 s confirmation", d)
	}
}

// timeLayout mirrors time.Time (Go ≥ 1.9): with bit 63 of wall set, bits
// 30–62 hold the wall clock's seconds since 1885, bits 0–29 its
// nanoseconds, and ext the monotonic clock reading.
type timeLayout struct {
	wall uint64
	ext  int64
	loc  *time.Location
}

// wallStep returns t with its wall-clock reading stepped by step (whole
// seconds) and its monotonic reading unchanged: what time.Now returns
// after NTP steps the host's clock.
func wallStep(tb testing.TB, t time.Time, step time.Duration) time.Time {
	tb.Helper()
	s := t
	p := (*timeLayout)(unsafe.Pointer(&s))
	if p.wall>>63 == 0 {
		tb.Fatal("time carries no monotonic reading")
	}
	const nsecBits = 30
	secs := int64(p.wall<<1>>(nsecBits+1)) + int64(step/time.Second)
	p.wall = 1<<63 | uint64(secs)<<nsecBits | p.wall&(1<<nsecBits-1)
	if s.Sub(t) != 0 || s.UnixNano()-t.UnixNano() != int64(step) {
		tb.Fatalf("time.Time layout changed: stepped Sub %v, wall %v", s.Sub(t), time.Duration(s.UnixNano()-t.UnixNano()))
	}
	return s
}

// Decisions use monotonic time: when the host's wall clock steps ±5 s
// while the monotonic clock runs on, no live robot is suspected and a
// robot that falls silent at that moment is detected as fast as ever.
func TestWallClockStepChangesNothing(t *testing.T) {
	base := time.Now() // carries a monotonic reading, as the detector's clock does
	for _, step := range []time.Duration{5 * time.Second, -5 * time.Second} {
		var offset time.Duration // the wall clock's step so far
		stamp := func(d time.Duration) time.Time {
			if offset == 0 {
				return base.Add(d)
			}
			return wallStep(t, base.Add(d), offset)
		}
		core, err := NewCore(fixedRule(), stamp(0), nil)
		if err != nil {
			t.Fatal(err)
		}
		const stepAt, lastBeat = 60 * time.Second, 59 * time.Second
		detected := time.Duration(-1)
		for d := time.Duration(0); d <= 90*time.Second; d += tick {
			if d == stepAt {
				offset = step
			}
			for i := range 5 {
				phase := time.Duration(i) * 100 * time.Millisecond
				if i == 0 && d > lastBeat {
					continue // robot-0 falls silent as the clock steps
				}
				if d >= phase && (d-phase)%time.Second == 0 {
					core.Heartbeat(fmt.Sprintf("robot-%d", i), time.Second, stamp(d))
				}
			}
			for _, in := range core.Tick(stamp(d), nil) {
				switch {
				case in.Kind == IntentSuspect && in.Node == "robot-0" && detected < 0:
					detected = d - lastBeat
				case in.Kind == IntentSuspect || (in.Kind == IntentEvict && in.Node != "robot-0"):
					t.Fatalf("wall step %v: %v of %s at %v", step, in.Kind, in.Node, d)
				}
			}
		}
		if detected < 2400*time.Millisecond || detected > 3*time.Second {
			t.Errorf("wall step %v: robot-0 suspected %v after its last heartbeat, want within [2.4 s, 3 s]", step, detected)
		}
	}
}

// A suspected robot that sends two heartbeats (too few to recover) and
// falls silent again is evicted only once the confirmation has passed
// again, counted from when it was found silent again.
func TestSecondSilenceIsConfirmed(t *testing.T) {
	cfg := fixedRule()
	s := newSim(t, cfg, nil)
	for i := range 5 {
		s.add(fmt.Sprintf("r-%d", i), "site")
	}
	s.run(time.Minute)
	s.silence("r-1")
	got := s.run(3 * time.Second)
	sus, ok := first(got, IntentSuspect, "r-1")
	if !ok {
		t.Fatalf("r-1 not suspected: %+v", got)
	}
	if n := count(got, IntentEvict, "r-1"); n != 0 {
		t.Fatalf("r-1 evicted within its confirmation")
	}
	// Two heartbeats, a second apart, then silence again.
	s.resume("r-1")
	got = s.run(1100 * time.Millisecond)
	s.silence("r-1")
	got = append(got, s.run(10*time.Second)...)
	if n := count(got, IntentRecover, "r-1"); n != 0 {
		t.Fatalf("r-1 recovered after two heartbeats (needs %d)", cfg.RecoverHeartbeats)
	}
	ev, ok := first(got, IntentEvict, "r-1")
	if !ok {
		t.Fatalf("r-1 never evicted after its second silence: %+v", got)
	}
	first := sus.At.Sub(sus.LastHeartbeat)
	if d := ev.At.Sub(ev.LastHeartbeat); d < first-tick+cfg.EvictionConfirm {
		t.Errorf("second silence evicted %v after the last heartbeat; suspicion takes %v, so want ≥ %v with the %v confirmation",
			d, first, first-tick+cfg.EvictionConfirm, cfg.EvictionConfirm)
	}
}

// While the heartbeat source is cut off every robot looks silent: nothing
// is suspected or evicted until it delivers again and a warm-up has
// passed, however long the outage and however far apart the failed
// retries (the reflector backs off up to 30 s), and a robot still silent
// then is handled as usual.
func TestSourceInterruptionSuspectsNothing(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	for i := range 4 {
		s.add(fmt.Sprintf("r-%d", i), fmt.Sprintf("z-%d", i)) // one per zone: only the global brake could hold
	}
	s.run(time.Minute)
	// The API server goes away for 45 s: no heartbeat reaches the
	// detector, whose watch fails at once and whose retries fail at
	// growing intervals, the last ones further apart than the warm-up.
	for i := range 4 {
		s.silence(fmt.Sprintf("r-%d", i))
	}
	var got []Intent
	for _, gap := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second} {
		s.core.SourceInterrupted(s.now)
		got = append(got, s.run(gap)...)
	}
	// It is back (the relist delivers objects); r-3 was lost meanwhile.
	s.core.SourceResumed(s.now)
	for i := range 3 {
		s.resume(fmt.Sprintf("r-%d", i))
	}
	back := s.now
	got = append(got, s.run(20*time.Second)...)
	for _, in := range got {
		if in.Node != "r-3" && (in.Kind == IntentSuspect || in.Kind == IntentEvict) {
			t.Fatalf("%v of live %s at %v", in.Kind, in.Node, in.At.Sub(back))
		}
	}
	ev, ok := first(got, IntentEvict, "r-3")
	if !ok {
		t.Fatalf("r-3, lost during the outage, never evicted: %+v", got)
	}
	if d := ev.At.Sub(back); d < DefaultWarmup || d > DefaultWarmup+3*time.Second {
		t.Errorf("r-3 evicted %v after the source came back, want about the %v warm-up after it", d, DefaultWarmup)
	}
}

// SourceResumed while the source flows changes nothing: a silent robot is
// suspected on time, not a warm-up later.
func TestSourceResumedWhileFlowingChangesNothing(t *testing.T) {
	s := newSim(t, fixedRule(), nil)
	for i := range 4 {
		s.add(fmt.Sprintf("r-%d", i), fmt.Sprintf("z-%d", i))
	}
	s.run(time.Minute)
	s.silence("r-0")
	lost := s.now
	var got []Intent
	for range 10 {
		s.core.SourceResumed(s.now)
		got = append(got, s.run(time.Second)...)
	}
	sus, ok := first(got, IntentSuspect, "r-0")
	if !ok {
		t.Fatalf("r-0 never suspected: %+v", got)
	}
	if d := sus.At.Sub(lost); d > 5*time.Second {
		t.Errorf("r-0 suspected %v after its last heartbeat, want the usual few seconds", d)
	}
}

// HeartbeatThenNextTick is Heartbeat followed by NextTick: the same next
// tick as the two calls, in every phase a heartbeat can meet (warming up,
// alive, suspected and recovering).
func TestHeartbeatThenNextTick(t *testing.T) {
	one, two := newSim(t, DefaultCoreConfig(), nil), newSim(t, DefaultCoreConfig(), nil)
	now := t0
	beat := func(gap time.Duration) {
		t.Helper()
		now = now.Add(gap)
		for _, s := range []*sim{one, two} {
			for s.now.Add(tick).Before(now) {
				s.now = s.now.Add(tick)
				s.core.Tick(s.now, nil)
			}
		}
		one.core.Heartbeat("r", time.Second, now)
		want := one.core.NextTick()
		if got := two.core.HeartbeatThenNextTick("r", SourceLease, time.Second, now); !got.Equal(want) {
			t.Fatalf("at %v: HeartbeatThenNextTick = %v, Heartbeat then NextTick = %v", now.Sub(t0), got.Sub(t0), want.Sub(t0))
		}
	}
	for range 20 {
		beat(time.Second) // warming up, then alive
	}
	beat(10 * time.Second) // suspected during the silence
	for range 10 {
		beat(time.Second) // recovering
	}
	if st := two.core.Status("r", now); st.Phase != PhaseAlive {
		t.Errorf("phase %v after recovering, want Alive", st.Phase)
	}
}
