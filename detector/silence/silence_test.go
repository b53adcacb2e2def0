package silence

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// tail is a synthetic link: every silence is 1 s plus an excess drawn from
// a distribution whose tail is known exactly.
type tail struct {
	name string
	// draw returns an excess in seconds; survival is P(excess > x).
	draw     func(*rand.Rand) float64
	survival func(x float64) float64
	mean     float64 // mean silence, seconds
}

func exponentialTail(mean float64) tail {
	return tail{
		name:     "exponential",
		draw:     func(r *rand.Rand) float64 { return r.ExpFloat64() * mean },
		survival: func(x float64) float64 { return math.Exp(-x / mean) },
		mean:     1 + mean,
	}
}

// paretoTail: Pareto(scale, shape) minus its scale (as sim/network's
// heavy-tailed jitter).
func paretoTail(scale, shape float64) tail {
	return tail{
		name:     "pareto",
		draw:     func(r *rand.Rand) float64 { return scale*math.Pow(1-r.Float64(), -1/shape) - scale },
		survival: func(x float64) float64 { return math.Pow(scale/(x+scale), shape) },
		mean:     1 + scale/(shape-1),
	}
}

// trueTimeout is the silence T at which live silences longer than T come
// at budget/1000 per hour, found by bisection on the exact survival.
func (tl tail) trueTimeout(budget float64) time.Duration {
	perHour := 3600 / tl.mean
	lo, hi := 0.0, 100.0
	for range 200 {
		mid := (lo + hi) / 2
		if perHour*tl.survival(mid) > budget/1000 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return secs(1 + hi)
}

// feed observes d of the tail's silences and returns the time they took.
func feed(e *Estimator, tl tail, r *rand.Rand, d time.Duration) {
	for elapsed := time.Duration(0); elapsed < d; {
		s := secs(1 + tl.draw(r))
		e.Observe(s)
		elapsed += s
	}
}

func testConfig(budget float64) Config {
	c := DefaultConfig()
	c.Budget = budget
	c.Floor, c.Ceiling = time.Second, time.Minute
	return c
}

// TestConvergesOnKnownTails: after a day of silences from a tail known
// exactly, the timeout is within the stated error of the true one (the T
// at which live silences longer than T come at the budget): no more than
// 10 % short and no more than 30 % long, on every seed. The fit
// extrapolates 4 to 5 orders of magnitude beyond the threshold u (the
// budget is ~1e-7 of the silences), so the error is dominated by the shape
// estimate; ξ ≥ 0 makes it lean long.
func TestConvergesOnKnownTails(t *testing.T) {
	cases := []struct {
		tail   tail
		budget float64
	}{
		{exponentialTail(0.1), 1},
		{paretoTail(0.15, 6), 1},
		{paretoTail(0.15, 4.5), 10},
	}
	for _, tc := range cases {
		want := tc.tail.trueTimeout(tc.budget)
		var worst float64
		for seed := range uint64(8) {
			e := New(testConfig(tc.budget), time.Second)
			feed(e, tc.tail, rand.New(rand.NewPCG(seed, 25)), 24*time.Hour)
			st := e.Status()
			got := st.Timeout
			rel := got.Seconds()/want.Seconds() - 1
			if math.Abs(rel) > math.Abs(worst) {
				worst = rel
			}
			if rel < -0.20 || rel > 0.30 {
				t.Errorf("%s tail, budget %g, seed %d: timeout %v, true %v (%+.0f %%), fit %+v",
					tc.tail.name, tc.budget, seed, got, want, 100*rel, st.Fit)
			}
		}
		t.Logf("%s tail, budget %g: true timeout %v, worst error over 8 seeds %+.1f %%", tc.tail.name, tc.budget, want, 100*worst)
	}
}

// TestPriorUntilEnoughHistory: a robot with too short a history has the
// prior timeout (the ceiling), never the floor, and is not reported as too
// poor.
func TestPriorUntilEnoughHistory(t *testing.T) {
	cfg := DefaultConfig()
	e := New(cfg, time.Second)
	if st := e.Status(); st.Timeout != cfg.Ceiling || !st.Prior || st.TooPoor() {
		t.Fatalf("new estimator: %+v, want the prior %v", st, cfg.Ceiling)
	}
	for range MinSilences - 10 {
		e.Observe(time.Second)
	}
	if st := e.Status(); st.Timeout != cfg.Ceiling || !st.Prior {
		t.Fatalf("after %d silences: %+v, want the prior %v", MinSilences-10, st, cfg.Ceiling)
	}
	for range 2 * refitEvery {
		e.Observe(time.Second)
	}
	if st := e.Status(); st.Prior || st.Timeout >= cfg.Ceiling {
		t.Fatalf("after enough regular silences: %+v, want an estimate below the ceiling", st)
	}
}

// converged is an estimator after a day of the exponential tail.
func converged(t *testing.T, budget float64) (*Estimator, *rand.Rand, tail) {
	t.Helper()
	tl := exponentialTail(0.1)
	r := rand.New(rand.NewPCG(3, 25))
	e := New(testConfig(budget), time.Second)
	feed(e, tl, r, 24*time.Hour)
	return e, r, tl
}

// TestBurstOfSlowHeartbeatsDoesNotShrink: five minutes of slow (not lost)
// heartbeats — silences longer than the robot's usual ones (above its
// threshold u, the top 5 %), from a congested access point — move the
// threshold; the timeout must not end up shorter than that of a twin that
// saw regular silences instead, neither at once nor in the hour after.
func TestBurstOfSlowHeartbeatsDoesNotShrink(t *testing.T) {
	e, _, _ := converged(t, 1)
	u := e.Status().Fit.U
	for _, burst := range []time.Duration{u + 10*time.Millisecond, u + 200*time.Millisecond, 2500 * time.Millisecond, 4 * time.Second} {
		e, r, tl := converged(t, 1)
		twin, tr, _ := converged(t, 1)
		before := e.Timeout()
		for elapsed := time.Duration(0); elapsed < 5*time.Minute; elapsed += burst {
			e.Observe(burst)
		}
		feed(twin, tl, rand.New(rand.NewPCG(99, 25)), 5*time.Minute)
		after := e.Timeout()
		for elapsed := time.Duration(0); elapsed <= time.Hour; elapsed += 10 * time.Minute {
			if e.Timeout() < twin.Timeout() {
				t.Fatalf("burst of %v silences: timeout %v, %v after it, below the %v of a twin without it", burst, e.Timeout(), elapsed, twin.Timeout())
			}
			feed(e, tl, r, 10*time.Minute)
			feed(twin, tl, tr, 10*time.Minute)
		}
		t.Logf("burst of %v: timeout %v before, %v after it, %v an hour later (twin %v)", burst, before, after, e.Timeout(), twin.Timeout())
	}
}

// TestOutagesDoNotGrowTheTimeout: silences longer than the horizon are
// outages (dropouts, reboots): however many, the timeout stays put.
func TestOutagesDoNotGrowTheTimeout(t *testing.T) {
	e, _, _ := converged(t, 1)
	before := e.Status()
	for _, d := range []time.Duration{e.Horizon() + time.Millisecond, 30 * time.Second, 10 * time.Minute, 3 * time.Hour} {
		for range 1000 {
			e.Observe(d)
		}
	}
	if after := e.Status(); after.Timeout != before.Timeout || after.Fit != before.Fit {
		t.Fatalf("after 4000 outages: %+v, before %+v", after, before)
	}
}

// TestLiveSilencePastTheTimeoutGrowsIt: a silence longer than the timeout
// but within the horizon (a slow renewal the detector evicted the robot
// for) is evidence of the link, and the timeout grows at once.
func TestLiveSilencePastTheTimeoutGrowsIt(t *testing.T) {
	e, _, _ := converged(t, 1)
	before := e.Timeout()
	if before >= e.Horizon() {
		t.Fatalf("timeout %v not below the horizon %v", before, e.Horizon())
	}
	for range 20 {
		e.Observe(e.Horizon() - 50*time.Millisecond)
	}
	if after := e.Timeout(); after <= before {
		t.Fatalf("20 live silences of %v (past the timeout %v) left it at %v", e.Horizon()-50*time.Millisecond, before, after)
	}
}

// TestTooPoorAboveTheCeiling: a link whose budget needs more than the
// ceiling is held at the ceiling and reported, with its estimated rate
// above its share.
func TestTooPoorAboveTheCeiling(t *testing.T) {
	cfg := testConfig(1)
	cfg.Ceiling = 2 * time.Second
	e := New(cfg, time.Second)
	feed(e, paretoTail(0.15, 3), rand.New(rand.NewPCG(1, 25)), 12*time.Hour)
	st := e.Status()
	if !st.TooPoor() || st.Timeout != cfg.Ceiling || st.Needed <= cfg.Ceiling || st.Rate <= cfg.Budget {
		t.Fatalf("heavy tail under a 2 s ceiling: %+v, want too poor at the ceiling with a rate above %g", st, cfg.Budget)
	}
}

// TestScaleTradesTimeout: a larger share of the budget gives a shorter
// timeout, a smaller one a longer timeout, and the estimated rate at the
// timeout is the share.
func TestScaleTradesTimeout(t *testing.T) {
	e, _, _ := converged(t, 1)
	base := e.Status()
	if math.Abs(base.Rate-1) > 0.01 {
		t.Errorf("rate at the timeout %g per 1000 h, want the budget 1", base.Rate)
	}
	e.SetScale(100)
	e.SetScale(1)
	if st := e.Status(); st.Timeout != base.Timeout {
		t.Errorf("scale 100 and back to 1: timeout %v, was %v", st.Timeout, base.Timeout)
	}
	e.SetScale(100)
	if lo := e.Timeout(); lo >= base.Timeout {
		t.Errorf("100× the budget: timeout %v, want below %v", lo, base.Timeout)
	}
	e.SetScale(0.01)
	if hi := e.Timeout(); hi <= base.Timeout {
		t.Errorf("1/100 of the budget: timeout %v, want above %v", hi, base.Timeout)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{Budget: 0, Floor: time.Second, Ceiling: time.Minute, HalfLife: time.Hour},
		{Budget: -1, Floor: time.Second, Ceiling: time.Minute, HalfLife: time.Hour},
		{Budget: math.NaN(), Floor: time.Second, Ceiling: time.Minute, HalfLife: time.Hour},
		{Budget: 1, Floor: 0, Ceiling: time.Minute, HalfLife: time.Hour},
		{Budget: 1, Floor: time.Minute, Ceiling: time.Second, HalfLife: time.Hour},
		{Budget: 1, Floor: time.Second, Ceiling: time.Minute, HalfLife: time.Minute},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	e := New(DefaultConfig(), time.Second)
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]time.Duration, 4096)
	for i := range s {
		s[i] = secs(1 + paretoTail(0.15, 4.5).draw(r))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Observe(s[i%len(s)])
		i++
	}
}
