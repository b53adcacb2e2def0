package virtual

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roam-dev/roam/sim/network"
)

func small() Config {
	c := DefaultConfig()
	c.Robots = 200
	c.Duration = 6 * time.Hour
	c.DirectRobots = 20 // ten times the work of a Lease path each
	return c
}

// smallAdaptive is small with adaptive eviction timeouts on, so the fixed
// rule runs beside them on the same trace.
func smallAdaptive() Config {
	c := small()
	c.Detector.Adaptive = true
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

// perfectLink is a wired network on which robots only die (8 a day).
func perfectLink() network.Model {
	return network.Model{
		RenewInterval:  time.Second,
		RequestTimeout: 4 * time.Second,
		Links:          []network.Link{{Name: "wire", Share: 1, Jitter: network.Normal}},
		DeathsPerDay:   8,
		RepairTime:     10 * time.Minute,
	}
}

// On a perfect link where robots only die, every detector catches every
// death, none suspects a live robot, and each takes its known time.
func TestPerfectLinkDeathsOnly(t *testing.T) {
	cfg := small()
	cfg.Network = perfectLink()
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
	cfg := small()
	cfg.Sweep = []float64{1, 2, 4, 8, 12, 16}
	res, err := Run(cfg)
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

// classWithSilences is a link class whose live silences are the given lengths.
func classWithSilences(name string, longOutages int, silences ...time.Duration) ClassResult {
	c := ClassResult{Link: name, LongOutages: longOutages, gaps: make([]int64, maxGapBins+1)}
	for _, s := range silences {
		c.gaps[min(int(s/gapBin), maxGapBins)]++
	}
	return c
}

func TestHindsightBound(t *testing.T) {
	clean := classWithSilences("clean", 1000, time.Second, 1010*time.Millisecond)
	noisy := func(outages int) ClassResult {
		return classWithSilences("noisy", outages, 3*time.Second, 3*time.Second, 3500*time.Millisecond)
	}
	t.Run("a class with few outages is given up", func(t *testing.T) {
		// 1005 outages: the p99 may ignore 10 of them, noisy's 5 fit.
		b := hindsightBound([]ClassResult{clean, noisy(5)}, 0)
		if !b.Feasible || b.P99 != 1020*time.Millisecond || b.FalseSuspicions != 0 {
			t.Fatalf("bound %+v, want p99 1.02 s (just above clean's longest live silence) with 0 false", b)
		}
		if b.Timeouts[1] != 3510*time.Millisecond {
			t.Errorf("noisy given up at %v, want 3.51 s (above its longest live silence)", b.Timeouts[1])
		}
	})
	t.Run("a class with many outages sets the p99", func(t *testing.T) {
		b := hindsightBound([]ClassResult{clean, noisy(100)}, 0)
		if !b.Feasible || b.P99 != 3510*time.Millisecond {
			t.Fatalf("bound %+v, want p99 3.51 s", b)
		}
		// A budget of 1 false suspicion lets the 3.5 s silence through.
		b = hindsightBound([]ClassResult{clean, noisy(100)}, 1)
		if b.P99 != 3010*time.Millisecond || b.FalseSuspicions != 1 {
			t.Fatalf("bound %+v, want p99 3.01 s with 1 false suspicion", b)
		}
	})
}

// The per-class breakdown accounts for every robot, detection and false
// suspicion of roam's fleet-wide score, and roam can never beat the bound
// at its own false-suspicion rate.
func TestClassesAddUp(t *testing.T) {
	res, err := Run(smallAdaptive())
	if err != nil {
		t.Fatal(err)
	}
	var robots, detections, falses, longs, timeouts int
	var evictions, fixed Score
	for _, c := range res.Classes {
		robots += c.Robots
		detections += len(c.Roam.Detections)
		falses += c.Roam.FalseSuspicions
		longs += c.LongOutages
		timeouts += len(c.Timeouts)
		evictions.add(&c.Evicted)
		fixed.add(&c.FixedEvicted)
	}
	if len(evictions.Detections) != len(res.Evicted.Detections) || evictions.FalseSuspicions != res.Evicted.FalseSuspicions ||
		len(fixed.Detections) != len(res.FixedEvicted.Detections) || fixed.FalseSuspicions != res.FixedEvicted.FalseSuspicions || timeouts != robots {
		t.Errorf("class evictions add up to %d detections, %d false (fixed rule %d, %d), %d timeouts; fleet: %d, %d (%d, %d), %d robots",
			len(evictions.Detections), evictions.FalseSuspicions, len(fixed.Detections), fixed.FalseSuspicions, timeouts,
			len(res.Evicted.Detections), res.Evicted.FalseSuspicions, len(res.FixedEvicted.Detections), res.FixedEvicted.FalseSuspicions, robots)
	}
	if robots != res.Config.Robots || detections != len(res.Roam.Detections) || falses != res.Roam.FalseSuspicions || longs != res.LongOutages {
		t.Fatalf("classes add up to %d robots, %d detections, %d false, %d outages; fleet: %d, %d, %d, %d",
			robots, detections, falses, longs, res.Config.Robots, len(res.Roam.Detections), res.Roam.FalseSuspicions, res.LongOutages)
	}
	if res.Classes[2].Roam.FalseSuspicions == 0 {
		t.Error("the roaming class raised no false suspicion: the breakdown measures nothing")
	}
	b := res.RoamBound
	if !b.Feasible || b.P99 > res.Roam.Percentile(99) {
		t.Errorf("hindsight bound p99 %v at roam's %d false suspicions is worse than roam's own %v",
			b.P99, res.Roam.FalseSuspicions, res.Roam.Percentile(99))
	}
}

// Under the fixed rule a longer eviction confirmation evicts later and
// never more often falsely; without one, evictions are exactly the fixed
// rule's suspicions.
func TestEvictionConfirmationTrade(t *testing.T) {
	cfg := smallAdaptive()
	cfg.EvictAfter = []time.Duration{0, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Evictions) < 2 || res.Config.EvictAfter[0] != 0 {
		t.Fatalf("want a sweep starting at 0, got %v", res.Config.EvictAfter)
	}
	if e := res.Evictions[0]; e.FalseSuspicions != res.Fixed.FalseSuspicions || e.Percentile(99) != res.Fixed.Percentile(99) {
		t.Errorf("evicting at suspicion: %d false, p99 %v; suspicions: %d, %v", e.FalseSuspicions, e.Percentile(99),
			res.Fixed.FalseSuspicions, res.Fixed.Percentile(99))
	}
	for i := 1; i < len(res.Evictions); i++ {
		lo, hi := res.Evictions[i-1], res.Evictions[i]
		if hi.FalseSuspicions > lo.FalseSuspicions || hi.Percentile(99) < lo.Percentile(99) {
			t.Errorf("%s (%d false, p99 %v) vs %s (%d, %v): not a trade", hi.Name, hi.FalseSuspicions, hi.Percentile(99),
				lo.Name, lo.FalseSuspicions, lo.Percentile(99))
		}
	}
	// The fixed rule's evictions are the configured confirmation's (800 ms).
	if e, c := res.FixedEvicted, res.Evictions[2]; e.FalseSuspicions != c.FalseSuspicions || e.Percentile(99) != c.Percentile(99) {
		t.Errorf("fixed-rule evictions (%d false, p99 %v) differ from the 800 ms row (%d, %v)", e.FalseSuspicions, e.Percentile(99), c.FalseSuspicions, c.Percentile(99))
	}
	last := res.Evictions[len(res.Evictions)-1]
	if last.FalseSuspicions >= res.Fixed.FalseSuspicions {
		t.Errorf("a %s confirmation filtered no false suspicion (%d of %d)", res.Config.EvictAfter[len(res.Evictions)-1],
			last.FalseSuspicions, res.Fixed.FalseSuspicions)
	}
}

// p99 of 200 latencies is the 198th smallest, not the largest: the two
// slowest detections are beyond it.
func TestPercentileIsNotTheMaximum(t *testing.T) {
	var s Score
	for i := 200; i >= 1; i-- {
		s.Detections = append(s.Detections, time.Duration(i)*time.Millisecond)
	}
	s = s.finish("x")
	if got := s.Percentile(99); got != 198*time.Millisecond {
		t.Errorf("p99 of 1..200 ms = %v, want 198 ms", got)
	}
	if got := s.Percentile(50); got != 100*time.Millisecond {
		t.Errorf("p50 of 1..200 ms = %v, want 100 ms", got)
	}
}

// The report ends with the headline lines in their fixed form, false
// evictions included, and says what it does not model.
func TestReportHeadline(t *testing.T) {
	cfg := smallAdaptive()
	cfg.Robots, cfg.Duration = 20, time.Hour
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := res.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, re := range []string{
		`(?m)^detection p99: \d+\.\d\d s$`,
		`(?m)^false suspicions per 1000 robot-hours: \d+\.\d{3}$`,
		`(?m)^false evictions per 1000 robot-hours: \d+\.\d{3}$`,
		`(?m)^fixed-timeout rival detection p99: \d+\.\d\d s$`,
		`(?m)^budget: 1 false evictions per 1000 robot-hours$`,
		`(?m)^eviction p99: \d+\.\d\d s$`,
		`(?m)^hindsight bound for evictions at the budget: (\d+\.\d\d s|not reachable by per-class timeouts)$`,
		`(?m)^fixed-phi false evictions per 1000 robot-hours: \d+\.\d{3}$`,
		`(?m)^direct detection p99: \d+\.\d\d s$`,
		`(?m)^direct false evictions per 1000 robot-hours: \d+\.\d{3}$`,
		`partition brake`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report lacks %s:\n%s", re, out)
		}
	}
}

// On a perfect link where robots only die, the direct path catches every
// death within its window's deadline, suspects no live robot, and its
// robots write their Leases a tenth as often.
func TestDirectPathDeathsOnly(t *testing.T) {
	cfg := small()
	cfg.DirectRobots = 50
	cfg.Network = perfectLink()
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Direct
	if d == nil || d.Robots != 50 {
		t.Fatalf("direct result %+v, want 50 robots", d)
	}
	if len(d.Roam.Detections) < 20 || d.Roam.Missed != 0 || d.Roam.FalseSuspicions != 0 || d.Evicted.FalseSuspicions != 0 {
		t.Fatalf("direct path: %d detections, %d missed, %d false suspicions, %d false evictions",
			len(d.Roam.Detections), d.Roam.Missed, d.Roam.FalseSuspicions, d.Evicted.FalseSuspicions)
	}
	p := cfg.Detector.DirectPhi
	bound := p.FirstInterval + p.AcceptablePause + 6*p.MinStdDev + cfg.Tick
	if got := d.Roam.Percentile(100); got > bound {
		t.Errorf("slowest direct detection %v; a regular 100 ms window reaches phi 8 by %v", got, bound)
	}
	if lease := res.Roam.Percentile(50); d.Roam.Percentile(50) >= lease {
		t.Errorf("direct detection p50 %v is not below the Lease path's %v", d.Roam.Percentile(50), lease)
	}
	if ratio := res.LeaseWritesPer1000 / d.LeaseWritesPer1000; ratio < 9 || ratio > 11 {
		t.Errorf("Lease writes: %.1f/s per 1,000 robots today, %.1f/s with the agent: ratio %.1f, want ≈10",
			res.LeaseWritesPer1000, d.LeaseWritesPer1000, ratio)
	}
}
