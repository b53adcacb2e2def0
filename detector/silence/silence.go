// Package silence estimates, for one robot, the shortest eviction timeout
// that keeps the robot's expected rate of false evictions within a budget:
// the rate at which the robot, while alive and connected, falls silent for
// longer than the timeout.
//
// Each Estimator keeps a long, exponentially decaying histogram of the
// robot's silences (the gaps between its heartbeats, with a half-life of
// hours), and models the tail beyond what it has seen by peaks over
// threshold: the silences above a high threshold u (the top TailFraction of
// the history) are fitted with a generalized Pareto distribution, the
// limiting law of exceedances over a high threshold (Pickands, "Statistical
// inference using extreme order statistics", Ann. Statist. 1975; Balkema
// and de Haan, Ann. Probab. 1974), by the method of moments (Hosking and
// Wallis, Technometrics 1987). With λ the rate of exceedances per hour and
// (ξ, σ) the fitted shape and scale, live silences longer than T > u come at
//
//	rate(T) = λ · (1 + ξ·(T−u)/σ)^(−1/ξ)      (λ · e^(−(T−u)/σ) for ξ = 0)
//
// and the timeout is the T at which rate(T) equals the budget — the
// configuration of a failure detector from a bound on its mistakes and the
// observed link, as Chen, Toueg and Aguilera propose ("On the quality of
// service of failure detectors", IEEE Trans. Computers 2002).
//
// The package is pure: no clock, no randomness. Time enters only as the
// lengths of the silences the caller observes, so the history decays with
// the robot's observed time, and one Observe costs O(1) without allocating
// (the fit is redone every refitEvery silences, or at once when a silence
// outlasts the current timeout).
package silence

import (
	"fmt"
	"math"
	"time"
)

// Defaults of Config, each with its reason.
const (
	// DefaultBudget: one false eviction per 1,000 robot-hours — a fleet of
	// 100 robots moves a live robot's apps about once in ten days.
	DefaultBudget = 1.0
	// DefaultFloor: no robot is evicted sooner than 2 s after its last
	// heartbeat, however clean its link: two missed 1 s renewals.
	DefaultFloor = 2 * time.Second
	// DefaultCeiling: a robot whose link needs a longer timeout than 15 s
	// is reported as too poor for fast failover, and evicted after 15 s of
	// silence (still 20× faster than stock Kubernetes' 5 min 40 s).
	DefaultCeiling = 15 * time.Second
	// DefaultHalfLife: a silence counts half as much after 6 h of the
	// robot's observed time: a day's history, which follows a robot that
	// moved to another part of the site within hours.
	DefaultHalfLife = 6 * time.Hour
	// MinHalfLife: a shorter history holds too few silences to fit a tail
	// (at 1 s renewals 10 min of half-life keep ~870 silences, ~40 of them
	// above the threshold u).
	MinHalfLife = 10 * time.Minute
	// TailFraction: the threshold u is the silence length exceeded by at
	// most this fraction of the history.
	TailFraction = 0.05
	// MinSilences: until its decayed history holds this many silences
	// (10 minutes at 1 s renewals; 30 above u), a robot's timeout is the
	// prior, Config.Ceiling.
	MinSilences = 600
	// BinsPerInterval and HorizonIntervals shape the histogram: bins of
	// 1/100 of the renewal interval (10 ms at 1 s, finer than the tails it
	// fits) up to the outage horizon: 500 float32 bins, 2 KB per robot.
	BinsPerInterval = 100
	// HorizonIntervals: a silence longer than this many renewal intervals
	// (5 s at 1 s renewals: the Lease duration, 4 intervals, plus one) is
	// an outage, not a slow heartbeat, and is not recorded (see Observe).
	HorizonIntervals = 5
	nBins            = BinsPerInterval * HorizonIntervals
	// refitEvery: the tail is refitted at least this often (silences).
	refitEvery = 256
	// renormAt bounds the decay weight before the history is rescaled
	// (float32 bins reach 3e38).
	renormAt = 1e25
	// maxXi caps the fitted shape below 1, where the mean excess, and with
	// it the probability-weighted moments, stop existing.
	maxXi = 0.9
)

// Config is the budget and bounds every robot's timeout is held to.
type Config struct {
	// Budget is the fleet's false-eviction budget in evictions per 1,000
	// robot-hours; each robot's share is Budget/1000 per hour of its own
	// (scaled by Estimator.SetScale). Positive.
	Budget float64
	// Floor and Ceiling bound every robot's timeout (0 < Floor ≤ Ceiling).
	// Ceiling is also the estimator's prior: the timeout it reports while
	// the history is too short to estimate the tail (see Prior; the
	// detector uses its fixed rule then).
	Floor, Ceiling time.Duration
	// HalfLife of the history, in the robot's observed time (at least
	// MinHalfLife).
	HalfLife time.Duration
}

// DefaultConfig is roam-detector's default.
func DefaultConfig() Config {
	return Config{Budget: DefaultBudget, Floor: DefaultFloor, Ceiling: DefaultCeiling, HalfLife: DefaultHalfLife}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case !(c.Budget > 0) || math.IsInf(c.Budget, 0):
		return fmt.Errorf("false-eviction budget %v must be a positive number (evictions per 1000 robot-hours)", c.Budget)
	case c.Floor <= 0:
		return fmt.Errorf("eviction timeout floor %v must be positive", c.Floor)
	case c.Ceiling < c.Floor:
		return fmt.Errorf("eviction timeout ceiling %v is below the floor %v", c.Ceiling, c.Floor)
	case c.HalfLife < MinHalfLife:
		return fmt.Errorf("silence history half-life %v is too short to estimate a tail: at least %v", c.HalfLife, MinHalfLife)
	}
	return nil
}

// Fit is an Estimator's current tail model.
type Fit struct {
	// U is the threshold; Lambda the rate of live silences longer than U
	// per hour; Xi and Sigma the generalized Pareto shape (≥ 0) and scale
	// (seconds) of their excess over U.
	U      time.Duration
	Lambda float64
	Xi     float64
	Sigma  float64
}

// Estimator is one robot's silence history and timeout. The zero value is
// not usable; call New. It is not safe for concurrent use.
type Estimator struct {
	cfg     Config
	bin     float64 // bin width, seconds
	bins    [nBins]float32
	count   float64 // Σ weights of the recorded silences
	expo    float64 // Σ weight·length (seconds) of the recorded silences
	weight  float64 // weight of the next silence (grows instead of decaying the past)
	decay   float64 // ln 2 / HalfLife in seconds
	rate    float64 // the robot's share of the budget, per hour
	since   int     // silences since the last fit
	fit     Fit
	fitted  bool
	timeout time.Duration
	needed  time.Duration // unbounded timeout of the last fit
}

// New returns the estimator of a robot renewing every interval (> 0), at
// scale 1 of its share of cfg's budget. cfg must be valid.
func New(cfg Config, interval time.Duration) *Estimator {
	e := &Estimator{cfg: cfg}
	e.Reset(interval)
	return e
}

// Reset forgets the history: the robot now renews every interval (> 0).
// Its timeout is the prior until it has a history again.
func (e *Estimator) Reset(interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	scale := e.Scale()
	*e = Estimator{cfg: e.cfg, bin: interval.Seconds() / BinsPerInterval, weight: 1, decay: math.Ln2 / e.cfg.HalfLife.Seconds(),
		timeout: e.cfg.Ceiling, needed: e.cfg.Ceiling}
	e.SetScale(scale)
}

// Scale is the factor on the robot's share of the budget (1 by default).
func (e *Estimator) Scale() float64 {
	if e.rate == 0 {
		return 1
	}
	return e.rate / (e.cfg.Budget / 1000)
}

// SetScale multiplies the robot's share of the budget by scale (> 0): a
// robot whose pods tolerate more false evictions gets a shorter timeout.
// The timeout is recomputed at once.
func (e *Estimator) SetScale(scale float64) {
	if !(scale > 0) || math.IsInf(scale, 0) {
		scale = 1
	}
	rate := e.cfg.Budget / 1000 * scale
	if rate == e.rate {
		return
	}
	e.rate = rate
	if e.fitted {
		e.timeout = e.bounded(e.timeoutFor(e.rate))
	}
}

// Horizon is the longest silence recorded as live; longer ones are outages.
func (e *Estimator) Horizon() time.Duration {
	return time.Duration(e.bin * nBins * float64(time.Second))
}

// Observe records a silence that ended with a heartbeat.
//
// Censoring: a silence longer than Horizon — the robot's Lease duration
// plus one renewal, which a live kubelet exceeds only when a renewal
// failed outright — is an outage: it is not recorded, so a real outage
// (a dropout, a reboot) never lengthens the robot's timeout, whether or
// not the detector acted on it. A shorter silence is a slow heartbeat and
// is recorded whatever the detector did about it: if it outlasted the
// timeout, the robot was evicted while alive, and the timeout grows at once.
func (e *Estimator) Observe(s time.Duration) {
	if s <= 0 || s > e.Horizon() {
		return
	}
	sec := s.Seconds()
	e.weight *= 1 + sec*e.decay // e^(sec·ln2/HalfLife) to 1e-9
	if e.weight > renormAt {
		e.renormalize()
	}
	e.bins[min(int(sec/e.bin), nBins-1)] += float32(e.weight)
	e.count += e.weight
	e.expo += e.weight * sec
	e.since++
	if e.since >= refitEvery || s > e.timeout && e.count >= MinSilences*e.weight {
		e.refit()
	}
}

// renormalize rescales the history so the next weight is 1.
func (e *Estimator) renormalize() {
	k := 1 / e.weight
	for i := range e.bins {
		e.bins[i] = float32(float64(e.bins[i]) * k)
	}
	e.count *= k
	e.expo *= k
	e.weight = 1
}

// Silences is the decayed number of silences in the history.
func (e *Estimator) Silences() float64 { return e.count / e.weight }

// Timeout is the robot's eviction timeout: its silence after the last
// heartbeat at which it is evicted.
func (e *Estimator) Timeout() time.Duration { return e.timeout }

// Status is an Estimator's current estimate.
type Status struct {
	Timeout time.Duration
	// Needed is the timeout the budget asks for, before Floor and Ceiling.
	Needed time.Duration
	// Rate is the estimated rate of false evictions at Timeout, per 1,000
	// hours of the robot.
	Rate float64
	// Prior: the history is still too short; Timeout is the prior.
	Prior bool
	Fit   Fit
}

// TooPoor reports whether the robot's link needs a longer timeout than the
// ceiling: its expected false evictions exceed its share even there.
func (s Status) TooPoor() bool { return !s.Prior && s.Needed > s.Timeout }

// Prior reports whether the history is still too short for an estimate
// (Timeout is then the prior, the ceiling).
func (e *Estimator) Prior() bool { return !e.fitted }

// TooPoor is Status().TooPoor() without computing the rest.
func (e *Estimator) TooPoor() bool { return e.fitted && e.needed > e.timeout }

// Status reports the current estimate.
func (e *Estimator) Status() Status {
	st := Status{Timeout: e.timeout, Needed: e.needed, Prior: !e.fitted, Fit: e.fit}
	if e.fitted {
		st.Rate = e.rateAt(e.timeout) * 1000
	}
	return st
}

// refit fits the tail to the history and updates the timeout.
func (e *Estimator) refit() {
	e.since = 0
	if e.count < MinSilences*e.weight {
		return // the prior
	}
	e.fitTail()
	e.needed = e.timeoutFor(e.rate)
	e.timeout, e.fitted = e.bounded(e.needed), true
}

func (e *Estimator) bounded(t time.Duration) time.Duration {
	return min(max(t, e.cfg.Floor), e.cfg.Ceiling)
}

// fitTail sets e.fit from the histogram: the threshold bin, the rate of
// exceedances and the generalized Pareto parameters by probability-weighted
// moments of the binned excesses (Hosking and Wallis 1987: with
// a0 = E[Y] and a1 = E[Y·S(Y)], ξ = 2 − a0/(a0 − 2·a1) and
// σ = 2·a0·a1/(a0 − 2·a1); valid for ξ < 1, and less biased than plain
// moments on heavy tails), the shape held at ξ ≥ 0 — a live link's
// silences are never modelled as bounded, which would let the
// extrapolation promise more than the history shows — and raised by one
// standard error of its estimate.
func (e *Estimator) fitTail() {
	target := TailFraction * e.count
	var above float64
	b := nBins
	for b > 1 && above+float64(e.bins[b-1]) <= target {
		above += float64(e.bins[b-1])
		b--
	}
	f := Fit{U: secs(float64(b) * e.bin)}
	if above > 0 {
		// From the top down: surv is the weight above bin i's middle.
		var a0, a1, higher float64
		for i := nBins - 1; i >= b; i-- {
			c := float64(e.bins[i])
			y := (float64(i-b) + 0.5) * e.bin
			surv := (higher + c/2) / above
			a0 += c * y
			a1 += c * y * surv
			higher += c
		}
		a0 /= above
		a1 /= above
		f.Lambda = above / e.expo * 3600
		if d := a0 - 2*a1; d > 0 {
			f.Xi = 2 - a0/d
			f.Sigma = 2 * a0 * a1 / d
		}
		if f.Xi <= 0 || f.Sigma <= 0 {
			f.Xi, f.Sigma = 0, a0
		}
		// One standard error up: the shape decides the extrapolation over
		// orders of magnitude, and a robot's false-eviction rate is convex
		// in its timeout, so an unbiased shape would overspend the budget
		// on average. Hosking and Wallis's asymptotic variance of the
		// estimate (k = −ξ), with the decayed count as the sample size
		// (exponential weights hold about twice as much information: the
		// error is overstated, not understated).
		xi := f.Xi
		v := (1 - xi) * (2 - xi) * (2 - xi) * (1 - xi + 2*xi*xi) / ((1 - 2*xi) * (3 - 2*xi))
		if xi < 0.5 && above > 0 {
			f.Xi += math.Sqrt(v * e.weight / above)
		} else {
			f.Xi = maxXi
		}
		f.Xi = min(f.Xi, maxXi)
	}
	e.fit = f
}

// timeoutFor is the silence T at which the fitted rate of longer live
// silences equals rate (per hour); U when even U is exceeded less often.
func (e *Estimator) timeoutFor(rate float64) time.Duration {
	f := e.fit
	if f.Lambda <= rate || f.Sigma <= 0 {
		return f.U
	}
	ratio := f.Lambda / rate
	excess := f.Sigma * math.Log(ratio)
	if f.Xi > 1e-9 {
		excess = f.Sigma / f.Xi * math.Expm1(f.Xi*math.Log(ratio))
	}
	return f.U + secs(min(excess, 1e6))
}

// rateAt is the estimated rate per hour of live silences longer than t:
// the fitted tail beyond U, the history itself below it.
func (e *Estimator) rateAt(t time.Duration) float64 {
	f := e.fit
	if t >= f.U {
		x := (t - f.U).Seconds()
		switch {
		case f.Sigma <= 0:
			return 0
		case f.Xi > 1e-9:
			return f.Lambda * math.Pow(1+f.Xi*x/f.Sigma, -1/f.Xi)
		default:
			return f.Lambda * math.Exp(-x/f.Sigma)
		}
	}
	var n float64
	for i := min(int(math.Ceil(t.Seconds()/e.bin)), nBins); i < nBins; i++ {
		n += float64(e.bins[i])
	}
	return n / e.expo * 3600
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
