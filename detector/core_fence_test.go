package detector

import (
	"fmt"
	"testing"
	"time"
)

// runFenced advances s by d in one-second steps; after each step every
// node in renewing has its fence Lease renewal observed.
func runFenced(s *sim, d time.Duration, renewing ...string) []Intent {
	var got []Intent
	for end := s.now.Add(d); s.now.Before(end); {
		got = append(got, s.run(time.Second)...)
		for _, n := range renewing {
			s.core.FenceObserved(n, s.now)
		}
	}
	return got
}

func evictedAt(t *testing.T, got []Intent, node string) time.Time {
	t.Helper()
	in, ok := first(got, IntentEvict, node)
	if !ok {
		t.Fatalf("%s never evicted; intents %+v", node, got)
	}
	return in.At
}

func TestFencedRobotEvictedNoEarlierThanFenceAfterPlusMargin(t *testing.T) {
	for _, after := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second} {
		t.Run(after.String(), func(t *testing.T) {
			s := newSim(t, DefaultCoreConfig(), nil)
			s.add("robot", "")
			s.core.SetFence("robot", FenceFenced, after)
			runFenced(s, time.Minute, "robot")
			lastRenewal := s.now
			s.silence("robot")
			got := s.run(time.Minute)
			at := evictedAt(t, got, "robot")
			floor := lastRenewal.Add(after + DefaultFenceMargin)
			if at.Before(floor) {
				t.Fatalf("evicted %v after the last fence renewal, before fenceAfter %v + margin", at.Sub(lastRenewal), after)
			}
			// and not later than needed: by the floor or today's eviction
			// time, whichever is later, plus a tick.
			if today := 3400*time.Millisecond + 2*tick; at.Sub(lastRenewal) > max(after+DefaultFenceMargin, today)+tick {
				t.Fatalf("evicted %v after the last renewal: later than the floor and today's rule", at.Sub(lastRenewal))
			}
		})
	}
}

func TestUnfencedRobotWaitsUnlessDuplicatesAccepted(t *testing.T) {
	// (no brake: the three robots go silent together)
	s := newSim(t, with(func(c *CoreConfig) { c.Fence.UnfencedTimeout, c.BrakeMinNodes = time.Minute, 10 }), nil)
	s.add("unfenced", "a")
	s.add("dup", "b")
	s.add("stale", "c") // fenced, but its agent stopped renewing long ago
	s.core.SetFence("unfenced", FenceUnfenced, 0)
	s.core.SetFence("dup", FenceAcceptDuplicates, 0)
	s.core.SetFence("stale", FenceFenced, 3*time.Second)
	s.core.FenceObserved("stale", s.now)
	s.run(time.Minute)
	last := s.now
	for _, n := range []string{"unfenced", "dup", "stale"} {
		s.silence(n)
	}
	got := s.run(2 * time.Minute)
	if at := evictedAt(t, got, "dup"); at.Sub(last) > 4*time.Second {
		t.Errorf("duplicates accepted: evicted %v after the last heartbeat, want today's ≈3.4 s", at.Sub(last))
	}
	for _, n := range []string{"unfenced", "stale"} {
		if at := evictedAt(t, got, n); at.Sub(last) < time.Minute {
			t.Errorf("%s evicted %v after its last heartbeat, before the unfenced timeout", n, at.Sub(last))
		}
	}
}

func TestNewLeaderWaitsForTheLongestFenceAfter(t *testing.T) {
	s := newSim(t, with(func(c *CoreConfig) { c.Warmup = 0 }), nil)
	s.add("robot", "")
	s.add("slow-fence", "")
	s.core.SetFence("robot", FenceAcceptDuplicates, 0)
	s.core.SetFence("slow-fence", FenceFenced, 20*time.Second)
	runFenced(s, time.Minute, "slow-fence")
	s.silence("robot")
	s.run(time.Second)
	// Leadership changes now: nothing is removed before the longest
	// fenceAfter + margin has passed.
	took := s.now
	s.core.BeginWarmup(took)
	got := runFenced(s, time.Minute, "slow-fence")
	if at := evictedAt(t, got, "robot"); at.Sub(took) < 20*time.Second+DefaultFenceMargin {
		t.Fatalf("a new leader evicted %v after taking over, before the longest fenceAfter + margin", at.Sub(took))
	}
}

func TestEvictionAbortedWaitsForANewFloor(t *testing.T) {
	s := newSim(t, DefaultCoreConfig(), nil)
	s.add("robot", "")
	s.core.SetFence("robot", FenceFenced, 3*time.Second)
	runFenced(s, time.Minute, "robot")
	s.silence("robot")
	got := s.run(time.Minute)
	evictedAt(t, got, "robot")
	// The revocation found a renewal the detector had not seen.
	aborted := s.now
	s.core.EvictionAborted("robot", aborted)
	if st := s.core.Status("robot", s.now); st.Phase != PhaseSuspected {
		t.Fatalf("phase after an aborted eviction: %v", st.Phase)
	}
	got = s.run(time.Minute)
	if at := evictedAt(t, got, "robot"); at.Sub(aborted) < 3*time.Second+DefaultFenceMargin {
		t.Fatalf("evicted again %v after the abort", at.Sub(aborted))
	}
	if floor, mode := s.core.FenceFloor("robot"); mode != FenceFenced || !floor.Equal(aborted.Add(3*time.Second+DefaultFenceMargin)) {
		t.Fatalf("FenceFloor = %v, %v", floor.Sub(aborted), mode)
	}
}

func TestFenceConfigValidated(t *testing.T) {
	for _, f := range []FenceConfig{{Margin: -1}, {UnfencedTimeout: -1}} {
		if _, err := NewCore(with(func(c *CoreConfig) { c.Fence = f }), t0, nil); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	if s := fmt.Sprint(FenceFenced, FenceUnfenced, FenceAcceptDuplicates, FenceUnset); s != "Fenced Unfenced AcceptDuplicates Unset" {
		t.Errorf("mode names %q", s)
	}
}

func TestAckHeartbeatRefusedOnceEvicted(t *testing.T) {
	s := newSim(t, DefaultCoreConfig(), nil)
	s.add("robot", "")
	s.core.SetFence("robot", FenceFenced, 3*time.Second)
	s.run(time.Minute)
	if !s.core.AckHeartbeat("robot", s.now) {
		t.Fatal("an alive robot's heartbeat may not be acknowledged")
	}
	acked := s.now
	s.silence("robot")
	got := s.run(time.Minute)
	if at := evictedAt(t, got, "robot"); at.Sub(acked) < 3*time.Second+DefaultFenceMargin {
		t.Fatalf("evicted %v after an acknowledged heartbeat", at.Sub(acked))
	}
	if s.core.AckHeartbeat("robot", s.now) {
		t.Fatal("a heartbeat acknowledged after the robot's pods were handed for removal")
	}
}
