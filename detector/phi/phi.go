// Package phi implements the phi accrual failure detector of Hayashibara,
// Défago, Yared and Katayama ("The φ Accrual Failure Detector", SRDS 2004),
// in the form popularised by Akka/Pekko's PhiAccrualFailureDetector and
// Cassandra.
//
// A Detector watches one node. It keeps a fixed-size ring of the most recent
// inter-arrival intervals of the node's heartbeats together with their
// running sum and sum of squares, so a heartbeat is an O(1) update with no
// allocation. Given the time elapsed since the last heartbeat it reports
//
//	phi = -log10( P(X > elapsed) ),  X ~ Normal(mean + AcceptablePause, max(stddev, MinStdDev)²)
//
// i.e. how surprised the detector would be if the node were still alive:
// phi = 1 means a 10 % chance that a live node would stay silent this long,
// phi = 8 means 10⁻⁸.
//
// Unlike Pekko, which approximates the normal tail with a logistic function
// (1/(1+e^(y·(1.5976+0.070566·y²)))), this package uses the exact normal tail
// 0.5·erfc(z/√2) through math.Erfc, and, where erfc would lose precision or
// underflow (z ≥ 20), the asymptotic expansion of log(erfc), so phi is finite,
// continuous and monotone in elapsed for every input — it never returns +Inf
// or NaN.
//
// The package has no clock: callers pass the time of each heartbeat and of
// each query, so it runs unchanged under a virtual clock (the fleet
// simulator) and under the wall clock (roam-detector). A Detector is not safe
// for concurrent use; guard it with the caller's lock.
package phi

import (
	"fmt"
	"math"
	"time"
)

// Defaults. They are tuned for robots whose kubelet renews its node Lease
// every second (nodeLeaseDurationSeconds: 4) over Wi-Fi, aiming at detection
// within 3 s of the last heartbeat while a live robot's jitter stays far below
// the threshold (docs/detector.md, "The phi model").
const (
	// DefaultWindow is the number of intervals remembered: 100 s of history
	// at 1 Hz — long enough for a stable estimate of the jitter, short enough
	// to follow a robot whose link changes, and 400 bytes per node.
	DefaultWindow = 100
	// DefaultMinStdDev floors the standard deviation. The kubelet's own
	// renewal jitter is only ~1-4 %, so without a floor a very regular node
	// would be suspected after a few tens of milliseconds of extra delay;
	// 200 ms is the size of one TCP retransmission timeout on Linux, the
	// most common Wi-Fi hiccup.
	DefaultMinStdDev = 200 * time.Millisecond
	// DefaultAcceptablePause is added to the mean interval: a pause this long
	// beyond the usual interval costs no suspicion at all (a Wi-Fi roam
	// between access points, a garbage-collection pause, a slow apiserver
	// write). With a 1 s interval and the floor above, phi reaches 8 about
	// 1 + 0.5 + 5.6·0.2 ≈ 2.6 s after the last heartbeat.
	DefaultAcceptablePause = 500 * time.Millisecond
	// DefaultFirstInterval is the prior interval for a node whose renewal
	// period is not known: the kubelet's default (40 s lease / 4). Callers
	// that know the Lease's leaseDurationSeconds use FirstIntervalForLease.
	DefaultFirstInterval = 10 * time.Second
	// MaxWindow bounds Window so the integer running sums cannot overflow.
	MaxWindow = 10000
	// maxIntervalMillis clamps a single recorded interval (~16.7 min) so its
	// square summed over MaxWindow entries fits in an int64.
	maxIntervalMillis = 1_000_000
)

// Config parameterises a Detector. Start from DefaultConfig: a zero
// AcceptablePause is a legal value (no pause), not a request for the
// default.
type Config struct {
	// Window is the number of recent intervals used to estimate the mean
	// and standard deviation (DefaultWindow; 2 to MaxWindow).
	Window int
	// MinStdDev floors the estimated standard deviation (DefaultMinStdDev;
	// positive).
	MinStdDev time.Duration
	// AcceptablePause is added to the mean interval
	// (DefaultAcceptablePause; zero or more).
	AcceptablePause time.Duration
	// FirstInterval seeds the window before real intervals arrive: the
	// window starts as two intervals FirstInterval ± FirstInterval/4 (as
	// Pekko does), so the first heartbeats are judged against the expected
	// renewal period with a generous spread (DefaultFirstInterval;
	// positive).
	FirstInterval time.Duration
	// MaxInterval: an interval longer than this is an outage, not jitter,
	// and is not recorded, so a robot that was away for a minute is not
	// granted minute-long silences afterwards (Cassandra does the same).
	// Zero means 4 × FirstInterval, the Lease duration itself — by the
	// kubelet's own definition the node's lease had expired. Pekko records
	// every interval that arrives while phi is below its threshold; see
	// RecordBelow.
	MaxInterval time.Duration
}

// DefaultConfig is the detector roam-detector runs with for a node whose
// renewal interval is unknown.
func DefaultConfig() Config {
	return Config{
		Window:          DefaultWindow,
		MinStdDev:       DefaultMinStdDev,
		AcceptablePause: DefaultAcceptablePause,
		FirstInterval:   DefaultFirstInterval,
	}
}

// FirstIntervalForLease is the renewal period the kubelet uses for a Lease of
// the given leaseDurationSeconds: a quarter of it (kubelet's
// nodeLeaseRenewIntervalFraction is 0.25). Non-positive durations give
// DefaultFirstInterval.
func FirstIntervalForLease(leaseDurationSeconds int32) time.Duration {
	if leaseDurationSeconds <= 0 {
		return DefaultFirstInterval
	}
	return time.Duration(leaseDurationSeconds) * time.Second / 4
}

// maxInterval is MaxInterval with its zero resolved.
func (c Config) maxInterval() time.Duration {
	if c.MaxInterval == 0 {
		return 4 * c.FirstInterval
	}
	return c.MaxInterval
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	switch {
	case c.Window < 2 || c.Window > MaxWindow:
		return fmt.Errorf("phi: Window %d out of range [2, %d]", c.Window, MaxWindow)
	case c.MinStdDev <= 0:
		return fmt.Errorf("phi: MinStdDev %v must be positive", c.MinStdDev)
	case c.AcceptablePause < 0:
		return fmt.Errorf("phi: AcceptablePause %v must not be negative", c.AcceptablePause)
	case c.FirstInterval <= 0:
		return fmt.Errorf("phi: FirstInterval %v must be positive", c.FirstInterval)
	case c.maxInterval() < c.FirstInterval:
		return fmt.Errorf("phi: MaxInterval %v is shorter than FirstInterval %v", c.MaxInterval, c.FirstInterval)
	}
	return nil
}

// Detector is the phi accrual failure detector of one node.
type Detector struct {
	// intervals is a ring of the last len(intervals) intervals in
	// milliseconds; integer sums make the running statistics exact (no
	// floating-point drift however long the node lives).
	intervals []int32
	next      int   // ring position of the next write
	n         int   // number of valid entries (≤ len(intervals))
	sum       int64 // Σ intervals (ms)
	sumSq     int64 // Σ intervals² (ms²)

	minStdDev   float64 // seconds
	pause       float64 // seconds
	maxInterval time.Duration

	last    time.Time // last heartbeat; zero before the first
	started bool
}

// New returns a Detector for cfg. Invalid fields are replaced with their
// defaults, field by field; use Config.Validate to report bad input.
func New(cfg Config) *Detector {
	d, def := cfg, DefaultConfig()
	if d.Window < 2 || d.Window > MaxWindow {
		d.Window = def.Window
	}
	if d.MinStdDev <= 0 {
		d.MinStdDev = def.MinStdDev
	}
	if d.AcceptablePause < 0 {
		d.AcceptablePause = def.AcceptablePause
	}
	if d.FirstInterval <= 0 {
		d.FirstInterval = def.FirstInterval
	}
	if d.maxInterval() < d.FirstInterval {
		d.MaxInterval = 0
	}
	det := &Detector{
		intervals:   make([]int32, d.Window),
		minStdDev:   d.MinStdDev.Seconds(),
		pause:       d.AcceptablePause.Seconds(),
		maxInterval: d.maxInterval(),
	}
	det.Reset(d.FirstInterval)
	return det
}

// Reset forgets every interval and seeds the window with the prior
// firstInterval ± firstInterval/4. The last heartbeat is kept.
func (d *Detector) Reset(firstInterval time.Duration) {
	d.next, d.n, d.sum, d.sumSq = 0, 0, 0, 0
	if firstInterval <= 0 {
		firstInterval = DefaultFirstInterval
	}
	sd := firstInterval / 4
	d.record(firstInterval - sd)
	d.record(firstInterval + sd)
}

// Heartbeat records a heartbeat observed at now. The interval since the
// previous heartbeat enters the window unless it is negative (a clock step
// backwards) or longer than MaxInterval (an outage).
func (d *Detector) Heartbeat(now time.Time) {
	if d.started {
		iv := now.Sub(d.last)
		if iv >= 0 && iv <= d.maxInterval {
			d.record(iv)
		}
		if iv < 0 {
			return // keep the later timestamp
		}
	}
	d.last = now
	d.started = true
}

// Skip moves the last heartbeat to now without recording the interval:
// Pekko's PhiAccrualFailureDetector does this for a heartbeat that arrives
// while phi is at or above its threshold, so an outage never widens the
// window. A time before the last heartbeat is ignored.
func (d *Detector) Skip(now time.Time) {
	if d.started && now.Before(d.last) {
		return
	}
	d.last = now
	d.started = true
}

func (d *Detector) record(iv time.Duration) {
	ms := iv.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > maxIntervalMillis {
		ms = maxIntervalMillis
	}
	if d.n == len(d.intervals) {
		old := int64(d.intervals[d.next])
		d.sum -= old
		d.sumSq -= old * old
	} else {
		d.n++
	}
	d.intervals[d.next] = int32(ms)
	d.sum += ms
	d.sumSq += ms * ms
	d.next++
	if d.next == len(d.intervals) {
		d.next = 0
	}
}

// LastHeartbeat is the time of the last heartbeat (zero before the first).
func (d *Detector) LastHeartbeat() time.Time { return d.last }

// Mean is the mean of the intervals in the window (without the acceptable
// pause).
func (d *Detector) Mean() time.Duration {
	return time.Duration(float64(d.sum) / float64(d.n) * float64(time.Millisecond))
}

// StdDev is the standard deviation of the window, floored at MinStdDev.
func (d *Detector) StdDev() time.Duration {
	return time.Duration(d.stdDev() * float64(time.Second))
}

// stdDev in seconds, floored.
func (d *Detector) stdDev() float64 {
	n := float64(d.n)
	mean := float64(d.sum) / n
	v := float64(d.sumSq)/n - mean*mean // ms²
	sd := 0.0
	if v > 0 {
		sd = math.Sqrt(v) / 1000
	}
	if sd < d.minStdDev {
		sd = d.minStdDev
	}
	return sd
}

// Phi is the suspicion level at now: 0 before the first heartbeat, and for
// any elapsed time up to the mean interval it is small; it grows without
// bound (but stays finite) as the silence lengthens.
func (d *Detector) Phi(now time.Time) float64 {
	if !d.started {
		return 0
	}
	elapsed := now.Sub(d.last).Seconds()
	mean := float64(d.sum)/float64(d.n)/1000 + d.pause
	return PhiNormal(elapsed, mean, d.stdDev())
}

// PhiNormal is -log10(P(X > x)) for X ~ Normal(mean, sd²). It is exact
// (math.Erfc) for z = (x-mean)/sd < 20 and uses the asymptotic expansion
// of the log of the normal tail beyond, so the result is finite and
// non-decreasing in x for every finite input. A standard deviation that is
// not positive (or NaN) is taken as a point mass at mean: phi is 0 below it
// and math.MaxFloat64 (certain failure) at or above it.
func PhiNormal(x, mean, sd float64) float64 {
	if !(sd > 0) {
		if x < mean {
			return 0
		}
		return math.MaxFloat64
	}
	z := (x - mean) / sd
	if math.IsNaN(z) {
		return 0
	}
	return -log10Tail(z)
}

const (
	ln10    = math.Ln10
	sqrt2   = math.Sqrt2
	lnSqrPi = 0.5723649429247001 // ln(√π)
	// tailSwitch is the standard score from which the asymptotic series
	// replaces math.Erfc.
	tailSwitch = 20
)

// log10Tail is log10(P(Z > z)) for a standard normal Z. The two branches
// meet exactly at tailSwitch: the series is shifted by its (rounding-level)
// difference from the exact value there, so the function is continuous
// and, each branch being monotone, non-increasing everywhere.
func log10Tail(z float64) float64 {
	if z < tailSwitch {
		return log10TailErfc(z)
	}
	if math.IsInf(z, 1) {
		return -math.MaxFloat64
	}
	v := log10TailSeries(z) + tailJoin
	if math.IsInf(v, -1) {
		return -math.MaxFloat64
	}
	return v
}

// tailJoin is log10TailErfc(tailSwitch) − log10TailSeries(tailSwitch): a
// constant of the order of float64 rounding that makes the branches meet.
var tailJoin = log10TailErfc(tailSwitch) - log10TailSeries(tailSwitch)

func log10TailErfc(z float64) float64 { return math.Log10(0.5 * math.Erfc(z/sqrt2)) }

// log10TailSeries is the asymptotic expansion of log10(P(Z > z)):
//
//	erfc(x) = e^(-x²)/(x√π) · Σ_{n≥0} (-1)^n (2n-1)!! / (2x²)^n,  x = z/√2
//
// summed through n = 8. For z ≥ 20 (x ≥ 14.1, 2x² ≥ 400) the first omitted
// term is 17!!/400⁹ ≈ 1.3e-16 relative, below float64 resolution (the
// series through n = 4 would leave 9!!/400⁵ ≈ 9.2e-11).
func log10TailSeries(z float64) float64 {
	x := z / sqrt2
	x2 := x * x
	inv := 1 / (2 * x2)
	series := 1.0
	for n := 15.0; n >= 1; n -= 2 { // Horner form of 1 - inv(1 - 3inv(1 - 5inv(…(1 - 15inv))))
		series = 1 - n*inv*series
	}
	lnQ := -math.Ln2 - x2 - math.Log(x) - lnSqrPi + math.Log(series)
	return lnQ / ln10
}

// ZForPhi is the standard score z at which PhiNormal reaches phi (the
// inverse of -log10 of the normal tail), found by bisection to float64
// precision; callers cache it per threshold. phi ≤ 0 gives -Inf-like
// -40 (always reached).
func ZForPhi(phi float64) float64 {
	lo, hi := -40.0, 1.0
	if !(phi > 0) {
		return lo
	}
	for -log10Tail(hi) < phi {
		hi *= 2
		if hi > 1e150 {
			return hi
		}
	}
	for range 200 {
		mid := (lo + hi) / 2
		if mid == lo || mid == hi {
			break
		}
		if -log10Tail(mid) < phi {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// SuspectAfter is how long after the last heartbeat phi reaches the phi
// whose standard score is z (see ZForPhi): mean + AcceptablePause + z·σ.
// Comparing the elapsed time with it is how a caller checks "phi ≥
// threshold" for many nodes without evaluating erfc for each.
func (d *Detector) SuspectAfter(z float64) time.Duration {
	s := float64(d.sum)/float64(d.n)/1000 + d.pause + z*d.stdDev()
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second))
}
