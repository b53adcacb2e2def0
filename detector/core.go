// Package detector is roam-detector: it turns node Lease heartbeats into
// phi-accrual suspicion (package phi), decides which robots are lost, and
// has the pods of lost robots that a policy allows to move removed (package
// evict).
//
// Data flows one way: heartbeat source (Lease/Node informers) → Core (pure
// decision logic on the times it is given) → intents → Controller, which
// marks nodes and hands pods to the evictor (the only parts that write to
// the API). Core never touches the API; the fleet simulator (sim/virtual)
// drives the same Core on its virtual clock.
package detector

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/roam-dev/roam/detector/phi"
	"github.com/roam-dev/roam/detector/silence"
)

// Defaults of CoreConfig, each with its reason.
const (
	// DefaultAdaptive: adaptive eviction timeouts are off by default. On the
	// simulator's default network model they evict later and more often
	// than the fixed rule (docs/simulator.md: eviction p99 5.96 s against
	// 3.70 s, 2.36 false evictions per 1,000 robot-hours against 0.71); on
	// poor links they cut false evictions a hundredfold, which is when to
	// turn them on (--adaptive-eviction).
	DefaultAdaptive = false
	// DefaultThreshold is the phi at which a node is suspected. phi 8 means
	// a live node would stay silent this long with probability 10⁻⁸ under
	// the window's normal model; with 1 s renewals it is reached ≈2.6 s
	// after the last heartbeat (Pekko's default is also 8).
	DefaultThreshold = 8.0
	// DefaultRecoverHeartbeats: a suspected node recovers after this many
	// heartbeats since it was last found silent (and phi back under the
	// threshold), so one stray heartbeat through a dying link does not flap
	// the node.
	DefaultRecoverHeartbeats = 3
	// DefaultWarmup: after the detector starts, and after a node's first
	// heartbeat, nothing is suspected for this long. 10 s covers a leader
	// fail-over and a slow first list; every live robot renewing at 1 s has
	// shown ~10 heartbeats by then, so a restarted detector evicts nothing
	// alive.
	DefaultWarmup = 10 * time.Second
	// DefaultBrakeFraction: when at least this fraction of a zone's nodes,
	// or of all nodes, is suspected at once, the detector is the likelier one
	// cut off and evicts nothing.
	DefaultBrakeFraction = 0.55
	// DefaultBrakeMinNodes: the brake needs at least this many suspected
	// nodes ("more than 2"), so losing 1 of 2 robots still reschedules.
	DefaultBrakeMinNodes = 3
	// DefaultEvictionDelay: nodes cut off together cross the threshold
	// spread over one renewal interval (their last heartbeats were), so a
	// suspected node's pods wait up to this long for the brake to see them
	// all. They wait only while it matters: when, counting every node that
	// would reach its threshold within the delay, no brake could engage, the
	// node is emptied without waiting for it.
	DefaultEvictionDelay = time.Second
	// DefaultEvictionConfirm: a suspected robot's pods are evicted once it
	// has stayed silent this much longer, so a flaky link's brief silences
	// cost a taint, not the robot's apps; the virtual simulator's eviction
	// table shows the trade (false evictions against time to evict).
	DefaultEvictionConfirm = 800 * time.Millisecond
	// FlapWindow: a node suspected again within this long of its previous
	// suspicion needs twice as many heartbeats to recover as last time (up
	// to 32×), so a flapping robot settles in Suspected instead of toggling
	// its taint every few seconds.
	FlapWindow   = 10 * time.Minute
	maxFlapShift = 5
)

// CoreConfig configures a Core. Start from DefaultCoreConfig: a zero
// Warmup, EvictionDelay or EvictionConfirm is a legal value (none), not a
// request for the default.
type CoreConfig struct {
	// Phi configures each node's Lease (or Node) window; FirstInterval is
	// the prior for nodes whose renewal interval is unknown.
	Phi phi.Config
	// DirectPhi configures each node's window of direct heartbeats
	// (DefaultDirectPhi).
	DirectPhi phi.Config
	// Threshold is the default suspicion threshold (positive).
	Threshold float64
	// RecoverHeartbeats a suspected node needs to recover (at least 1).
	RecoverHeartbeats int
	// Warmup: nothing is suspected within this long of the start and of a
	// node's first heartbeat (zero or more).
	Warmup time.Duration
	// BrakeFraction in (0, 1].
	BrakeFraction float64
	// BrakeMinNodes: suspected nodes the brake needs (at least 1).
	BrakeMinNodes int
	// EvictionDelay: the longest a suspected node's eviction waits for a
	// brake that could still engage (zero or more).
	EvictionDelay time.Duration
	// EvictionConfirm: a suspected node's pods are evicted only once it has
	// stayed silent this long past its suspicion, or past the tick that
	// found it silent again after heartbeats that did not recover it (zero
	// or more; zero: at once). Only without Adaptive.
	EvictionConfirm time.Duration
	// Fence is the fencing rule (core_fence.go).
	Fence FenceConfig
	// Adaptive: each node is evicted once it has been silent for its own
	// eviction timeout, estimated from its history of silences under the
	// false-eviction budget of Silence (see adaptive.go); it is suspected
	// then at the latest. Without it a suspected node is evicted after
	// EvictionConfirm.
	Adaptive bool
	// Silence is the budget, bounds and history of the adaptive timeouts.
	Silence silence.Config
}

// DefaultCoreConfig is roam-detector's default configuration.
func DefaultCoreConfig() CoreConfig {
	return CoreConfig{
		Phi:               phi.DefaultConfig(),
		DirectPhi:         DefaultDirectPhi(),
		Threshold:         DefaultThreshold,
		RecoverHeartbeats: DefaultRecoverHeartbeats,
		Warmup:            DefaultWarmup,
		BrakeFraction:     DefaultBrakeFraction,
		BrakeMinNodes:     DefaultBrakeMinNodes,
		EvictionDelay:     DefaultEvictionDelay,
		EvictionConfirm:   DefaultEvictionConfirm,
		Fence:             DefaultFenceConfig(),
		Adaptive:          DefaultAdaptive,
		Silence:           silence.DefaultConfig(),
	}
}

// Validate reports the first invalid setting.
func (c CoreConfig) Validate() error {
	if err := c.Phi.Validate(); err != nil {
		return err
	}
	if err := c.Fence.validate(); err != nil {
		return err
	}
	if err := c.DirectPhi.Validate(); err != nil {
		return fmt.Errorf("direct heartbeats: %w", err)
	}
	switch {
	case !(c.Threshold > 0) || math.IsInf(c.Threshold, 0):
		return fmt.Errorf("phi threshold %v must be a positive number", c.Threshold)
	case c.RecoverHeartbeats < 1:
		return fmt.Errorf("recover heartbeats %d must be at least 1", c.RecoverHeartbeats)
	case c.Warmup < 0:
		return fmt.Errorf("warmup %v must not be negative", c.Warmup)
	case !(c.BrakeFraction > 0 && c.BrakeFraction <= 1):
		return fmt.Errorf("brake fraction %v must be in (0, 1]", c.BrakeFraction)
	case c.BrakeMinNodes < 1:
		return fmt.Errorf("brake min nodes %d must be at least 1", c.BrakeMinNodes)
	case c.EvictionDelay < 0:
		return fmt.Errorf("eviction delay %v must not be negative", c.EvictionDelay)
	case c.EvictionConfirm < 0:
		return fmt.Errorf("eviction confirmation %v must not be negative", c.EvictionConfirm)
	}
	if c.Adaptive {
		return c.Silence.Validate()
	}
	return nil
}

// Phase is where a node stands in the Core's state machine:
//
//	Unseen ──heartbeat──▶ WarmingUp ──warm-up over──▶ Alive ⇄ Suspected ──confirmed──▶ Evicted
//	                                                    ▲        ⇅ brake                 │
//	                                                    │       Held                     │
//	                                                    └────────── recovered ◀──────────┘
type Phase uint8

const (
	// PhaseUnseen: known (a zone or threshold was set) but never heard from.
	PhaseUnseen Phase = iota
	// PhaseWarmingUp: heard from, not judged yet.
	PhaseWarmingUp
	// PhaseAlive: phi below the threshold (or suspected and recovered).
	PhaseAlive
	// PhaseSuspected: phi reached the threshold; tainted, its pods wait for
	// the confirmation, the eviction delay and the rate limit.
	PhaseSuspected
	// PhaseHeld: suspected while the partition brake holds evictions.
	PhaseHeld
	// PhaseEvicted: suspected and its pods handed to the evictor; it stays
	// here until it recovers.
	PhaseEvicted
)

func (p Phase) String() string {
	switch p {
	case PhaseUnseen:
		return "Unseen"
	case PhaseWarmingUp:
		return "WarmingUp"
	case PhaseAlive:
		return "Alive"
	case PhaseSuspected:
		return "Suspected"
	case PhaseHeld:
		return "Held"
	case PhaseEvicted:
		return "Evicted"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// suspected reports whether p is one of the suspected phases.
func (p Phase) suspected() bool { return p >= PhaseSuspected }

// metricState is the roam_nodes{state} label of p.
func (p Phase) metricState() int {
	switch {
	case p.suspected():
		return 2
	case p == PhaseAlive:
		return 1
	}
	return 0
}

// IntentKind is what the Controller should do.
type IntentKind int

const (
	// IntentSuspect: the node was suspected (or its brake hold changed):
	// taint it and set RoamReachable False (Unknown while held).
	IntentSuspect IntentKind = iota
	// IntentRecover: the node is alive (it left warm-up alive, or
	// recovered): remove roam's taint, RoamReachable True.
	IntentRecover
	// IntentEvict: the node's governed pods are to be removed.
	IntentEvict
	// IntentBrake: the partition brake engaged or released for Scope.
	IntentBrake
	// IntentLink: the node's link became too poor for fast failover
	// (Active: its eviction timeout is held at the ceiling, above what its
	// share of the false-eviction budget needs) or no longer is.
	IntentLink
)

func (k IntentKind) String() string {
	switch k {
	case IntentSuspect:
		return "Suspect"
	case IntentRecover:
		return "Recover"
	case IntentEvict:
		return "Evict"
	case IntentBrake:
		return "Brake"
	case IntentLink:
		return "Link"
	}
	return fmt.Sprintf("IntentKind(%d)", int(k))
}

// Intent is one decision of the Core. The Controller reads the node's
// current state from Status when it acts, so intents only say what
// changed and when.
type Intent struct {
	Kind IntentKind
	// At is the tick that decided it.
	At time.Time
	// Node is empty for IntentBrake.
	Node string
	// Phi is the node's phi when the decision was taken.
	Phi float64
	// Threshold is the node's effective threshold.
	Threshold float64
	// LastHeartbeat is the node's last observed heartbeat.
	LastHeartbeat time.Time
	// Braked (IntentSuspect): the brake holds this node's evictions.
	Braked bool
	// EvictionTimeout is the node's silence before eviction (adaptive
	// timeouts only; IntentLink: the timeout it is held at).
	EvictionTimeout time.Duration
	// IntentBrake fields: Active, Scope ("" = all nodes, else a zone) and
	// the counts that tripped it.
	Active           bool
	Scope            string
	Suspected, Total int
}

type zoneState struct {
	name             string
	total, suspected int
	braked           bool
	// soon: suspected plus the nodes that reach their threshold within the
	// eviction delay (see brakeSoon).
	soon int
}

// never is a monotonic instant that is never reached; asap one that has
// always been.
const (
	never = time.Duration(math.MaxInt64)
	asap  = time.Duration(math.MinInt64)
)

// nodeState is one node's state. Instants are monotonic offsets from the
// Core's origin (Go's time.Time.Sub uses the monotonic clock reading when
// both times carry one), so a step of the wall clock changes no decision.
type nodeState struct {
	name      string
	phase     Phase
	det       *phi.Detector
	interval  time.Duration // prior interval the detector was seeded with
	zone      *zoneState    // nil: no zone
	threshold float64       // 0: default
	z         float64       // standard score of the node's threshold
	deadline  time.Duration // instant at which phi reaches the threshold; never before a heartbeat
	last      time.Duration // last heartbeat (valid from WarmingUp on)
	firstSeen time.Duration // first heartbeat (valid from WarmingUp on)
	// silentFrom starts the eviction confirmation: the suspicion, or the
	// tick that found the node silent again after heartbeats that did not
	// recover it.
	silentFrom time.Duration
	beats      int           // heartbeats since silentFrom
	flaps      int           // suspicions within FlapWindow of the previous one
	lastSusp   time.Duration // previous suspicion; never: none
	suspPhi    float64       // phi when suspected
	fence      nodeFence
	// next is the earliest instant at which judging the node can change
	// anything, as long as no heartbeat arrives: the Tick skips it before.
	next time.Duration
	link // adaptive eviction timeout (adaptive.go)
	// active is the source whose window (det) judges the node; windows
	// holds each source's window, kept warm while another is active
	// (core_source.go).
	active  HeartbeatSource
	windows [numSources]*phi.Detector
}

// Core is the pure decision logic of roam-detector. All methods are safe for
// concurrent use; times are passed in by the caller and only ever
// subtracted (monotonic), never read as wall-clock instants.
type Core struct {
	mu        sync.Mutex
	cfg       CoreConfig
	metrics   *Metrics
	origin    time.Time     // instants are offsets from here
	warmStart time.Duration // global warm-up start

	nodes    []*nodeState
	index    map[string]int
	zs       map[float64]float64 // threshold → standard score
	lastTick time.Time
	zones    map[string]*zoneState
	all      zoneState
	// waiting: a node's eviction waited for a brake that may still engage
	// in the last tick (it must be judged again at the next).
	waiting bool
	// quietUntil: nothing is suspected or evicted before it, because the
	// heartbeat source was interrupted; never while it still is (see
	// SourceInterrupted and SourceResumed).
	quietUntil time.Duration
	// linkChanged: nodes whose link became, or stopped being, too poor
	// since the last tick.
	linkChanged []string

	counts [3]int // by Phase.metricState: warmup, alive, suspected
	// fenceMax is the longest fenceAfter of any robot seen.
	fenceMax time.Duration
}

// NewCore returns a Core that started at start (warm-up counts from here).
// metrics may be nil.
func NewCore(cfg CoreConfig, start time.Time, metrics *Metrics) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detector config: %w", err)
	}
	c := &Core{
		cfg:      cfg,
		metrics:  metrics,
		origin:   start,
		index:    map[string]int{},
		zones:    map[string]*zoneState{},
		zs:       map[float64]float64{},
		lastTick: start,
		// quietUntil: asap
		quietUntil: asap,
	}
	if metrics != nil {
		metrics.NodePhi.setSource(c.eachPhi)
		if cfg.Adaptive {
			metrics.NodeLink.setSource(c.eachLink)
		}
	}
	return c, nil
}

// Config returns the configuration.
func (c *Core) Config() CoreConfig { return c.cfg }

// mono is t's monotonic offset from the origin.
func (c *Core) mono(t time.Time) time.Duration { return t.Sub(c.origin) }

// at is the time of the monotonic instant d (for intents and phi).
func (c *Core) at(d time.Duration) time.Time { return c.origin.Add(d) }

// BeginWarmup restarts the global warm-up at now: a detector that just
// took over judges nothing before it has watched every node this long.
func (c *Core) BeginWarmup(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warmStart = c.mono(now)
	for _, n := range c.nodes {
		if n.phase == PhaseWarmingUp {
			c.schedule(n)
		}
	}
}

// SourceInterrupted records that the heartbeat source lost its stream
// from the API server at now (a failed watch or list). While it is cut
// off every robot looks silent, so nothing is suspected or evicted until
// the stream flows again (SourceResumed) and the warm-up period has passed
// after that. Robots that stay silent then are judged as usual.
func (c *Core) SourceInterrupted(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quietUntil = never // until SourceResumed
	for _, n := range c.nodes {
		c.schedule(n)
	}
}

// SourceResumed records that the heartbeat source delivered an object at
// now: if it had been interrupted, the quiet period ends the warm-up
// period after now. It does nothing while the source is flowing.
func (c *Core) SourceResumed(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.quietUntil != never {
		return
	}
	c.quietUntil = c.mono(now) + c.cfg.Warmup
	for _, n := range c.nodes {
		c.schedule(n)
	}
}

// phiConfig is the detector configuration for a node renewing every
// interval (0: unknown).
func (c *Core) phiConfig(interval time.Duration) phi.Config {
	pc := c.cfg.Phi
	if interval > 0 {
		pc.FirstInterval = interval
		pc.MaxInterval = 0 // four intervals: the Lease duration
	}
	return pc
}

// known returns the state of name, or nil when the Core does not track it.
func (c *Core) known(name string) *nodeState {
	if i, ok := c.index[name]; ok {
		return c.nodes[i]
	}
	return nil
}

// node returns the state of name, creating it (Unseen) when absent.
func (c *Core) node(name string, interval time.Duration) *nodeState {
	if i, ok := c.index[name]; ok {
		return c.nodes[i]
	}
	pc := c.phiConfig(interval)
	n := &nodeState{name: name, phase: PhaseUnseen, det: phi.New(pc), interval: pc.FirstInterval, z: c.zFor(0),
		deadline: never, lastSusp: never, next: never, active: SourceLease}
	n.windows[SourceLease] = n.det
	c.newLink(n)
	c.index[name] = len(c.nodes)
	c.nodes = append(c.nodes, n)
	c.all.total++
	c.counts[n.phase.metricState()]++
	return n
}

// Heartbeat records a Lease heartbeat of node observed at now. interval
// is the node's renewal interval when known (phi.FirstIntervalForLease of
// its Lease), else 0; a new node's detector is seeded with it, and a
// changed interval re-seeds it. HeartbeatFrom takes the other sources.
func (c *Core) Heartbeat(node string, interval time.Duration, now time.Time) {
	c.HeartbeatFrom(node, SourceLease, interval, now)
}

// HeartbeatThenNextTick is HeartbeatFrom followed by NextTick in one call, for
// a driver on a virtual clock that asks for the next tick after every
// heartbeat (the fleet simulator: one lock instead of two per heartbeat).
func (c *Core) HeartbeatThenNextTick(node string, src HeartbeatSource, interval time.Duration, now time.Time) time.Time {
	if src >= numSources {
		return c.NextTick()
	}
	c.mu.Lock()
	c.heartbeatFrom(node, src, interval, now)
	next := c.nextTick()
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.heartbeats[src].Inc()
	}
	return next
}

// heartbeat records a heartbeat of n's active source at now.
func (c *Core) heartbeat(n *nodeState, interval time.Duration, now time.Time) {
	if interval > 0 && interval != n.interval {
		last := n.det.LastHeartbeat()
		n.det = phi.New(c.phiConfigFor(n.active, interval))
		n.windows[n.active] = n.det
		n.interval = interval
		if !last.IsZero() {
			n.det.Heartbeat(last)
		}
		c.resetLink(n)
	}
	t := c.mono(now)
	if n.phase != PhaseUnseen && t > n.last {
		c.observeSilence(n, t-n.last)
	}
	n.det.Heartbeat(now)
	if n.phase == PhaseUnseen || t > n.last {
		n.last = t // the detector keeps the later of two heartbeats too
	}
	c.updateDeadline(n)
	if n.phase == PhaseUnseen {
		n.firstSeen = t
		c.setPhase(n, PhaseWarmingUp)
	}
	if n.phase.suspected() {
		n.beats++
	}
	c.schedule(n)
}

// SetZone records the zone (topology.kubernetes.io/zone) of node; "" means
// none. Zones scope the partition brake.
func (c *Core) SetZone(node, zone string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(node, 0)
	if (n.zone == nil && zone == "") || (n.zone != nil && n.zone.name == zone) {
		return
	}
	c.leaveZone(n)
	if zone != "" {
		z := c.zones[zone]
		if z == nil {
			z = &zoneState{name: zone}
			c.zones[zone] = z
		}
		n.zone = z
		z.total++
		if n.phase.suspected() {
			z.suspected++
		}
	}
}

func (c *Core) leaveZone(n *nodeState) {
	if n.zone == nil {
		return
	}
	n.zone.total--
	if n.phase.suspected() {
		n.zone.suspected--
	}
	if n.zone.total == 0 {
		delete(c.zones, n.zone.name)
	}
	n.zone = nil
}

// SetThreshold sets the node's effective threshold: the lowest phiThreshold
// of the policies governing its pods; 0 restores the default.
func (c *Core) SetThreshold(node string, threshold float64) {
	if threshold < 0 || math.IsNaN(threshold) || math.IsInf(threshold, 0) {
		threshold = 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(node, 0)
	n.threshold = threshold
	n.z = c.zFor(threshold)
	c.scaleLink(n)
	c.updateDeadline(n)
	c.schedule(n)
}

// zFor is the standard score at which phi reaches threshold (0: default),
// cached per distinct threshold.
func (c *Core) zFor(threshold float64) float64 {
	if threshold <= 0 {
		threshold = c.cfg.Threshold
	}
	z, ok := c.zs[threshold]
	if !ok {
		z = phi.ZForPhi(threshold)
		c.zs[threshold] = z
	}
	return z
}

// updateDeadline recomputes when n's phi reaches its threshold: the tick
// then compares one integer per node instead of evaluating erfc.
func (c *Core) updateDeadline(n *nodeState) {
	if n.det.LastHeartbeat().IsZero() {
		n.deadline = never
		return
	}
	l := n.last
	after := n.det.SuspectAfter(n.z)
	if after >= never-l {
		n.deadline = never
	} else {
		n.deadline = l + after
	}
	c.linkDeadline(n)
}

// schedule sets n.next: the earliest instant at which judging n can change
// anything while no heartbeat arrives.
func (c *Core) schedule(n *nodeState) {
	switch n.phase {
	case PhaseUnseen:
		n.next = never
	case PhaseWarmingUp:
		n.next = max(c.warmStart, n.firstSeen) + c.cfg.Warmup
	case PhaseAlive:
		n.next = max(n.deadline, c.quietUntil)
	default: // suspected
		switch {
		case n.beats >= c.cfg.RecoverHeartbeats<<n.flaps:
			n.next = asap // may recover at the next tick
		case n.beats > 0:
			n.next = n.deadline // silent again
		case n.phase == PhaseSuspected:
			n.next = max(c.evictionDue(n), c.quietUntil, c.fenceFloor(n)) // eviction due
		default:
			n.next = never // held or evicted: waits for heartbeats
		}
	}
}

// setPhase moves n to p, keeping the per-state and zone counts.
func (c *Core) setPhase(n *nodeState, p Phase) {
	was := n.phase.suspected()
	c.counts[n.phase.metricState()]--
	n.phase = p
	c.counts[p.metricState()]++
	if is := p.suspected(); is != was {
		d := 1
		if !is {
			d = -1
		}
		c.all.suspected += d
		if n.zone != nil {
			n.zone.suspected += d
		}
	}
}

// eachPhi reports every node's phi as of the last tick (for
// roam_node_phi at scrape time).
func (c *Core) eachPhi(yield func(string, float64)) {
	type np struct {
		name string
		phi  float64
	}
	c.mu.Lock()
	snap := make([]np, len(c.nodes))
	for i, n := range c.nodes {
		snap[i] = np{n.name, n.det.Phi(c.lastTick)}
	}
	c.mu.Unlock()
	for _, s := range snap {
		yield(s.name, s.phi)
	}
}

// Forget drops node (it was deleted).
func (c *Core) Forget(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[node]
	if !ok {
		return
	}
	n := c.nodes[i]
	c.leaveZone(n)
	c.all.total--
	c.counts[n.phase.metricState()]--
	if n.phase.suspected() {
		c.all.suspected--
	}
	last := len(c.nodes) - 1
	c.nodes[i] = c.nodes[last]
	c.index[c.nodes[i].name] = i
	c.nodes[last] = nil
	c.nodes = c.nodes[:last]
	delete(c.index, node)
}

// Phi is the current phi of node (0 when unknown).
func (c *Core) Phi(node string, now time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.index[node]; ok {
		return c.nodes[i].det.Phi(now)
	}
	return 0
}

// NodeStatus is a snapshot of one node's state.
type NodeStatus struct {
	// Known: the Core tracks the node (Phase is meaningful).
	Known bool
	Phase Phase
	// Phi at the time asked; SuspicionPhi when it was suspected.
	Phi, SuspicionPhi, Threshold float64
	LastHeartbeat                time.Time
	// Link is the node's adaptive eviction timeout (zero without
	// CoreConfig.Adaptive).
	Link LinkStatus
}

// Status reports node's state at now.
func (c *Core) Status(node string, now time.Time) NodeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.known(node)
	if n == nil {
		return NodeStatus{}
	}
	return NodeStatus{Known: true, Phase: n.phase, Phi: n.det.Phi(now), SuspicionPhi: n.suspPhi,
		Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat(), Link: n.linkStatus()}
}

func (c *Core) threshold(n *nodeState) float64 {
	if n.threshold > 0 {
		return n.threshold
	}
	return c.cfg.Threshold
}

// BrakeActive reports whether any brake holds.
func (c *Core) BrakeActive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.anyBrake()
}

func (c *Core) anyBrake() bool {
	if c.all.braked {
		return true
	}
	for _, z := range c.zones {
		if z.braked {
			return true
		}
	}
	return false
}

// NextTick is the earliest instant at which a Tick can change anything if
// no heartbeat arrives before it: a driver on a virtual clock (the fleet
// simulator) skips the ticks before it. It may be earlier than needed,
// never later; a time at or before the last tick means the next tick.
func (c *Core) NextTick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nextTick()
}

// nextTick is NextTick with c.mu held.
func (c *Core) nextTick() time.Time {
	if c.waiting || len(c.linkChanged) > 0 {
		return c.lastTick
	}
	next := never
	for _, n := range c.nodes {
		next = min(next, n.next)
	}
	if next == never {
		return time.Time{}
	}
	return c.at(next)
}

// Tick evaluates every node at now and appends the resulting intents to out.
// Call it every tick (roam-detector: 200 ms). It runs three passes: judge
// each node, settle the brakes, then evict the nodes whose eviction is due.
func (c *Core) Tick(now time.Time, out []Intent) []Intent {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := len(out)
	t := c.mono(now)
	c.lastTick = now
	out = c.judge(t, out)
	out = c.settleBrakes(t, out, first)
	out = c.evictDue(t, out)
	out = c.linkIntents(out)
	for i := first; i < len(out); i++ {
		out[i].At = now
	}
	c.publish()
	return out
}

// judge is the first pass: each node's own transitions.
func (c *Core) judge(t time.Duration, out []Intent) []Intent {
	for _, n := range c.nodes {
		if t < n.next {
			continue
		}
		silent := t >= n.deadline // ⟺ phi ≥ threshold
		switch n.phase {
		case PhaseWarmingUp:
			if t < max(c.warmStart, n.firstSeen)+c.cfg.Warmup {
				c.schedule(n)
				continue
			}
			c.setPhase(n, PhaseAlive)
			if !silent || t < c.quietUntil {
				// Alive from the start: show it (and clear whatever a
				// previous detector left on the node).
				out = append(out, c.intent(IntentRecover, n, t))
				c.schedule(n)
				continue
			}
			out = c.suspect(n, t, out)
		case PhaseAlive:
			if silent && t >= c.quietUntil {
				out = c.suspect(n, t, out)
			}
		case PhaseSuspected, PhaseHeld, PhaseEvicted:
			switch {
			case silent && n.beats > 0:
				c.silentAgain(n, t)
			case !silent && n.beats >= c.cfg.RecoverHeartbeats<<n.flaps:
				out = c.recover(n, t, out)
			}
		}
		c.schedule(n)
	}
	return out
}

func (c *Core) intent(kind IntentKind, n *nodeState, t time.Duration) Intent {
	return Intent{Kind: kind, Node: n.name, Phi: n.det.Phi(c.at(t)), Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat(),
		EvictionTimeout: n.timeout()}
}

// suspect: Alive → Suspected (Held when a brake already holds its scope).
func (c *Core) suspect(n *nodeState, t time.Duration, out []Intent) []Intent {
	in := c.intent(IntentSuspect, n, t)
	n.silentFrom, n.beats, n.suspPhi = t, 0, in.Phi
	if n.lastSusp != never && t-n.lastSusp < FlapWindow {
		n.flaps = min(n.flaps+1, maxFlapShift)
	} else {
		n.flaps = 0
	}
	n.lastSusp = t
	c.setPhase(n, PhaseSuspected)
	if c.metrics != nil {
		c.metrics.Suspicions.Inc()
		c.metrics.Detection.Observe(c.at(t).Sub(in.LastHeartbeat).Seconds())
	}
	return append(out, in) // Braked is settled once the brakes are
}

// silentAgain: a suspected node that sent heartbeats (too few to recover)
// is silent again: recovery needs consecutive heartbeats, and the eviction
// confirmation starts over.
func (c *Core) silentAgain(n *nodeState, t time.Duration) {
	n.beats = 0
	n.silentFrom = t
}

// recover: Suspected, Held or Evicted → Alive.
func (c *Core) recover(n *nodeState, t time.Duration, out []Intent) []Intent {
	c.setPhase(n, PhaseAlive)
	n.beats = 0
	if c.metrics != nil {
		c.metrics.Recoveries.Inc()
	}
	return append(out, c.intent(IntentRecover, n, t))
}

// hold: Suspected → Held (the brake holds its evictions).
func (c *Core) hold(n *nodeState) { c.setPhase(n, PhaseHeld) }

// release: Held → Suspected (the brake let go).
func (c *Core) release(n *nodeState) { c.setPhase(n, PhaseSuspected) }

// evict: Suspected → Evicted.
func (c *Core) evict(n *nodeState, t time.Duration, out []Intent) []Intent {
	c.setPhase(n, PhaseEvicted)
	return append(out, c.intent(IntentEvict, n, t))
}

// settleBrakes is the second pass: every scope's brake follows its
// suspected count; nodes suspected in this tick (from intent first on)
// learn whether they are held, and held nodes whose brake let go are
// shown suspected again.
func (c *Core) settleBrakes(t time.Duration, out []Intent, first int) []Intent {
	released := false
	out, released = c.updateBrake(&c.all, "", out, released)
	for _, z := range c.zones {
		out, released = c.updateBrake(z, z.name, out, released)
	}
	if released {
		for _, n := range c.nodes {
			if n.phase == PhaseHeld && !c.isBraked(n) {
				c.release(n)
				c.schedule(n)
				in := c.intent(IntentSuspect, n, t)
				in.Phi = max(in.Phi, n.suspPhi)
				out = append(out, in)
			}
		}
	}
	for i := first; i < len(out); i++ {
		if out[i].Kind != IntentSuspect {
			continue
		}
		n := c.nodes[c.index[out[i].Node]]
		if n.phase == PhaseSuspected && c.isBraked(n) {
			c.hold(n)
			c.schedule(n)
			out[i].Braked = true
		}
	}
	return out
}

// evictDue is the third pass: a suspected node whose confirmation is over
// and that is still silent is evicted, unless a brake holds its scope (it
// is then held) or could still engage within the eviction delay (it waits).
func (c *Core) evictDue(t time.Duration, out []Intent) []Intent {
	c.waiting = false
	if t < c.quietUntil {
		return out
	}
	lookedAhead := false
	for _, n := range c.nodes {
		if n.phase != PhaseSuspected || t < c.evictionDue(n) {
			continue
		}
		if t < n.deadline {
			continue // heartbeating again (not yet recovered): never evict a node that is talking
		}
		if t < c.fenceFloor(n) {
			continue // its agent may not have fenced it yet (core_fence.go)
		}
		if c.isBraked(n) {
			// Suspected before the brake engaged: show it held now.
			c.hold(n)
			c.schedule(n)
			in := c.intent(IntentSuspect, n, t)
			in.Braked = true
			out = append(out, in)
			continue
		}
		if t-n.silentFrom < c.cfg.EvictionDelay {
			if !lookedAhead {
				c.lookAhead(t + c.cfg.EvictionDelay)
				lookedAhead = true
			}
			if c.brakeSoon(n) {
				c.waiting = true
				continue // wait: the brake may yet engage for n
			}
		}
		out = c.evict(n, t, out)
		c.schedule(n)
	}
	return out
}

// publish sets the state gauges.
func (c *Core) publish() {
	if c.metrics == nil {
		return
	}
	c.metrics.Nodes.WithLabelValues(StateWarmup).Set(float64(c.counts[0]))
	c.metrics.Nodes.WithLabelValues(StateAlive).Set(float64(c.counts[1]))
	c.metrics.Nodes.WithLabelValues(StateSuspected).Set(float64(c.counts[2]))
	if c.anyBrake() {
		c.metrics.BrakeActive.Set(1)
	} else {
		c.metrics.BrakeActive.Set(0)
	}
}

// lookAhead sets every scope's soon count: its suspected nodes plus those
// whose phi reaches their threshold by horizon unless a heartbeat comes
// first. Nodes cut off together are all in it well before the eviction
// delay of the first one suspected is over.
func (c *Core) lookAhead(horizon time.Duration) {
	c.all.soon = c.all.suspected
	for _, z := range c.zones {
		z.soon = z.suspected
	}
	for _, n := range c.nodes {
		if n.phase != PhaseAlive && n.phase != PhaseWarmingUp || n.deadline > horizon {
			continue
		}
		c.all.soon++
		if n.zone != nil {
			n.zone.soon++
		}
	}
}

// brakeSoon reports whether a brake covering n could engage with the soon
// counts of the last lookAhead.
func (c *Core) brakeSoon(n *nodeState) bool {
	return c.wouldBrake(&c.all, c.all.soon) || (n.zone != nil && c.wouldBrake(n.zone, n.zone.soon))
}

// wouldBrake reports whether suspected nodes of z engage its brake.
func (c *Core) wouldBrake(z *zoneState, suspected int) bool {
	return suspected >= c.cfg.BrakeMinNodes && float64(suspected) >= c.cfg.BrakeFraction*float64(z.total)
}

func (c *Core) isBraked(n *nodeState) bool {
	return c.all.braked || (n.zone != nil && n.zone.braked)
}

func (c *Core) updateBrake(z *zoneState, scope string, out []Intent, released bool) ([]Intent, bool) {
	on := c.wouldBrake(z, z.suspected)
	if on == z.braked {
		return out, released
	}
	z.braked = on
	out = append(out, Intent{Kind: IntentBrake, Active: on, Scope: scope, Suspected: z.suspected, Total: z.total})
	return out, released || !on
}
