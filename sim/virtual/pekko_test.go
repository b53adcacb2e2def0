package virtual

import (
	"math"
	"testing"
	"time"

	"github.com/roam-dev/roam/detector/phi"
)

// Pekko's logistic approximation of the normal tail stays within 2 %
// of the exact phi up to z = 3 (it overstates the far tail), and is monotone.
func TestPekkoPhiApproximatesTheNormalTail(t *testing.T) {
	prev := -1.0
	for y := -3.0; y <= 8; y += 0.25 {
		p := PekkoPhi(10+y, 10, 1)
		if p < prev {
			t.Fatalf("Pekko's phi decreases at y = %v", y)
		}
		prev = p
		if exact := phi.PhiNormal(10+y, 10, 1); y >= 0 && y <= 3 && math.Abs(p-exact) > 0.02*math.Max(exact, 1) {
			t.Errorf("y = %v: Pekko phi %v, exact %v", y, p, exact)
		}
	}
	if y := pekkoQuantile(8); math.Abs(PekkoPhi(y, 0, 1)-8) > 1e-9 {
		t.Errorf("pekkoQuantile(8) = %v, where Pekko's phi is %v", y, PekkoPhi(y, 0, 1))
	}
}

// pekkoTrace runs heartbeats at the given times through Pekko's rival as
// simulateRobot does, returning it.
func pekkoTrace(beats []time.Duration) *robotRun {
	cfg, threshold := PekkoConfig()
	r := &robotRun{epoch: time.Unix(0, 0), pekko: phi.New(cfg), pekkoPause: cfg.AcceptablePause, pekkoY: pekkoQuantile(threshold)}
	for _, at := range beats {
		r.pekkoHeartbeat(at, r.epoch.Add(at))
		r.prev, r.seen = at, true
	}
	return r
}

func every(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for at := from; at <= to; at += step {
		out = append(out, at)
	}
	return out
}

// Pekko's PhiAccrualFailureDetector records an interval only when it
// arrives while phi is below the threshold: a 60 s outage leaves the
// window as it was, so the next outage is caught as fast as the first; an
// interval of 3.5 s, still below the threshold with its 3 s pause, is
// recorded.
func TestPekkoSkipsIntervalsAtOrAboveThreshold(t *testing.T) {
	steady := every(0, 100*time.Second, time.Second)
	before := pekkoTrace(steady)
	after := before.pekkoSuspectAfter()
	if after < 4*time.Second || after > 6*time.Second {
		t.Fatalf("Pekko suspects %v after the last heartbeat on a steady 1 s trace, want 4–6 s (mean 1 s + pause 3 s + σ 100 ms × %.1f)", after, before.pekkoY)
	}

	outage := append(append([]time.Duration{}, steady...), every(160*time.Second, 170*time.Second, time.Second)...)
	r := pekkoTrace(outage)
	if got := r.pekko.Mean(); got > 1100*time.Millisecond {
		t.Errorf("window mean %v after a 60 s outage: the outage's interval was recorded", got)
	}
	if d := r.pekkoSuspectAfter() - after; d > 10*time.Millisecond || d < -10*time.Millisecond {
		t.Errorf("after the outage Pekko suspects after %v, before it after %v", r.pekkoSuspectAfter(), after)
	}

	pause := append(append([]time.Duration{}, steady...), 103500*time.Millisecond)
	r = pekkoTrace(pause)
	if got, was := r.pekko.Mean(), before.pekko.Mean(); got <= was {
		t.Errorf("a 3.5 s interval below the threshold was not recorded: mean %v, was %v", got, was)
	}
}
