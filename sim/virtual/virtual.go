// Package virtual runs the fleet simulator in virtual time: every robot's
// heartbeat trace from the network model is fed to roam-detector's own
// decision logic (detector.Core, the code that ships, ticked on the virtual
// clock) and, on the very same trace, to its rivals — stock Kubernetes'
// fixed 50 s node-monitor grace period, Pekko's default phi detector, and
// the single fixed timeout that is as careful as roam (same false-suspicion
// rate). Detectors are scored against the model's ground truth: a suspicion
// (or an eviction) while the robot is connected is false; an outage is
// detected when suspicion comes before the robot is back.
//
// Each robot runs in its own Core, so what acts across the fleet — the
// partition brake, the eviction delay that waits for it, the evictor's rate
// limit — is not modelled here (the network model's outages are
// independent, so it would rarely act); the report says so.
//
// Nothing here sleeps, no result depends on a clock (the clock is read
// once, for an epoch that carries a monotonic reading; see
// monotonicEpoch), and a robot's Core is ticked only at the ticks where it
// can change anything (detector.Core.NextTick): 10,000 robots × 24 h
// cost about two minutes of CPU, nearly all of it per heartbeat (the
// network model, the Core and Pekko's detector), and the same seed always
// gives the same report.
package virtual

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/phi"
	"github.com/roam-dev/roam/sim/network"
)

// Config of a virtual run.
type Config struct {
	Robots   int
	Duration time.Duration
	Seed     uint64
	Network  network.Model
	// ModelName names Network in the report ("": not named).
	ModelName string
	// Detector is roam-detector's configuration (its defaults with the
	// prior of a 4 s Lease: adaptive eviction timeouts). It gives the
	// headline figures. When it is adaptive, the same configuration with
	// the fixed rule (suspicion at Threshold, eviction after
	// EvictionConfirm: roam-detector --adaptive-eviction=false) runs on the
	// same trace for comparison.
	Detector detector.CoreConfig
	// Tick is how often roam-detector evaluates its nodes (a suspicion
	// happens at the first tick at which phi ≥ threshold).
	Tick time.Duration
	// Sweep lists further thresholds to report (detection vs false
	// suspicions); each runs its own Core on the same trace.
	Sweep []float64
	// EvictAfter lists further eviction confirmations of the fixed rule to
	// report: it evicts a lone robot's pods once it has stayed silent this
	// long past its suspicion (--eviction-confirm), so a false suspicion
	// that ends sooner costs a taint but no eviction. Each runs its own
	// Core on the same trace.
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
	// DirectRobots: the first this many robots (at most Robots) are also
	// run with direct
	// heartbeats (0: none) — the same robots, outages, blackouts and
	// delay spikes, with a datagram every DirectInterval judged by the
	// Detector's direct window. Ten datagrams a second cost ten times the
	// Lease path's work, hence fewer robots by default.
	DirectRobots   int
	DirectInterval time.Duration
	// DirectLeaseInterval is the Lease renewal period of robots with the
	// agent (the kubelet's default: 10 s, a 40 s Lease); the report counts
	// the Lease writes of both set-ups.
	DirectLeaseInterval time.Duration
	// GoalFalseEvictionsPer1000h is the false-eviction budget of the
	// direct path's hindsight bound (default 0.1).
	GoalFalseEvictionsPer1000h float64
}

// PekkoConfig is Pekko's PhiAccrualFailureDetector default configuration
// (threshold 8, max-sample-size 1000, min-std-deviation 100 ms,
// acceptable-heartbeat-pause 3 s, heartbeat-interval 1 s). Pekko records an
// interval however long it is, but only when it arrives while phi is below
// the threshold (see pekkoHeartbeat).
func PekkoConfig() (phi.Config, float64) {
	return phi.Config{
		Window:          1000,
		MinStdDev:       100 * time.Millisecond,
		AcceptablePause: 3 * time.Second,
		FirstInterval:   time.Second,
		MaxInterval:     24 * time.Hour,
	}, 8
}

// LeaseDetector is roam-detector's default configuration for robots whose
// Lease lasts leaseSeconds (they renew every quarter of it).
func LeaseDetector(leaseSeconds int32) detector.CoreConfig {
	c := detector.DefaultCoreConfig()
	c.Phi.FirstInterval = phi.FirstIntervalForLease(leaseSeconds)
	return c
}

// DefaultConfig is the run `roam-sim --mode virtual` does by default. The
// threshold sweep and the eviction table each run one more Core per entry,
// so they are short by default; --sweep and --evict-after extend them.
func DefaultConfig() Config {
	return Config{
		Robots:      10000,
		Duration:    24 * time.Hour,
		Seed:        1,
		Network:     network.DefaultModel(),
		Detector:    LeaseDetector(4),
		Tick:        200 * time.Millisecond,
		StockGrace:  50 * time.Second,
		StockPeriod: 5 * time.Second,
		MinLoss:     60 * time.Second,

		GoalFalsePer1000h: 1,

		DirectRobots:               1000,
		DirectInterval:             detector.DefaultDirectInterval,
		DirectLeaseInterval:        10 * time.Second,
		GoalFalseEvictionsPer1000h: 0.1,
	}
}

// Validate reports the first nonsensical field.
func (c Config) Validate() error {
	switch {
	case c.Robots <= 0:
		return fmt.Errorf("robots must be > 0, got %d", c.Robots)
	case c.Duration <= 0:
		return fmt.Errorf("duration must be > 0, got %s", c.Duration)
	case c.Tick <= 0 || c.StockPeriod <= 0 || c.StockGrace <= 0:
		return fmt.Errorf("tick, stock grace and stock period must be > 0")
	case c.GoalFalsePer1000h < 0 || c.GoalFalseEvictionsPer1000h < 0:
		return fmt.Errorf("false-suspicion and false-eviction goals must be ≥ 0, got %g and %g", c.GoalFalsePer1000h, c.GoalFalseEvictionsPer1000h)
	case c.DirectRobots < 0:
		return fmt.Errorf("direct robots must be ≥ 0, got %d", c.DirectRobots)
	case c.DirectRobots > 0 && (c.DirectInterval <= 0 || c.DirectLeaseInterval <= 0):
		return fmt.Errorf("direct interval and direct lease interval must be > 0, got %s and %s", c.DirectInterval, c.DirectLeaseInterval)
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
	if err := c.Detector.Validate(); err != nil {
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
	// Evicted is roam's evictions at its configuration (Detector): detection
	// is last heartbeat → eviction, false suspicions are false evictions.
	Evicted Score
	// Fixed and FixedEvicted are the fixed rule's suspicions and evictions
	// (today's phi threshold and confirmation; empty when Detector is not
	// adaptive: Roam and Evicted are then the fixed rule's).
	Fixed, FixedEvicted Score
	// Evictions holds the fixed rule's evictions after each
	// Config.EvictAfter confirmation, scored as Evicted.
	Evictions []Score
	// Classes breaks roam's score down by link class, in Network.Links order.
	Classes []ClassResult
	// Bound is the best any detector that sees only heartbeat arrivals
	// could reach on this trace within the false-suspicion budget, and
	// RoamBound the same at roam's own false-suspicion count.
	Bound, RoamBound Bound
	// EvictionBound is the same bound for evictions at the detector's
	// false-eviction budget (Detector.Silence.Budget), and RoamEvictionBound
	// at roam's own false-eviction count.
	EvictionBound, RoamEvictionBound Bound
	// Direct is the direct-heartbeat path on the first DirectRobots robots
	// (nil when off).
	Direct *DirectResult
	// LeaseWritesPer1000 is the Lease writes per second per 1,000 robots
	// renewing every RenewInterval, as delivered on this trace.
	LeaseWritesPer1000 float64
	// Elapsed is the wall time the run took (not part of determinism).
	Elapsed time.Duration
}

// DirectResult is the direct-heartbeat path: the same robots' datagrams
// judged by the Detector's direct window.
type DirectResult struct {
	Robots     int
	RobotHours float64
	// Datagrams accepted, and sent, lost (outage, blackout, loss) and
	// overtaken (dropped as reordered by the replay window).
	Datagrams, Sent, Lost, Overtaken int64
	Roam, Evicted                    Score
	Classes                          []ClassResult
	// Bound is the hindsight bound for GoalFalseEvictionsPer1000h: the
	// lowest p99 of a per-class silence threshold with at most that many
	// live silences longer — no arrival-only detector evicts faster at
	// that false-eviction rate.
	Bound Bound
	// LeaseWritesPer1000 is the Lease writes per second per 1,000 robots
	// renewing every DirectLeaseInterval (with the agent).
	LeaseWritesPer1000 float64
}

// ClassResult is one link class's share of the run.
type ClassResult struct {
	Link   string
	Robots int
	// Roam is roam's detector (at Config.Threshold) on this class's robots.
	Roam Score
	// Evicted and FixedEvicted are roam's evictions and the fixed rule's.
	Evicted, FixedEvicted Score
	// Timeouts are the robots' adaptive eviction timeouts at the end of
	// the run, sorted; TooPoor counts those whose link needed more than the
	// ceiling then, Prior those still on the prior.
	Timeouts       []time.Duration
	TooPoor, Prior int
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
	cfg.DirectRobots = min(cfg.DirectRobots, cfg.Robots)
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	thresholds := append([]float64{cfg.Detector.Threshold}, cfg.Sweep...)
	epoch := monotonicEpoch()
	parts := make([]*tally, workers)
	var wg sync.WaitGroup
	for w := range workers {
		parts[w] = newTally(len(thresholds), len(cfg.EvictAfter), cfg.Network.Links)
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			for i := w; i < cfg.Robots; i += workers {
				simulateRobot(&cfg, i, t, epoch)
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
	thr := cfg.Detector.Threshold
	res.Roam = total.phi[0].finish(fmt.Sprintf("roam (phi %g)", thr))
	res.Evicted = total.evicted.finish(fmt.Sprintf("roam (phi %g, evict %s after suspicion)", thr, cfg.Detector.EvictionConfirm))
	if cfg.Detector.Adaptive {
		budget := cfg.Detector.Silence.Budget
		res.Evicted.Name = fmt.Sprintf("roam (adaptive timeouts, budget %g per 1000 robot-hours)", budget)
		res.Fixed = total.fixed.finish(fmt.Sprintf("fixed rule (phi %g)", thr))
		res.FixedEvicted = total.fixedEvicted.finish(fmt.Sprintf("fixed rule (phi %g, evict %s after suspicion)", thr, cfg.Detector.EvictionConfirm))
	}
	for i, th := range cfg.Sweep {
		res.Sweep = append(res.Sweep, total.phi[i+1].finish(fmt.Sprintf("phi %g", th)))
	}
	for i, d := range cfg.EvictAfter {
		res.Evictions = append(res.Evictions, total.evict[i].finish(fmt.Sprintf("phi %g, evict %s after suspicion", thr, d)))
	}
	res.RivalTimeout, res.Rival = total.rival(res.Roam.FalseSuspicions)
	for i := range total.classes {
		c := total.classes[i]
		c.Roam = c.Roam.finish(fmt.Sprintf("roam (phi %g) on %s links", thr, c.Link))
		c.Evicted = c.Evicted.finish(c.Link)
		c.FixedEvicted = c.FixedEvicted.finish(c.Link)
		slices.Sort(c.Timeouts)
		res.Classes = append(res.Classes, c)
	}
	res.Bound = hindsightBound(res.Classes, int(cfg.GoalFalsePer1000h*res.RobotHours/1000))
	res.RoamBound = hindsightBound(res.Classes, res.Roam.FalseSuspicions)
	if cfg.Detector.Adaptive {
		res.EvictionBound = hindsightBound(res.Classes, int(cfg.Detector.Silence.Budget*res.RobotHours/1000))
	} else {
		res.EvictionBound = res.Bound
	}
	res.RoamEvictionBound = hindsightBound(res.Classes, res.Evicted.FalseSuspicions)
	res.LeaseWritesPer1000 = float64(total.heartbeats) / cfg.Duration.Seconds() / float64(cfg.Robots) * 1000
	if cfg.DirectRobots > 0 {
		res.Direct = total.direct.result(cfg)
	}
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
	evicted      Score
	// the fixed rule's, when roam's detector is adaptive
	fixed, fixedEvicted Score
	// connected silences by length, and long outages' silences so far
	// (last heartbeat → end of outage), for the rival timeout.
	gaps                  []int64
	outageGaps, shortGaps []time.Duration
	classes               []ClassResult
	// direct is the direct path's tally (nil in itself); leaseRenewals
	// counts the renewals of the direct robots' Leases at
	// DirectLeaseInterval.
	direct        *tally
	datagrams     network.DatagramCounts
	leaseRenewals int64
}

func newTally(n, evictions int, links []network.Link) *tally {
	t := newSubTally(n, evictions, links)
	t.direct = newSubTally(1, 0, links)
	return t
}

func newSubTally(n, evictions int, links []network.Link) *tally {
	t := &tally{phi: make([]Score, n), evict: make([]Score, evictions), gaps: make([]int64, maxGapBins+1), classes: make([]ClassResult, len(links))}
	for i := range t.classes {
		t.classes[i] = ClassResult{Link: links[i].Name, gaps: make([]int64, maxGapBins+1)}
	}
	return t
}

// result finishes the direct path's tally t.
func (t *tally) result(cfg Config) *DirectResult {
	thr := cfg.Detector.Threshold
	d := &DirectResult{Robots: cfg.DirectRobots, RobotHours: float64(cfg.DirectRobots) * cfg.Duration.Hours(),
		Datagrams: t.heartbeats, Sent: t.datagrams.Sent, Lost: t.datagrams.Lost, Overtaken: t.datagrams.Overtaken,
		Roam:    t.phi[0].finish(fmt.Sprintf("roam direct (phi %g)", thr)),
		Evicted: t.evicted.finish(fmt.Sprintf("roam direct (phi %g, evict %s after suspicion)", thr, cfg.Detector.EvictionConfirm)),
	}
	for i := range t.classes {
		c := t.classes[i]
		c.Roam = c.Roam.finish(fmt.Sprintf("roam direct on %s links", c.Link))
		c.Evicted = c.Evicted.finish(c.Link)
		c.FixedEvicted = c.FixedEvicted.finish(c.Link)
		slices.Sort(c.Timeouts)
		d.Classes = append(d.Classes, c)
	}
	d.Bound = hindsightBound(d.Classes, int(cfg.GoalFalseEvictionsPer1000h*d.RobotHours/1000))
	d.LeaseWritesPer1000 = float64(t.leaseRenewals) / cfg.Duration.Seconds() / float64(cfg.DirectRobots) * 1000
	return d
}

func (t *tally) merge(o *tally) {
	if t.direct != nil {
		t.direct.merge(o.direct)
	}
	t.datagrams.Add(o.datagrams)
	t.leaseRenewals += o.leaseRenewals
	t.heartbeats += o.heartbeats
	t.longOutages += o.longOutages
	t.shortOutages += o.shortOutages
	for i := range t.phi {
		t.phi[i].add(&o.phi[i])
	}
	t.pekko.add(&o.pekko)
	t.evicted.add(&o.evicted)
	t.fixed.add(&o.fixed)
	t.fixedEvicted.add(&o.fixedEvicted)
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
		c.Evicted.add(&oc.Evicted)
		c.FixedEvicted.add(&oc.FixedEvicted)
		c.Timeouts = append(c.Timeouts, oc.Timeouts...)
		c.TooPoor += oc.TooPoor
		c.Prior += oc.Prior
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

// monotonicEpoch is the instant virtual time starts from. Only durations
// from it are ever used, so its value changes no result; it is read from
// the clock because only time.Now gives a time.Time a monotonic reading,
// and time.Time.Sub of two such times is one integer subtraction, where
// times without one cost an Add and an Equal more (its overflow check) —
// a large share of the run, since the Core and the phi detectors subtract
// times at every heartbeat.
func monotonicEpoch() time.Time { return time.Now() }

// simulateRobot feeds robot i's trace to every detector, on virtual time
// from epoch, and scores it; for the first DirectRobots robots it then does
// the same with the robot's direct heartbeats on the same ground truth.
func simulateRobot(cfg *Config, i int, t *tally, epoch time.Time) {
	robot := cfg.Network.NewRobot(cfg.Seed, i, cfg.Duration)
	class := slices.IndexFunc(cfg.Network.Links, func(l network.Link) bool { return l.Name == robot.Link.Name })
	scoreTrace(cfg, t, class, robot.Outages(), epoch, detector.SourceLease, cfg.Detector.Phi.FirstInterval, robot.Next)
	if i >= cfg.DirectRobots {
		return
	}
	dg := robot.Datagrams(cfg.Seed, i, cfg.DirectInterval)
	scoreTrace(cfg, t.direct, class, robot.Outages(), epoch, detector.SourceDirect, 0, dg.Next)
	t.direct.datagrams.Add(dg.Counts())
	// The same robot's Lease, renewed at the kubelet's default with the agent.
	m := cfg.Network
	m.RenewInterval, m.RequestTimeout = cfg.DirectLeaseInterval, min(cfg.DirectLeaseInterval, 10*time.Second)
	lease := m.NewRobot(cfg.Seed, i, cfg.Duration)
	for _, ok := lease.Next(); ok; _, ok = lease.Next() {
		t.direct.leaseRenewals++
	}
}

// scoreTrace feeds one heartbeat trace (next) of a robot of link class
// class to every detector of t and scores it against outages.
func scoreTrace(cfg *Config, t *tally, classIndex int, outages []network.Outage, epoch time.Time, source detector.HeartbeatSource,
	interval time.Duration, next func() (time.Duration, bool)) {
	class := &t.classes[classIndex]
	class.Robots++
	// This robot's share of each score is what it appends to the tally.
	longs := t.longOutages
	shares := []share{{fleet: &t.phi[0], class: &class.Roam}, {fleet: &t.evicted, class: &class.Evicted}, {fleet: &t.fixedEvicted, class: &class.FixedEvicted}}
	for i := range shares {
		shares[i].mark()
	}
	defer func() {
		for i := range shares {
			shares[i].settle()
		}
		class.LongOutages += t.longOutages - longs
	}()
	pekkoCfg, pekkoThreshold := PekkoConfig()
	r := robotRun{
		cfg: cfg, t: t, class: class, outages: outages, epoch: epoch, source: source, interval: interval,
		pekko: phi.New(pekkoCfg), pekkoPause: pekkoCfg.AcceptablePause, pekkoY: pekkoQuantile(pekkoThreshold),
	}
	// Scores: roam at each threshold, Pekko, stock, roam's evictions, then
	// each further confirmation's.
	for k := range t.phi {
		r.scores = append(r.scores, &t.phi[k])
	}
	r.pekkoScore = len(r.scores)
	r.scores = append(r.scores, &t.pekko)
	r.stockScore = len(r.scores)
	r.scores = append(r.scores, &t.stock, &t.evicted)
	evictAfter := len(r.scores)
	for k := range t.evict {
		r.scores = append(r.scores, &t.evict[k])
	}
	fixed := len(r.scores)
	r.scores = append(r.scores, &t.fixed, &t.fixedEvicted)
	r.open = make([]verdict, len(r.scores))
	// roam's Cores: the configured one (suspicions and evictions), one per
	// further threshold (suspicions), one per further confirmation
	// (evictions).
	r.addCore(cfg.Detector, 0, r.stockScore+1)
	for k, th := range cfg.Sweep[:len(t.phi)-1] { // the direct path's tally has none
		c := cfg.Detector
		c.Threshold = th
		r.addCore(c, 1+k, -1)
	}
	if cfg.Detector.Adaptive {
		c := cfg.Detector
		c.Adaptive = false
		r.addCore(c, fixed, fixed+1)
	}
	for k, d := range cfg.EvictAfter[:len(t.evict)] {
		c := cfg.Detector
		c.Adaptive, c.EvictionConfirm = false, d
		r.addCore(c, -1, evictAfter+k)
	}
	have := false
	for {
		at, ok := next()
		if !ok {
			break
		}
		t.heartbeats++
		if have {
			r.silence(at)
		}
		r.heartbeat(at)
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
	if cfg.Detector.Adaptive {
		st := r.cores[0].core.Status(robotNode, r.epoch.Add(cfg.Duration)).Link
		class.Timeouts = append(class.Timeouts, st.EvictionTimeout)
		if st.TooPoor {
			class.TooPoor++
		}
		if st.Prior {
			class.Prior++
		}
	}
}

// share is one robot's part of a fleet score, copied to its class's.
type share struct {
	fleet, class                         *Score
	detections, falses, missed, detected int
}

// mark notes where the robot's part of the fleet score starts.
func (s *share) mark() {
	s.detections, s.falses, s.missed, s.detected = len(s.fleet.Detections), s.fleet.FalseSuspicions, s.fleet.Missed, s.fleet.ShortDetected
}

// settle adds the robot's part of the fleet score to its class's.
func (s *share) settle() {
	s.class.Detections = append(s.class.Detections, s.fleet.Detections[s.detections:]...)
	s.class.FalseSuspicions += s.fleet.FalseSuspicions - s.falses
	s.class.Missed += s.fleet.Missed - s.missed
	s.class.ShortDetected += s.fleet.ShortDetected - s.detected
}

// robotNode is the node name of a robot in its Cores.
const robotNode = "robot"

// coreRun is one detector.Core watching the robot, and which scores its
// suspicions and evictions go to (-1: none).
type coreRun struct {
	coreDriver
	suspect, evictees int
}

// coreDriver drives a detector.Core on the virtual clock: heartbeats as
// they come, and the ticks (multiples of tick from epoch) at which the
// Core can change anything. A heartbeat at a tick's instant comes before
// that tick.
type coreDriver struct {
	source   detector.HeartbeatSource
	core     *detector.Core
	epoch    time.Time
	tick     time.Duration
	lastTick time.Duration // last tick done; -1 before the first
	// next is the Core's NextTick as of its last change (a heartbeat or a
	// tick), when known: asked once per change, not once per question.
	next  time.Time
	known bool
}

func newCoreDriver(cfg detector.CoreConfig, source detector.HeartbeatSource, epoch time.Time, tick time.Duration) (coreDriver, error) {
	c, err := detector.NewCore(cfg, epoch, nil)
	return coreDriver{source: source, core: c, epoch: epoch, tick: tick, lastTick: -1}, err
}

// heartbeat delivers node's heartbeat at at (after every tick before at,
// before every tick from at on: call until(at) first).
func (d *coreDriver) heartbeat(node string, interval, at time.Duration) {
	d.heartbeatAt(node, interval, at, d.epoch.Add(at))
}

// heartbeatAt is heartbeat with at's time (epoch + at) already computed.
func (d *coreDriver) heartbeatAt(node string, interval, at time.Duration, now time.Time) {
	d.next, d.known = d.core.HeartbeatThenNextTick(node, d.source, interval, now), true
	d.lastTick = max(d.lastTick, at-1) // the ticks before it are past
}

// until runs every tick before until at which the Core can change
// anything, appending its intents to out.
func (d *coreDriver) until(until time.Duration, out []detector.Intent) []detector.Intent {
	for {
		if !d.known {
			d.next, d.known = d.core.NextTick(), true
		}
		if d.next.IsZero() {
			return out
		}
		next := d.next.Sub(d.epoch)
		if next >= until {
			return out // the usual case: the next heartbeat comes first
		}
		t := ceilTo(max(d.lastTick+1, next, 0), d.tick)
		if t >= until {
			return out
		}
		out = d.core.Tick(d.epoch.Add(t), out)
		d.lastTick, d.known = t, false
	}
}

// robotRun is one robot's detectors and position in its trace.
type robotRun struct {
	cfg     *Config
	t       *tally
	class   *ClassResult // the robot's link class in t
	outages []network.Outage
	// source and interval of the heartbeats fed to the Cores.
	source   detector.HeartbeatSource
	interval time.Duration
	next     int // first outage not yet scored
	epoch    time.Time
	cores    []coreRun
	intents  []detector.Intent
	pekko    *phi.Detector
	prev     time.Duration // last heartbeat
	first    time.Duration // first heartbeat (valid when seen)
	seen     bool
	// Pekko's acceptable pause and the standard score of its threshold
	// under its logistic approximation.
	pekkoPause time.Duration
	pekkoY     float64
	// scores: see simulateRobot; open holds each one's verdict on
	// outages[next] so far, and longest the longest silence overlapping
	// it, so every outage is scored exactly once.
	scores                 []*Score
	pekkoScore, stockScore int
	open                   []verdict
	longest                time.Duration
}

type verdict struct {
	detected bool
	latency  time.Duration
}

// addCore starts a Core with cfg for the robot (warm-up counts from the
// start of the run) whose suspicions go to score suspect and evictions to
// score evictees.
func (r *robotRun) addCore(cfg detector.CoreConfig, suspect, evictees int) {
	d, err := newCoreDriver(cfg, r.source, r.epoch, r.cfg.Tick)
	if err != nil {
		panic(fmt.Sprintf("validated detector config rejected: %v", err)) // Config.Validate checked it
	}
	r.cores = append(r.cores, coreRun{coreDriver: d, suspect: suspect, evictees: evictees})
}

// heartbeat delivers a heartbeat at at to every detector.
func (r *robotRun) heartbeat(at time.Duration) {
	now := r.epoch.Add(at)
	for i := range r.cores {
		r.cores[i].heartbeatAt(robotNode, r.interval, at, now)
	}
	r.pekkoHeartbeat(at, now)
}

// pekkoHeartbeat is Pekko's rule: the interval enters the window only if
// it arrives while phi is below the threshold.
func (r *robotRun) pekkoHeartbeat(at time.Duration, now time.Time) {
	if r.seen && r.pekkoReached(at-r.prev) {
		r.pekko.Skip(now)
	} else {
		r.pekko.Heartbeat(now)
	}
}

// pekkoSuspectAfter is the silence after which Pekko's phi reaches its
// threshold, as of the last heartbeat: its mean interval + its acceptable
// pause + a non-negative multiple of its standard deviation, so never
// less than the pause.
func (r *robotRun) pekkoSuspectAfter() time.Duration {
	return r.pekko.Mean() + r.pekkoPause + time.Duration(r.pekkoY*float64(r.pekko.StdDev()))
}

// pekkoReached reports whether Pekko's phi reached its threshold within a
// silence of gap after the last heartbeat. Nearly every silence is shorter
// than the acceptable pause, which answers without computing the window's
// statistics.
func (r *robotRun) pekkoReached(gap time.Duration) bool {
	return gap >= r.pekkoPause && gap >= r.pekkoSuspectAfter()
}

// PekkoPhi is Pekko's phi for a silence of elapsed under its logistic
// approximation of the normal tail (PhiAccrualFailureDetector.phi).
func PekkoPhi(elapsed, mean, sd float64) float64 {
	y := (elapsed - mean) / sd
	e := math.Exp(-y * (1.5976 + 0.070566*y*y))
	if elapsed > mean {
		return -math.Log10(e / (1 + e))
	}
	return -math.Log10(1 - 1/(1+e))
}

// pekkoQuantile is the standard score at which PekkoPhi reaches threshold
// (it is monotone in the score), by bisection.
func pekkoQuantile(threshold float64) float64 {
	lo, hi := 0.0, 100.0
	for range 200 {
		mid := (lo + hi) / 2
		if PekkoPhi(mid, 0, 1) >= threshold {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
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
	// roam: its Cores' ticks up to the next heartbeat. When an outage
	// begins in this silence, a robot still suspected (or evicted) from
	// before is caught at once.
	for i := range r.cores {
		c := &r.cores[i]
		if out != nil && out.Start > prev {
			r.intents = c.until(out.Start, r.intents[:0])
			r.judgeIntents(c, out)
			phase := c.core.Status(robotNode, r.epoch.Add(out.Start)).Phase
			if c.suspect >= 0 && phase >= detector.PhaseSuspected && !r.open[c.suspect].detected {
				r.open[c.suspect] = verdict{detected: true}
			}
			if c.evictees >= 0 && phase == detector.PhaseEvicted && !r.open[c.evictees].detected {
				r.open[c.evictees] = verdict{detected: true}
			}
		}
		r.intents = c.until(at, r.intents[:0])
		r.judgeIntents(c, out)
	}
	// Pekko: checked every tick, like roam.
	if at-prev > r.pekkoPause {
		if after := r.pekkoSuspectAfter(); at-prev > after {
			if when := ceilTo(prev+after, cfg.Tick); when < at {
				r.judge(r.pekkoScore, out, when)
			}
		}
	}
	// stock: the first node-monitor period after the grace expires.
	if at-prev > cfg.StockGrace {
		if when := ceilTo(prev+cfg.StockGrace, cfg.StockPeriod); when < at {
			r.judge(r.stockScore, out, when)
		}
	}
}

// judgeIntents scores c's suspicions and evictions in r.intents.
func (r *robotRun) judgeIntents(c *coreRun, out *network.Outage) {
	for _, in := range r.intents {
		when := in.At.Sub(r.epoch)
		switch {
		case in.Kind == detector.IntentSuspect && c.suspect >= 0 && !in.Braked:
			r.judge(c.suspect, out, when)
		case in.Kind == detector.IntentEvict && c.evictees >= 0:
			r.judge(c.evictees, out, when)
		}
	}
}

// judge records detector k's suspicion (or eviction) at time when during
// the silence after r.prev, which overlaps outage out (nil: connected).
func (r *robotRun) judge(k int, out *network.Outage, when time.Duration) {
	switch {
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
