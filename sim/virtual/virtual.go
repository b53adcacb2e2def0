// Package virtual runs the fleet simulator in virtual time: every robot's
// heartbeat trace from the network model is fed to roam's phi accrual
// detector (detector/phi) and, on the very same trace, to its rivals —
// stock Kubernetes' fixed 50 s node-monitor grace period, Pekko's default
// phi detector, and the single fixed timeout that is as careful as roam
// (same false-suspicion rate). Detectors are scored against the model's
// ground truth: a suspicion while the robot is connected is false; an
// outage is detected when suspicion comes before the robot is back.
//
// Nothing here sleeps or reads a clock: 10,000 robots × 24 h run in well
// under a minute, and the same seed always gives the same report.
package virtual

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/roam-dev/roam/detector/phi"
	"github.com/roam-dev/roam/sim/network"
)

// Config of a virtual run.
type Config struct {
	Robots   int
	Duration time.Duration
	Seed     uint64
	Network  network.Model
	// Phi is roam's detector configuration; Threshold its suspicion level.
	Phi       phi.Config
	Threshold float64
	// Tick is how often roam-detector evaluates phi (a suspicion happens at
	// the first tick at which phi ≥ threshold).
	Tick time.Duration
	// Sweep lists further thresholds to report (detection vs false
	// suspicions); the run is the same, only the threshold differs.
	Sweep []float64
	// EvictAfter lists eviction confirmations to report: roam-detector
	// evicts a lone robot's pods once it has stayed silent this long past
	// its suspicion (--eviction-confirm), so a false suspicion that ends
	// sooner costs a taint but no eviction. Multiples of Tick.
	EvictAfter []time.Duration
	// StockGrace and StockPeriod model kube-controller-manager's node
	// lifecycle controller (--node-monitor-grace-period 50 s, checked every
	// --node-monitor-period 5 s).
	StockGrace  time.Duration
	StockPeriod time.Duration
	// MinLoss: detection latency percentiles are taken over outages at
	// least this long, which every detector here can catch (stock needs
	// 55 s); shorter dropouts are reported separately.
	MinLoss time.Duration
	// Workers bounds parallelism (default GOMAXPROCS).
	Workers int
	// GoalFalsePer1000h is the false-suspicion budget the hindsight bound
	// is computed for (default 1, roam's goal).
	GoalFalsePer1000h float64
}

// PekkoConfig is Pekko's PhiAccrualFailureDetector default configuration
// (threshold 8, max-sample-size 1000, min-std-deviation 100 ms,
// acceptable-heartbeat-pause 3 s, heartbeat-interval 1 s); Pekko records
// every interval, however long.
func PekkoConfig() (phi.Config, float64) {
	return phi.Config{
		Window:          1000,
		MinStdDev:       100 * time.Millisecond,
		AcceptablePause: 3 * time.Second,
		FirstInterval:   time.Second,
		MaxInterval:     24 * time.Hour,
	}, 8
}

// leasePhi is roam-detector's phi configuration for a node whose Lease
// lasts leaseSeconds.
func leasePhi(leaseSeconds int32) phi.Config {
	c := phi.DefaultConfig()
	c.FirstInterval = phi.FirstIntervalForLease(leaseSeconds)
	return c
}

// DefaultConfig is the run `roam-sim --mode virtual` does by default.
func DefaultConfig() Config {
	return Config{
		Robots:      10000,
		Duration:    24 * time.Hour,
		Seed:        1,
		Network:     network.DefaultModel(),
		Phi:         leasePhi(4),
		Threshold:   8,
		Tick:        200 * time.Millisecond,
		Sweep:       []float64{1, 2, 3, 4, 5, 6, 8, 10, 12, 16},
		EvictAfter:  []time.Duration{0, 400 * time.Millisecond, 600 * time.Millisecond, 800 * time.Millisecond, time.Second},
		StockGrace:  50 * time.Second,
		StockPeriod: 5 * time.Second,
		MinLoss:     60 * time.Second,

		GoalFalsePer1000h: 1,
	}
}

// Validate reports the first nonsensical field.
func (c Config) Validate() error {
	switch {
	case c.Robots <= 0:
		return fmt.Errorf("robots must be > 0, got %d", c.Robots)
	case c.Duration <= 0:
		return fmt.Errorf("duration must be > 0, got %s", c.Duration)
	case c.Threshold <= 0:
		return fmt.Errorf("phi threshold must be > 0, got %g", c.Threshold)
	case c.Tick <= 0 || c.StockPeriod <= 0 || c.StockGrace <= 0:
		return fmt.Errorf("tick, stock grace and stock period must be > 0")
	case c.GoalFalsePer1000h < 0:
		return fmt.Errorf("false-suspicion goal must be ≥ 0, got %g", c.GoalFalsePer1000h)
	}
	for _, t := range c.Sweep {
		if t <= 0 {
			return fmt.Errorf("sweep threshold must be > 0, got %g", t)
		}
	}
	for _, d := range c.EvictAfter {
		if d < 0 {
			return fmt.Errorf("eviction confirmation must be ≥ 0, got %s", d)
		}
	}
	if err := c.Phi.Validate(); err != nil {
		return err
	}
	return c.Network.Validate()
}

// Score is one detector's result on the whole fleet.
type Score struct {
	Name string
	// Detections are latencies (last heartbeat → suspicion) of outages at
	// least MinLoss long; Missed counts such outages never suspected.
	Detections []time.Duration
	Missed     int
	// ShortDetected of ShortOutages: outages shorter than MinLoss that were
	// suspected before the robot came back.
	ShortDetected int
	// FalseSuspicions started while the robot was connected.
	FalseSuspicions int
}

// Percentile of the detection latencies (0 when there are none).
func (s *Score) Percentile(p float64) time.Duration {
	if len(s.Detections) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(s.Detections)))) - 1
	return s.Detections[max(0, min(i, len(s.Detections)-1))]
}

// FalsePer1000h is false suspicions per 1,000 robot-hours.
func (s *Score) FalsePer1000h(robotHours float64) float64 {
	return float64(s.FalseSuspicions) / robotHours * 1000
}

// Result of a run.
type Result struct {
	Config       Config
	RobotHours   float64
	Heartbeats   int64
	LongOutages  int
	ShortOutages int
	Roam         Score
	Stock        Score
	Pekko        Score
	// Rival is the fixed timeout RivalTimeout: the shortest silence that,
	// checked continuously, suspects no more live robots than roam does.
	Rival        Score
	RivalTimeout time.Duration
	// Sweep holds roam's detector at each Config.Sweep threshold.
	Sweep []Score
	// Evictions holds roam's evictions (at Config.Threshold) after each
	// Config.EvictAfter confirmation: detection is suspicion → eviction,
	// false suspicions are false evictions.
	Evictions []Score
	// Classes breaks roam's score down by link class, in Network.Links order.
	Classes []ClassResult
	// Bound is the best any detector that sees only heartbeat arrivals
	// could reach on this trace within the false-suspicion budget, and
	// RoamBound the same at roam's own false-suspicion count.
	Bound, RoamBound Bound
	// Elapsed is the wall time the run took (not part of determinism).
	Elapsed time.Duration
}

// ClassResult is one link class's share of the run.
type ClassResult struct {
	Link   string
	Robots int
	// Roam is roam's detector (at Config.Threshold) on this class's robots.
	Roam Score
	// LongOutages of this class's robots (detections + missed).
	LongOutages int
	// gaps are the class's connected silences by length (gapBin bins).
	gaps []int64
}

// FalseLongerThan counts the class's connected silences longer than d:
// the false suspicions a fixed timeout d, checked continuously, would raise.
func (c *ClassResult) FalseLongerThan(d time.Duration) int64 {
	// Bin k holds silences in [k·gapBin, (k+1)·gapBin): count the bins
	// wholly at or above d, as the rival timeout does.
	var n int64
	for b := min(int((d+gapBin-1)/gapBin), maxGapBins); b < len(c.gaps); b++ {
		n += c.gaps[b]
	}
	return n
}

// LongestLive is the upper edge of the class's longest connected silence
// (0 when there is none).
func (c *ClassResult) LongestLive() time.Duration {
	for b := len(c.gaps) - 1; b >= 0; b-- {
		if c.gaps[b] > 0 {
			return time.Duration(b+1) * gapBin
		}
	}
	return 0
}

// Bound is the hindsight bound: per link class the fixed timeout, checked
// continuously, that together reach the lowest detection p99 with at most
// Budget false suspicions on this very trace. Within a class every robot's
// delays, losses and blackouts are drawn independently from the same
// distributions, so a heartbeat's arrival says nothing about how long the
// next silence will last; a detector that only sees arrivals can then do no
// better, in expectation, than one silence threshold per class — roam's phi
// and every fixed timeout included. Classes may be given up (never
// suspected short of their longest live silence) while their outages fit in
// the 1 % the p99 ignores.
type Bound struct {
	Budget          int // false suspicions allowed: GoalFalsePer1000h × robot-hours / 1000
	Feasible        bool
	P99             time.Duration
	Timeouts        []time.Duration // per class (a class given up: above its longest live silence)
	FalseSuspicions int64
}

// gapBin is the resolution of the histogram of connected silences used to
// find the rival fixed timeout.
const gapBin = 10 * time.Millisecond

// maxGapBins covers silences up to 10 minutes; longer ones share the last bin.
const maxGapBins = int(10 * time.Minute / gapBin)

// Run simulates the fleet.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("virtual sim config: %w", err)
	}
	start := time.Now()
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	thresholds := append([]float64{cfg.Threshold}, cfg.Sweep...)
	parts := make([]*tally, workers)
	var wg sync.WaitGroup
	for w := range workers {
		parts[w] = newTally(len(thresholds), len(cfg.EvictAfter), cfg.Network.Links)
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			for i := w; i < cfg.Robots; i += workers {
				simulateRobot(&cfg, thresholds, i, t)
			}
		}(parts[w])
	}
	wg.Wait()

	total := newTally(len(thresholds), len(cfg.EvictAfter), cfg.Network.Links)
	for _, p := range parts {
		total.merge(p)
	}
	res := &Result{
		Config:       cfg,
		RobotHours:   float64(cfg.Robots) * cfg.Duration.Hours(),
		Heartbeats:   total.heartbeats,
		LongOutages:  total.longOutages,
		ShortOutages: total.shortOutages,
		Stock:        total.stock.finish("stock Kubernetes (fixed 50 s grace, 5 s period)"),
		Pekko:        total.pekko.finish("Pekko defaults (phi 8, pause 3 s, min σ 100 ms)"),
	}
	res.Roam = total.phi[0].finish(fmt.Sprintf("roam (phi %g)", cfg.Threshold))
	for i, th := range cfg.Sweep {
		res.Sweep = append(res.Sweep, total.phi[i+1].finish(fmt.Sprintf("phi %g", th)))
	}
	for i, d := range cfg.EvictAfter {
		res.Evictions = append(res.Evictions, total.evict[i].finish(fmt.Sprintf("phi %g, evict %s after suspicion", cfg.Threshold, d)))
	}
	res.RivalTimeout, res.Rival = total.rival(res.Roam.FalseSuspicions)
	for i := range total.classes {
		c := total.classes[i]
		c.Roam = c.Roam.finish(fmt.Sprintf("roam (phi %g) on %s links", cfg.Threshold, c.Link))
		res.Classes = append(res.Classes, c)
	}
	res.Bound = hindsightBound(res.Classes, int(cfg.GoalFalsePer1000h*res.RobotHours/1000))
	res.RoamBound = hindsightBound(res.Classes, res.Roam.FalseSuspicions)
	res.Elapsed = time.Since(start)
	return res, nil
}

// tally accumulates scores; one per worker, merged at the end.
type tally struct {
	heartbeats   int64
	longOutages  int
	shortOutages int
	phi          []Score
	evict        []Score
	pekko, stock Score
	// connected silences by length, and long outages' silences so far
	// (last heartbeat → end of outage), for the rival timeout.
	gaps                  []int64
	outageGaps, shortGaps []time.Duration
	classes               []ClassResult
}

func newTally(n, evictions int, links []network.Link) *tally {
	t := &tally{phi: make([]Score, n), evict: make([]Score, evictions), gaps: make([]int64, maxGapBins+1), classes: make([]ClassResult, len(links))}
	for i := range t.classes {
		t.classes[i] = ClassResult{Link: links[i].Name, gaps: make([]int64, maxGapBins+1)}
	}
	return t
}

func (t *tally) merge(o *tally) {
	t.heartbeats += o.heartbeats
	t.longOutages += o.longOutages
	t.shortOutages += o.shortOutages
	for i := range t.phi {
		t.phi[i].add(&o.phi[i])
	}
	t.pekko.add(&o.pekko)
	for i := range t.evict {
		t.evict[i].add(&o.evict[i])
	}
	t.stock.add(&o.stock)
	for i, n := range o.gaps {
		t.gaps[i] += n
	}
	t.outageGaps = append(t.outageGaps, o.outageGaps...)
	t.shortGaps = append(t.shortGaps, o.shortGaps...)
	for i := range t.classes {
		c, oc := &t.classes[i], &o.classes[i]
		c.Robots += oc.Robots
		c.LongOutages += oc.LongOutages
		c.Roam.add(&oc.Roam)
		for b, n := range oc.gaps {
			c.gaps[b] += n
		}
	}
}

func (s *Score) add(o *Score) {
	s.Detections = append(s.Detections, o.Detections...)
	s.Missed += o.Missed
	s.ShortDetected += o.ShortDetected
	s.FalseSuspicions += o.FalseSuspicions
}

func (s Score) finish(name string) Score {
	s.Name = name
	slices.Sort(s.Detections)
	return s
}

// rival finds the shortest fixed timeout (on a gapBin grid) whose false
// suspicions on the connected silences do not exceed maxFalse, and scores
// it: checked continuously, it detects every long outage exactly T after
// the last heartbeat.
func (t *tally) rival(maxFalse int) (time.Duration, Score) {
	var above int64 // connected silences longer than bin i's upper edge
	bin := len(t.gaps) - 1
	for ; bin > 0; bin-- {
		if above+t.gaps[bin] > int64(maxFalse) {
			break
		}
		above += t.gaps[bin]
	}
	timeout := time.Duration(bin+1) * gapBin
	s := Score{FalseSuspicions: int(above)}
	for _, g := range t.outageGaps {
		if g > timeout {
			s.Detections = append(s.Detections, timeout)
		} else {
			s.Missed++
		}
	}
	for _, g := range t.shortGaps {
		if g > timeout {
			s.ShortDetected++
		}
	}
	return timeout, s.finish(fmt.Sprintf("fixed %s timeout (same false-suspicion rate as roam)", timeout))
}

// simulateRobot feeds robot i's trace to every detector and scores it.
func simulateRobot(cfg *Config, thresholds []float64, i int, t *tally) {
	robot := cfg.Network.NewRobot(cfg.Seed, i, cfg.Duration)
	class := &t.classes[slices.IndexFunc(cfg.Network.Links, func(l network.Link) bool { return l.Name == robot.Link.Name })]
	class.Robots++
	// This robot's share of roam's score is what it appends to the tally.
	detections, falses, longs := len(t.phi[0].Detections), t.phi[0].FalseSuspicions, t.longOutages
	missed, short := t.phi[0].Missed, t.phi[0].ShortDetected
	defer func() {
		class.Roam.Detections = append(class.Roam.Detections, t.phi[0].Detections[detections:]...)
		class.Roam.FalseSuspicions += t.phi[0].FalseSuspicions - falses
		class.Roam.Missed += t.phi[0].Missed - missed
		class.Roam.ShortDetected += t.phi[0].ShortDetected - short
		class.LongOutages += t.longOutages - longs
	}()
	pekkoCfg, pekkoThreshold := PekkoConfig()
	r := robotRun{
		cfg: cfg, thresholds: thresholds, t: t, class: class, outages: robot.Outages(),
		epoch: time.Unix(0, 0), roam: phi.New(cfg.Phi), pekko: phi.New(pekkoCfg), pekkoThreshold: pekkoThreshold,
		scores: make([]*Score, 0, len(thresholds)+2),
	}
	for k := range thresholds {
		r.scores = append(r.scores, &t.phi[k])
	}
	r.scores = append(r.scores, &t.pekko, &t.stock)
	for k := range t.evict {
		r.scores = append(r.scores, &t.evict[k])
	}
	r.roamPause, r.roamZ = cfg.Phi.AcceptablePause, quantile(slices.Min(thresholds))
	r.pekkoPause, r.pekkoZ = pekkoCfg.AcceptablePause, quantile(pekkoThreshold)
	r.open = make([]verdict, len(r.scores))
	have := false
	for {
		at, ok := robot.Next()
		if !ok {
			break
		}
		t.heartbeats++
		if have {
			r.silence(at)
		}
		r.roam.Heartbeat(r.epoch.Add(at))
		r.pekko.Heartbeat(r.epoch.Add(at))
		if !have {
			r.first, r.seen = at, true
		}
		r.prev, have = at, true
	}
	if have {
		// The run ends in a silence: judge it up to the horizon.
		r.silence(cfg.Duration)
	}
	r.closeOutagesBefore(cfg.Duration + 1)
}

// robotRun is one robot's detectors and position in its trace.
type robotRun struct {
	cfg            *Config
	thresholds     []float64
	t              *tally
	class          *ClassResult // the robot's link class in t
	outages        []network.Outage
	next           int // first outage not yet scored
	epoch          time.Time
	roam, pekko    *phi.Detector
	pekkoThreshold float64
	prev           time.Duration // last heartbeat
	first          time.Duration // first heartbeat (valid when seen)
	seen           bool
	// Acceptable pauses and the normal quantiles of the lowest thresholds,
	// for below.
	roamPause, pekkoPause time.Duration
	roamZ, pekkoZ         float64
	// scores: roam at each threshold, then Pekko, then stock; open holds
	// each one's verdict on outages[next] so far, and longest the longest
	// silence overlapping it, so every outage is scored exactly once.
	scores  []*Score
	open    []verdict
	longest time.Duration
}

type verdict struct {
	detected bool
	latency  time.Duration
}

// silence judges every detector on the silence from the last heartbeat to at.
func (r *robotRun) silence(at time.Duration) {
	cfg, prev := r.cfg, r.prev
	r.closeOutagesBefore(prev)
	var out *network.Outage
	if r.next < len(r.outages) && r.outages[r.next].Start < at {
		out = &r.outages[r.next]
		r.longest = max(r.longest, at-prev)
	} else {
		bin := min(int((at-prev)/gapBin), maxGapBins)
		r.t.gaps[bin]++
		r.class.gaps[bin]++
	}
	// roam at every threshold: phi is monotone in the silence, so one
	// evaluation at its end says which thresholds were crossed — and most
	// silences are too short to reach even the lowest one, which the
	// normal model's quantile tells without evaluating the tail.
	end := 0.0
	if !r.below(r.roam, r.roamPause, r.roamZ, at) {
		end = r.roam.Phi(r.epoch.Add(at))
	}
	var suspected time.Duration // when roam (k = 0) suspected, if didSuspect
	didSuspect := false
	for k, th := range r.thresholds {
		var when time.Duration
		crossed := end >= th
		if crossed {
			when, crossed = suspectAt(r.roam, r.epoch, prev, at, th, cfg.Tick)
		}
		r.judge(k, out, crossed, when)
		if k == 0 && crossed {
			suspected, didSuspect = when, true
		}
	}
	// Evictions: the silence must last the confirmation past the suspicion.
	for j, d := range cfg.EvictAfter {
		evictAt := ceilTo(suspected+d, cfg.Tick)
		r.judge(len(r.thresholds)+2+j, out, didSuspect && evictAt < at, evictAt)
	}
	var when time.Duration
	crossed := !r.below(r.pekko, r.pekkoPause, r.pekkoZ, at) && r.pekko.Phi(r.epoch.Add(at)) >= r.pekkoThreshold
	if crossed {
		when, crossed = suspectAt(r.pekko, r.epoch, prev, at, r.pekkoThreshold, cfg.Tick)
	}
	r.judge(len(r.thresholds), out, crossed, when)
	// stock: the first node-monitor period after the grace expires.
	when = ceilTo(prev+cfg.StockGrace, cfg.StockPeriod)
	r.judge(len(r.thresholds)+1, out, when < at, when)
}

// quantile is the standard normal z at which phi reaches threshold:
// P(Z > z) = 10^-threshold.
func quantile(threshold float64) float64 {
	return math.Sqrt2 * math.Erfcinv(2*math.Pow(10, -threshold))
}

// below reports, without evaluating phi, that d's phi at time at is surely
// below the threshold whose quantile is z: the silence is shorter than
// mean + pause + z·σ of the normal model (less a millisecond for rounding).
func (r *robotRun) below(d *phi.Detector, pause time.Duration, z float64, at time.Duration) bool {
	floor := d.Mean() + pause + time.Duration(z*float64(d.StdDev())) - time.Millisecond
	return at-r.prev < floor
}

// judge records detector k's suspicion (or not) at time when during the
// silence after r.prev, which overlaps outage out (nil: connected).
func (r *robotRun) judge(k int, out *network.Outage, crossed bool, when time.Duration) {
	switch {
	case !crossed:
	case out == nil || when < out.Start:
		r.scores[k].FalseSuspicions++
		if out != nil && !r.open[k].detected {
			// Already suspected when the outage began.
			r.open[k] = verdict{detected: true}
		}
	case !r.open[k].detected:
		r.open[k] = verdict{detected: true, latency: when - r.prev}
	}
}

// closeOutagesBefore scores every outage that ended by t.
func (r *robotRun) closeOutagesBefore(t time.Duration) {
	for r.next < len(r.outages) && r.outages[r.next].End <= t {
		o := r.outages[r.next]
		if !r.seen || o.Start < r.first {
			// Before the robot's first heartbeat no detector knows it: not scored.
			r.next++
			r.longest = 0
			for k := range r.open {
				r.open[k] = verdict{}
			}
			continue
		}
		// An outage the run cuts short counts for as long as it was seen.
		long := min(o.End, r.cfg.Duration)-o.Start >= r.cfg.MinLoss
		if long {
			r.t.longOutages++
			r.t.outageGaps = append(r.t.outageGaps, r.longest)
		} else {
			r.t.shortOutages++
			r.t.shortGaps = append(r.t.shortGaps, r.longest)
		}
		for k, v := range r.open {
			switch {
			case long && v.detected:
				r.scores[k].Detections = append(r.scores[k].Detections, v.latency)
			case long:
				r.scores[k].Missed++
			case v.detected:
				r.scores[k].ShortDetected++
			}
			r.open[k] = verdict{}
		}
		r.longest = 0
		r.next++
	}
}

// suspectAt finds the first tick in (prev, next) at which d's phi reaches
// threshold, by bisection on the silence (phi is monotone in it).
func suspectAt(d *phi.Detector, epoch time.Time, prev, next time.Duration, threshold float64, tick time.Duration) (time.Duration, bool) {
	lo, hi := prev, next // phi(lo) < threshold ≤ phi(hi)
	for hi-lo > time.Millisecond {
		mid := lo + (hi-lo)/2
		if d.Phi(epoch.Add(mid)) >= threshold {
			hi = mid
		} else {
			lo = mid
		}
	}
	when := ceilTo(hi, tick)
	return when, when < next
}

// ceilTo rounds t up to a multiple of step.
func ceilTo(t, step time.Duration) time.Duration {
	if r := t % step; r != 0 {
		return t + step - r
	}
	return t
}

// hindsightBound computes Bound for the classes with the given budget of
// false suspicions: the lowest p99 on the gapBin grid for which some choice
// of classes to give up leaves at most budget false suspicions.
func hindsightBound(classes []ClassResult, budget int) Bound {
	b := Bound{Budget: budget, Timeouts: make([]time.Duration, len(classes))}
	total := 0
	for _, c := range classes {
		total += c.LongOutages
	}
	if total == 0 || len(classes) > 16 {
		return b
	}
	// p99 ≤ P iff at most total − ⌈0.99·total⌉ detections exceed P.
	allowance := total - int(math.Ceil(0.99*float64(total)))
	// above[i][bin]: class i's live silences in bins ≥ bin, i.e. its false
	// suspicions at a timeout of bin·gapBin (FalseLongerThan, summed once).
	above := make([][]int64, len(classes))
	for i := range classes {
		gaps := classes[i].gaps
		above[i] = make([]int64, len(gaps)+1)
		for bin := len(gaps) - 1; bin >= 0; bin-- {
			above[i][bin] = above[i][bin+1] + gaps[bin]
		}
	}
	for bin := 1; bin <= maxGapBins; bin++ {
		p := time.Duration(bin) * gapBin
		best, bestSet := int64(-1), 0
		for set := 0; set < 1<<len(classes); set++ { // set: classes given up
			late, falses := 0, int64(0)
			for i := range classes {
				if set&(1<<i) != 0 {
					late += classes[i].LongOutages
				} else {
					falses += above[i][bin]
				}
			}
			if late <= allowance && (best < 0 || falses < best) {
				best, bestSet = falses, set
			}
		}
		if best >= 0 && best <= int64(budget) {
			b.Feasible, b.P99, b.FalseSuspicions = true, p, best
			for i := range classes {
				b.Timeouts[i] = p
				if bestSet&(1<<i) != 0 {
					b.Timeouts[i] = classes[i].LongestLive()
				}
			}
			return b
		}
	}
	return b
}
