package phi

import (
	"math"
	"testing"
	"time"
)

// Reference values, computed independently of this package:
//
//	z < 20 (exact normal tail):
//	python3 -c "import math; z=...; print(repr(-math.log10(0.5*math.erfc(z/math.sqrt(2)))))"
//	z ≥ 5 (Laplace continued fraction of the Mills ratio, not the asymptotic
//	series the package uses):
//	python3 -c "import math
//	def log10Q(z):
//	    t=z
//	    for k in range(200,0,-1): t = z + k/t
//	    return (-z*z/2 - 0.5*math.log(2*math.pi) - math.log(t))/math.log(10)
//	print(repr(-log10Q(z)))"
func TestPhiNormalTable(t *testing.T) {
	for _, tc := range []struct {
		x, mean, sd float64
		want        float64
	}{
		{0, 1.5, 0.2, 1.383809914503989e-14},   // z = -7.5
		{1.0, 1.5, 0.2, 0.0027052313961437317}, // z = -2.5
		{1.5, 1.5, 0.2, 0.3010299956639812},    // z = 0: log10(2)
		{2.0, 1.5, 0.2, 2.2069318057953007},    // z = 2.5
		{2.5, 1.5, 0.2, 6.542645672390654},     // z = 5 (both methods agree)
		{2.622, 1.5, 0.2, 7.994976979746947},   // z = 5.61: the default threshold 8
		{3.0, 1.5, 0.2, 13.496087939352586},    // z = 7.5
		{5.0, 1.5, 0.2, 68.14487723462047},     // z = 17.5
		{5.5, 1.5, 0.2, 88.56009534307559},     // z = 20: switch to the series
		{10, 1.5, 0.2, 394.2499229410719},      // z = 42.5: erfc underflows here
		{21.5, 1.5, 0.2, 2173.8715428690343},   // z = 100
		{2001.5, 1.5, 0.2, 21714728.494252525}, // z = 1e4
		{2e8 + 1.5, 1.5, 0.2, 2.171472409516259e+17},
	} {
		got := PhiNormal(tc.x, tc.mean, tc.sd)
		if rel := math.Abs(got-tc.want) / math.Max(tc.want, 1e-300); rel > 1e-9 && math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("PhiNormal(%v, %v, %v) = %v, want %v (rel err %.2g)", tc.x, tc.mean, tc.sd, got, tc.want, rel)
		}
	}
}

func TestPhiNormalFiniteAndMonotone(t *testing.T) {
	prev := -1.0
	// Fine steps across the erfc/series switch at z = 20 and far beyond.
	for z := -40.0; z < 60; z += 0.001 {
		p := PhiNormal(z, 0, 1)
		if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 {
			t.Fatalf("PhiNormal(z=%v) = %v", z, p)
		}
		if p < prev {
			t.Fatalf("not monotone at z=%v: %v < %v", z, p, prev)
		}
		prev = p
	}
	for _, x := range []float64{1e12, 1e100, 1e300, math.MaxFloat64, math.Inf(1)} {
		p := PhiNormal(x, 1, 0.2)
		if math.IsNaN(p) || math.IsInf(p, 0) || p < prev {
			t.Fatalf("PhiNormal(%v) = %v: want finite and ≥ %v", x, p, prev)
		}
		prev = p
	}
	if p := PhiNormal(math.NaN(), 1, 0.2); p != 0 {
		t.Errorf("PhiNormal(NaN) = %v, want 0", p)
	}
}

// The exact branch and the series meet at z = 20: phi must not step down
// there, not even by the series' truncation error (a few 1e-11 with five
// terms), so compare the floats on either side of the switch.
func TestPhiNormalMonotoneAtSeriesSwitch(t *testing.T) {
	z := tailSwitch - 1e-9
	prev := PhiNormal(z, 0, 1)
	for range 4000 {
		z = math.Nextafter(z, math.Inf(1))
		if z > tailSwitch+1e-9 {
			break
		}
		p := PhiNormal(z, 0, 1)
		if p < prev {
			t.Fatalf("phi steps down by %.3g at z = %.17g", prev-p, z)
		}
		prev = p
	}
	below, at := PhiNormal(math.Nextafter(tailSwitch, 0), 0, 1), PhiNormal(tailSwitch, 0, 1)
	if at < below {
		t.Fatalf("phi(20) = %.17g < phi(20⁻) = %.17g", at, below)
	}
	// And the series is accurate where it is used: against erfc at z = 25,
	// still representable (erfc underflows only near z = 38).
	exact := -math.Log10(0.5 * math.Erfc(25/math.Sqrt2))
	if got := PhiNormal(25, 0, 1); math.Abs(got-exact) > 1e-12*exact {
		t.Errorf("phi(z=25) = %.17g, exact %.17g", got, exact)
	}
}

// A standard deviation that is not positive is a point mass at the mean:
// phi is 0 before it and certain failure from it on, never a silence
// that lowers phi.
func TestPhiNormalDegenerateStdDev(t *testing.T) {
	for _, sd := range []float64{0, -0.2, -1, math.NaN()} {
		prev := -1.0
		for _, x := range []float64{-5, 0, 0.5, 0.999, 1, 1.5, 10, 1e9} {
			p := PhiNormal(x, 1, sd)
			if math.IsNaN(p) || p < prev {
				t.Fatalf("sd %v: PhiNormal(%v) = %v after %v: want non-decreasing, never NaN", sd, x, p, prev)
			}
			prev = p
		}
		if p := PhiNormal(0.5, 1, sd); p != 0 {
			t.Errorf("sd %v: phi below the mean = %v, want 0", sd, p)
		}
		if p := PhiNormal(10, 1, sd); p != math.MaxFloat64 {
			t.Errorf("sd %v: phi past the mean = %v, want MaxFloat64", sd, p)
		}
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDetectorStatistics(t *testing.T) {
	d := New(Config{Window: 4, FirstInterval: time.Second, MinStdDev: time.Millisecond, AcceptablePause: DefaultAcceptablePause})
	// Prior: 750 ms and 1250 ms.
	if got := d.Mean(); got != time.Second {
		t.Errorf("prior mean = %v, want 1s", got)
	}
	if got := d.StdDev(); got != 250*time.Millisecond {
		t.Errorf("prior stddev = %v, want 250ms", got)
	}
	now := t0
	d.Heartbeat(now) // first: no interval
	for _, iv := range []time.Duration{900, 1100, 1000, 1000, 1000, 1000} {
		now = now.Add(iv * time.Millisecond)
		d.Heartbeat(now)
	}
	// Window of 4 holds 1000 ×4: the prior and the 900/1100 rolled out.
	if got := d.Mean(); got != time.Second {
		t.Errorf("mean = %v, want 1s", got)
	}
	if got := d.StdDev(); got != time.Millisecond {
		t.Errorf("stddev = %v, want the 1ms floor", got)
	}
	now = now.Add(1100 * time.Millisecond)
	d.Heartbeat(now) // window: 1000 1000 1000 1100 → mean 1025, sd = sqrt(1875) ms
	if got, want := d.Mean(), 1025*time.Millisecond; got != want {
		t.Errorf("mean = %v, want %v", got, want)
	}
	if got, want := d.StdDev().Seconds(), math.Sqrt(1875)/1000; math.Abs(got-want) > 1e-9 {
		t.Errorf("stddev = %v s, want %v s", got, want)
	}
	// Outage intervals (> MaxInterval = 4 s) and clock steps back are not recorded.
	now = now.Add(time.Minute)
	d.Heartbeat(now)
	d.Heartbeat(now.Add(-time.Second))
	if got, want := d.Mean(), 1025*time.Millisecond; got != want {
		t.Errorf("mean after outage = %v, want %v", got, want)
	}
	if !d.LastHeartbeat().Equal(now) {
		t.Errorf("last heartbeat = %v, want %v", d.LastHeartbeat(), now)
	}
}

func lease4() Config {
	c := DefaultConfig()
	c.FirstInterval = FirstIntervalForLease(4)
	return c
}

func TestDetectorPhiDefaults(t *testing.T) {
	d := New(lease4())
	if p := d.Phi(t0); p != 0 {
		t.Errorf("phi before first heartbeat = %v, want 0", p)
	}
	now := t0
	for i := 0; i < 200; i++ {
		d.Heartbeat(now)
		now = now.Add(time.Second)
	}
	last := now.Add(-time.Second)
	// Regular 1 s heartbeats: mean 1 s, sd floored at 200 ms, pause 500 ms.
	// phi(2.5 s) = z 5 → 6.5426…, phi(2.622 s) ≈ 7.995, phi(3 s) = z 7.5.
	for _, tc := range []struct {
		after time.Duration
		want  float64
	}{
		{time.Second, 0.0027052313961437317},
		{2500 * time.Millisecond, 6.542645672390654},
		{3 * time.Second, 13.496087939352586},
	} {
		if got := d.Phi(last.Add(tc.after)); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("phi %v after the last heartbeat = %v, want %v", tc.after, got, tc.want)
		}
	}
}

func TestDetectorPrior(t *testing.T) {
	// A new node with a 4 s lease (1 s renewals): its first silence of
	// 1.2 s is unremarkable, 5 s of silence is damning.
	d := New(lease4())
	d.Heartbeat(t0)
	if p := d.Phi(t0.Add(1200 * time.Millisecond)); p > 1 {
		t.Errorf("phi 1.2 s after the first heartbeat = %v, want < 1", p)
	}
	if p := d.Phi(t0.Add(5 * time.Second)); p < 8 {
		t.Errorf("phi 5 s after the first heartbeat = %v, want ≥ 8", p)
	}
	// The kubelet's default 40 s lease renews every 10 s: 12 s is fine.
	c := DefaultConfig()
	c.FirstInterval = FirstIntervalForLease(40)
	d = New(c)
	d.Heartbeat(t0)
	if p := d.Phi(t0.Add(12 * time.Second)); p > 1 {
		t.Errorf("phi 12 s after the first heartbeat of a 40 s lease = %v, want < 1", p)
	}
	if got := FirstIntervalForLease(0); got != DefaultFirstInterval {
		t.Errorf("FirstIntervalForLease(0) = %v", got)
	}
}

// A zero acceptable pause is a pause of zero, not the default's 500 ms.
func TestZeroAcceptablePause(t *testing.T) {
	c := lease4()
	c.AcceptablePause = 0
	if err := c.Validate(); err != nil {
		t.Fatalf("zero pause rejected: %v", err)
	}
	d := New(c)
	now := t0
	for range 200 {
		d.Heartbeat(now)
		now = now.Add(time.Second)
	}
	last := now.Add(-time.Second)
	// mean 1 s, σ floored at 200 ms, no pause: 2 s of silence is z = 5.
	want := PhiNormal(2, 1, 0.2)
	if got := d.Phi(last.Add(2 * time.Second)); math.Abs(got-want) > 1e-9 {
		t.Errorf("phi 2 s after the last heartbeat with no pause = %v, want %v", got, want)
	}
	if after := d.SuspectAfter(ZForPhi(8)); after > 2300*time.Millisecond {
		t.Errorf("SuspectAfter(phi 8) = %v with no pause, want ≈ 2.12 s", after)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	with := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	for _, c := range []Config{
		{}, with(func(c *Config) { c.Window = 1 }), with(func(c *Config) { c.Window = MaxWindow + 1 }),
		with(func(c *Config) { c.MinStdDev = 0 }), with(func(c *Config) { c.MinStdDev = -1 }),
		with(func(c *Config) { c.AcceptablePause = -1 }), with(func(c *Config) { c.FirstInterval = 0 }),
		with(func(c *Config) { c.FirstInterval = time.Second; c.MaxInterval = time.Millisecond }),
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
		d := New(c) // must not panic, falls back to defaults
		d.Heartbeat(t0)
		d.Heartbeat(t0.Add(time.Second))
		if p := d.Phi(t0.Add(2 * time.Second)); math.IsNaN(p) || math.IsInf(p, 0) {
			t.Errorf("phi with bad config %+v = %v", c, p)
		}
	}
}

func BenchmarkHeartbeat(b *testing.B) {
	d := New(second())
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		d.Heartbeat(now)
	}
}

func BenchmarkPhi(b *testing.B) {
	d := New(second())
	now := t0
	for i := 0; i < 100; i++ {
		now = now.Add(time.Second)
		d.Heartbeat(now)
	}
	q := now.Add(1500 * time.Millisecond)
	b.ReportAllocs()
	var sink float64
	for b.Loop() {
		sink += d.Phi(q)
	}
	_ = sink
}

func TestZForPhiInvertsPhi(t *testing.T) {
	// Reference: z = 5.612001244174789 for phi 8 (python3: 200-step
	// bisection of -log10(0.5*math.erfc(z/math.sqrt(2))) == 8 on [0, 10]).
	if z := ZForPhi(8); math.Abs(z-5.612001244174789) > 1e-9 {
		t.Errorf("ZForPhi(8) = %.15g", z)
	}
	for _, p := range []float64{0.5, 1, 3, 8, 12, 50, 400, 1e4} {
		z := ZForPhi(p)
		if got := PhiNormal(z, 0, 1); math.Abs(got-p) > 1e-9*p {
			t.Errorf("PhiNormal(ZForPhi(%v)) = %v", p, got)
		}
	}
	d := New(second())
	now := t0
	for range 100 {
		d.Heartbeat(now)
		now = now.Add(time.Second)
	}
	last := d.LastHeartbeat()
	after := d.SuspectAfter(ZForPhi(8))
	if p := d.Phi(last.Add(after - time.Millisecond)); p >= 8 {
		t.Errorf("phi just before SuspectAfter = %v", p)
	}
	if p := d.Phi(last.Add(after + time.Millisecond)); p < 8 {
		t.Errorf("phi just after SuspectAfter = %v", p)
	}
}

func second() Config {
	c := DefaultConfig()
	c.FirstInterval = time.Second
	return c
}
