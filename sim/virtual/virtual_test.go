package virtual

import (
	"reflect"
	"testing"
	"time"

	"github.com/roam-dev/roam/sim/network"
)

func small() Config {
	c := DefaultConfig()
	c.Robots = 200
	c.Duration = 6 * time.Hour
	return c
}

func TestSameSeedSameFigures(t *testing.T) {
	a, err := Run(small())
	if err != nil {
		t.Fatal(err)
	}
	cfg := small()
	cfg.Workers = 3 // a different split of robots over workers
	b, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Elapsed, b.Elapsed = 0, 0
	a.Config.Workers, b.Config.Workers = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different figures:\n%+v\n%+v", a.Roam, b.Roam)
	}
	cfg = small()
	cfg.Seed = 2
	c, _ := Run(cfg)
	if c.Heartbeats == a.Heartbeats {
		t.Fatal("a different seed gave the same trace")
	}
}

// On a perfect link where robots only die, every detector catches every
// death, none suspects a live robot, and each takes its known time.
func TestPerfectLinkDeathsOnly(t *testing.T) {
	cfg := small()
	cfg.Network = network.Model{
		RenewInterval:  time.Second,
		RequestTimeout: 4 * time.Second,
		Links:          []network.Link{{Name: "wire", Share: 1, Jitter: network.Normal}},
		DeathsPerDay:   8,
		RepairTime:     10 * time.Minute,
	}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.LongOutages < 100 {
		t.Fatalf("only %d deaths simulated", res.LongOutages)
	}
	for _, s := range []Score{res.Roam, res.Stock, res.Pekko} {
		if s.FalseSuspicions != 0 {
			t.Errorf("%s: %d false suspicions on a perfect link", s.Name, s.FalseSuspicions)
		}
		if s.Missed != 0 {
			t.Errorf("%s: missed %d deaths", s.Name, s.Missed)
		}
	}
	// roam: mean 1.02 s + pause 0.5 s + ~5.6 σ (σ floored at 0.2 s) ≈ 2.6 s.
	if p99 := res.Roam.Percentile(99); p99 < 2*time.Second || p99 > 3500*time.Millisecond {
		t.Errorf("roam detection p99 = %v, want about 2.6 s", p99)
	}
	if p50 := res.Stock.Percentile(50); p50 < 50*time.Second || p50 > 55*time.Second {
		t.Errorf("stock detection p50 = %v, want 50–55 s", p50)
	}
	if res.RivalTimeout > 1100*time.Millisecond {
		// With no false suspicions to match, the rival only has to exceed the
		// longest connected silence (≤ 1.04 s).
		t.Errorf("rival timeout %v, want just above the 1.04 s renew period", res.RivalTimeout)
	}
}

// A lossy, jittery fleet makes a lower threshold trade false suspicions for
// speed: the sweep must be monotone both ways.
func TestSweepTradesSpeedForFalseSuspicions(t *testing.T) {
	res, err := Run(small())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(res.Sweep); i++ {
		lo, hi := res.Sweep[i-1], res.Sweep[i]
		if hi.FalseSuspicions > lo.FalseSuspicions {
			t.Errorf("%s has more false suspicions (%d) than %s (%d)", hi.Name, hi.FalseSuspicions, lo.Name, lo.FalseSuspicions)
		}
		if hi.Percentile(99) < lo.Percentile(99) {
			t.Errorf("%s detects faster (p99 %v) than %s (%v)", hi.Name, hi.Percentile(99), lo.Name, lo.Percentile(99))
		}
	}
	if res.Sweep[0].FalseSuspicions == 0 {
		t.Error("phi 1 never suspected a live robot on a lossy fleet: the sweep measures nothing")
	}
	if res.Rival.FalseSuspicions > res.Roam.FalseSuspicions {
		t.Errorf("rival has %d false suspicions, roam %d: the rival must be at most as noisy", res.Rival.FalseSuspicions, res.Roam.FalseSuspicions)
	}
}

func TestInvalidConfigIsRejected(t *testing.T) {
	cfg := small()
	cfg.Robots = 0
	if _, err := Run(cfg); err == nil {
		t.Fatal("0 robots accepted")
	}
}
