// Package detector is roam-detector: it turns node Lease heartbeats into
// phi-accrual suspicion (package phi), decides which robots are lost, and
// reschedules the pods of lost robots that a policy allows to move.
//
// Data flows one way: heartbeat source (Lease/Node informers) → Core (pure
// decision logic on an injected clock) → intents → Actuator (the only part
// that writes to the API). Core never touches the API, so it runs unchanged
// under the fleet simulator's virtual clock.
package detector

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/roam-dev/roam/detector/phi"
)

// Defaults of CoreConfig, each with its reason.
const (
	// DefaultThreshold is the phi at which a node is suspected. phi 8 means
	// a live node would stay silent this long with probability 10⁻⁸ under
	// the window's normal model; with 1 s renewals it is reached ≈2.6 s
	// after the last heartbeat (Pekko's default is also 8).
	DefaultThreshold = 8.0
	// DefaultRecoverHeartbeats: a suspected node recovers after this many
	// heartbeats since its suspicion (and phi back under the threshold), so
	// one stray heartbeat through a dying link does not flap the node.
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
	// cost a taint, not the robot's apps. 800 ms is the shortest on the
	// 200 ms tick that keeps false evictions under 1 per 1,000 robot-hours
	// on the sim's default Wi-Fi model (0.72; 600 ms gives 1.04, none 3.36)
	// at a cost of 0.8 s in redeploy time.
	DefaultEvictionConfirm = 800 * time.Millisecond
	// DefaultEvictionRate (nodes per second) and DefaultEvictionBurst bound
	// how fast nodes are emptied: a burst covers a few robots lost at once,
	// the rate stops a runaway (stock kube-controller-manager uses 0.1/s per
	// zone with its 5-minute timeout; roam acts in seconds).
	DefaultEvictionRate  = 1.0
	DefaultEvictionBurst = 10
	// FlapWindow: a node suspected again within this long of its previous
	// suspicion needs twice as many heartbeats to recover as last time (up
	// to 32×), so a flapping robot settles in Suspected instead of toggling
	// its taint every few seconds.
	FlapWindow   = 10 * time.Minute
	maxFlapShift = 5
)

// CoreConfig configures a Core. Zero fields take their defaults.
type CoreConfig struct {
	// Phi configures each node's detector; FirstInterval is the prior for
	// nodes whose renewal interval is unknown.
	Phi phi.Config
	// Threshold is the default suspicion threshold (DefaultThreshold).
	Threshold float64
	// RecoverHeartbeats (DefaultRecoverHeartbeats).
	RecoverHeartbeats int
	// Warmup (DefaultWarmup).
	Warmup time.Duration
	// BrakeFraction in (0, 1] (DefaultBrakeFraction).
	BrakeFraction float64
	// BrakeMinNodes (DefaultBrakeMinNodes).
	BrakeMinNodes int
	// EvictionDelay (DefaultEvictionDelay): the longest a suspected node's
	// eviction waits for a brake that could still engage; negative means
	// none.
	EvictionDelay time.Duration
	// EvictionConfirm: a suspected node's pods are evicted only once it has
	// stayed silent this long past its suspicion (DefaultEvictionConfirm;
	// negative means at once). A suspicion that ends sooner costs the taint
	// but no eviction; the virtual sim's eviction table shows the trade
	// (false evictions against time to evict).
	EvictionConfirm time.Duration
	// EvictionRate in nodes per second and EvictionBurst
	// (DefaultEvictionRate, DefaultEvictionBurst).
	EvictionRate  float64
	EvictionBurst int
}

// WithDefaults returns c with zero fields defaulted.
func (c CoreConfig) WithDefaults() CoreConfig {
	c.Phi = c.Phi.WithDefaults()
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.RecoverHeartbeats == 0 {
		c.RecoverHeartbeats = DefaultRecoverHeartbeats
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.BrakeFraction == 0 {
		c.BrakeFraction = DefaultBrakeFraction
	}
	if c.BrakeMinNodes == 0 {
		c.BrakeMinNodes = DefaultBrakeMinNodes
	}
	if c.EvictionDelay == 0 {
		c.EvictionDelay = DefaultEvictionDelay
	}
	if c.EvictionDelay < 0 {
		c.EvictionDelay = 0
	}
	if c.EvictionConfirm == 0 {
		c.EvictionConfirm = DefaultEvictionConfirm
	}
	if c.EvictionConfirm < 0 {
		c.EvictionConfirm = 0
	}
	if c.EvictionRate == 0 {
		c.EvictionRate = DefaultEvictionRate
	}
	if c.EvictionBurst == 0 {
		c.EvictionBurst = DefaultEvictionBurst
	}
	return c
}

// Validate reports the first invalid setting.
func (c CoreConfig) Validate() error {
	c = c.WithDefaults()
	if err := c.Phi.Validate(); err != nil {
		return err
	}
	switch {
	case c.Threshold <= 0 || math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0):
		return fmt.Errorf("phi threshold %v must be a positive number", c.Threshold)
	case c.RecoverHeartbeats < 1:
		return fmt.Errorf("recover heartbeats %d must be at least 1", c.RecoverHeartbeats)
	case c.Warmup < 0:
		return fmt.Errorf("warmup %v must not be negative", c.Warmup)
	case !(c.BrakeFraction > 0 && c.BrakeFraction <= 1):
		return fmt.Errorf("brake fraction %v must be in (0, 1]", c.BrakeFraction)
	case c.BrakeMinNodes < 1:
		return fmt.Errorf("brake min nodes %d must be at least 1", c.BrakeMinNodes)
	case c.EvictionRate < 0 || math.IsNaN(c.EvictionRate):
		return fmt.Errorf("eviction rate %v must not be negative", c.EvictionRate)
	case c.EvictionBurst < 1:
		return fmt.Errorf("eviction burst %d must be at least 1", c.EvictionBurst)
	}
	return nil
}

// IntentKind is what the actuator should do.
type IntentKind int

const (
	// IntentSuspect: taint the node and set RoamReachable False (Unknown
	// while the brake holds its evictions).
	IntentSuspect IntentKind = iota
	// IntentRecover: remove the taint and set RoamReachable True (if the
	// node carries roam's taint or condition at all). Also emitted once per
	// node when it leaves warm-up alive, to clear marks a previous detector
	// left behind.
	IntentRecover
	// IntentEvict: reschedule the governed pods of the node.
	IntentEvict
	// IntentBrake: the partition brake engaged or released for Scope.
	IntentBrake
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
	}
	return fmt.Sprintf("IntentKind(%d)", int(k))
}

// Intent is one decision of the Core for the actuator.
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

type nodeState struct {
	name      string
	det       *phi.Detector
	interval  time.Duration // prior interval the detector was seeded with
	firstSeen time.Time     // first heartbeat; zero before
	zone      *zoneState    // nil: no zone
	threshold float64       // 0: default
	warm      bool          // left warm-up
	suspected bool
	since     time.Time // suspected since
	hbSince   int       // heartbeats since suspicion
	flaps     int       // suspicions within FlapWindow of the previous one
	lastSusp  time.Time // previous suspicion
	pending   bool      // suspected, eviction not yet issued
	heldBrake bool      // last shown as held by the brake (Unknown)
	suspPhi   float64   // phi when suspected
	evicted   bool
	z         float64 // standard score of the node's threshold
	deadline  int64   // UnixNano at which phi reaches the threshold
}

// Core is the pure decision logic of roam-detector. All methods are safe for
// concurrent use; times are passed in by the caller.
type Core struct {
	mu      sync.Mutex
	cfg     CoreConfig
	metrics *Metrics
	start   time.Time
	limiter *rate.Limiter

	nodes    []*nodeState
	index    map[string]int
	zs       map[float64]float64 // threshold → standard score
	lastTick time.Time
	zones    map[string]*zoneState
	all      zoneState

	counts [3]int // warmup, alive, suspected
}

// NewCore returns a Core that started at start (warm-up counts from here).
// metrics may be nil.
func NewCore(cfg CoreConfig, start time.Time, metrics *Metrics) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detector config: %w", err)
	}
	cfg = cfg.WithDefaults()
	lim := rate.Limit(cfg.EvictionRate)
	c := &Core{
		cfg:      cfg,
		metrics:  metrics,
		start:    start,
		limiter:  rate.NewLimiter(lim, cfg.EvictionBurst),
		index:    map[string]int{},
		zones:    map[string]*zoneState{},
		zs:       map[float64]float64{},
		lastTick: start,
	}
	if metrics != nil {
		metrics.NodePhi.setSource(c.eachPhi)
	}
	return c, nil
}

// Config returns the effective configuration.
func (c *Core) Config() CoreConfig { return c.cfg }

// node returns the state of name, creating it (un-started) when absent.
func (c *Core) node(name string, interval time.Duration) *nodeState {
	if i, ok := c.index[name]; ok {
		return c.nodes[i]
	}
	pc := c.cfg.Phi
	if interval > 0 {
		pc.FirstInterval = interval
		pc.MaxInterval = 0
	}
	n := &nodeState{name: name, det: phi.New(pc), interval: pc.FirstInterval, z: c.zFor(0), deadline: math.MaxInt64}
	c.index[name] = len(c.nodes)
	c.nodes = append(c.nodes, n)
	c.all.total++
	c.counts[0]++
	return n
}

// Heartbeat records a heartbeat of node observed at now. interval is the
// node's renewal interval when known (phi.FirstIntervalForLease of its
// Lease), else 0; a new node's detector is seeded with it, and a changed
// interval re-seeds it.
func (c *Core) Heartbeat(node string, interval time.Duration, now time.Time) {
	c.mu.Lock()
	n := c.node(node, interval)
	if interval > 0 && interval != n.interval {
		pc := c.cfg.Phi
		pc.FirstInterval = interval
		pc.MaxInterval = 0
		last := n.det.LastHeartbeat()
		n.det = phi.New(pc)
		n.interval = interval
		if !last.IsZero() {
			n.det.Heartbeat(last)
		}
	}
	if n.firstSeen.IsZero() {
		n.firstSeen = now
	}
	n.det.Heartbeat(now)
	c.updateDeadline(n)
	if n.suspected {
		n.hbSince++
	}
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.Heartbeats.Inc()
	}
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
		if n.suspected {
			z.suspected++
		}
	}
}

func (c *Core) leaveZone(n *nodeState) {
	if n.zone == nil {
		return
	}
	n.zone.total--
	if n.suspected {
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
	c.updateDeadline(n)
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
	last := n.det.LastHeartbeat()
	if last.IsZero() {
		n.deadline = math.MaxInt64
		return
	}
	after := n.det.SuspectAfter(n.z)
	if after >= time.Duration(math.MaxInt64-last.UnixNano()) {
		n.deadline = math.MaxInt64
		return
	}
	n.deadline = last.UnixNano() + int64(after)
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
	c.counts[stateIndex(n)]--
	if n.suspected {
		c.all.suspected--
	}
	last := len(c.nodes) - 1
	c.nodes[i] = c.nodes[last]
	c.index[c.nodes[i].name] = i
	c.nodes[last] = nil
	c.nodes = c.nodes[:last]
	delete(c.index, node)
}

func stateIndex(n *nodeState) int {
	switch {
	case n.suspected:
		return 2
	case n.warm:
		return 1
	}
	return 0
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
	Known, Warm, Suspected, Evicted bool
	Phi, Threshold                  float64
	LastHeartbeat                   time.Time
}

// Status reports node's state at now.
func (c *Core) Status(node string, now time.Time) NodeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[node]
	if !ok {
		return NodeStatus{}
	}
	n := c.nodes[i]
	return NodeStatus{Known: true, Warm: n.warm, Suspected: n.suspected, Evicted: n.evicted,
		Phi: n.det.Phi(now), Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat()}
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

// Tick evaluates every node at now and appends the resulting intents to out.
// Call it every tick (roam-detector: 200 ms).
func (c *Core) Tick(now time.Time, out []Intent) []Intent {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := len(out)
	globalWarm := now.Sub(c.start) >= c.cfg.Warmup
	nowNs := now.UnixNano()
	c.lastTick = now
	for _, n := range c.nodes {
		if n.firstSeen.IsZero() {
			continue // never heard from: nothing to judge
		}
		silent := nowNs >= n.deadline // ⟺ phi ≥ threshold
		if !n.warm {
			if !globalWarm || now.Sub(n.firstSeen) < c.cfg.Warmup {
				continue
			}
			n.warm = true
			c.counts[0]--
			c.counts[1]++
			if !silent {
				// Clear whatever a previous detector left on the node.
				out = append(out, Intent{Kind: IntentRecover, Node: n.name, Phi: n.det.Phi(now),
					Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat()})
				continue
			}
		}
		switch {
		case !n.suspected && silent:
			p := n.det.Phi(now)
			thr := c.threshold(n)
			n.suspected, n.since, n.hbSince, n.pending, n.suspPhi = true, now, 0, true, p
			if !n.lastSusp.IsZero() && now.Sub(n.lastSusp) < FlapWindow {
				n.flaps = min(n.flaps+1, maxFlapShift)
			} else {
				n.flaps = 0
			}
			n.lastSusp = now
			c.counts[1]--
			c.counts[2]++
			c.all.suspected++
			if n.zone != nil {
				n.zone.suspected++
			}
			last := n.det.LastHeartbeat()
			if c.metrics != nil {
				c.metrics.Suspicions.Inc()
				c.metrics.Detection.Observe(now.Sub(last).Seconds())
			}
			out = append(out, Intent{Kind: IntentSuspect, Node: n.name, Phi: p, Threshold: thr, LastHeartbeat: last})
		case n.suspected && silent:
			n.hbSince = 0 // silent again: recovery needs consecutive heartbeats
		case n.suspected && n.hbSince >= c.cfg.RecoverHeartbeats<<n.flaps:
			n.suspected, n.pending, n.evicted, n.heldBrake = false, false, false, false
			c.counts[2]--
			c.counts[1]++
			c.all.suspected--
			if n.zone != nil {
				n.zone.suspected--
			}
			if c.metrics != nil {
				c.metrics.Recoveries.Inc()
			}
			out = append(out, Intent{Kind: IntentRecover, Node: n.name, Phi: n.det.Phi(now), Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat()})
		}
	}

	// Brakes: settle every scope first, then announce.
	released := false
	out, released = c.updateBrake(&c.all, "", out, released)
	for _, z := range c.zones {
		out, released = c.updateBrake(z, z.name, out, released)
	}
	braked := c.all.braked
	for _, z := range c.zones {
		braked = braked || z.braked
	}
	if released {
		// Nodes whose evictions are no longer held show False again.
		for _, n := range c.nodes {
			if n.suspected && n.heldBrake && !c.isBraked(n) {
				n.heldBrake = false
				out = append(out, Intent{Kind: IntentSuspect, Node: n.name, Phi: max(n.det.Phi(now), n.suspPhi),
					Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat()})
			}
		}
	}
	// Suspicions of this tick learn whether their evictions are held.
	for i := first; i < len(out); i++ {
		if out[i].Kind == IntentSuspect {
			n := c.nodes[c.index[out[i].Node]]
			out[i].Braked = c.isBraked(n)
			n.heldBrake = out[i].Braked
		}
	}

	// Evictions: one token per node.
	lookedAhead := false
	for _, n := range c.nodes {
		if !n.pending || now.Sub(n.since) < c.cfg.EvictionConfirm {
			continue
		}
		if now.Sub(n.since) < c.cfg.EvictionDelay {
			if !lookedAhead {
				c.lookAhead(nowNs + int64(c.cfg.EvictionDelay))
				lookedAhead = true
			}
			if c.brakeSoon(n) {
				continue // wait: the brake may yet engage for n
			}
		}
		if nowNs < n.deadline {
			continue // heartbeating again (not yet recovered): never evict a node that is talking
		}
		if c.isBraked(n) {
			if !n.heldBrake {
				// Suspected before the brake engaged: show Unknown now.
				n.heldBrake = true
				out = append(out, Intent{Kind: IntentSuspect, Node: n.name, Phi: n.det.Phi(now), Braked: true,
					Threshold: c.threshold(n), LastHeartbeat: n.det.LastHeartbeat()})
			}
			continue
		}
		if !c.limiter.AllowN(now, 1) {
			break
		}
		n.pending, n.evicted = false, true
		out = append(out, Intent{Kind: IntentEvict, Node: n.name, Phi: n.det.Phi(now), Threshold: c.threshold(n),
			LastHeartbeat: n.det.LastHeartbeat()})
	}

	for i := first; i < len(out); i++ {
		out[i].At = now
	}
	if c.metrics != nil {
		c.metrics.Nodes.WithLabelValues(StateWarmup).Set(float64(c.counts[0]))
		c.metrics.Nodes.WithLabelValues(StateAlive).Set(float64(c.counts[1]))
		c.metrics.Nodes.WithLabelValues(StateSuspected).Set(float64(c.counts[2]))
		if braked {
			c.metrics.BrakeActive.Set(1)
		} else {
			c.metrics.BrakeActive.Set(0)
		}
	}
	return out
}

// lookAhead sets every scope's soon count: its suspected nodes plus those
// whose phi reaches their threshold by horizon (UnixNano) unless a heartbeat
// comes first. Nodes cut off together are all in it well before the eviction
// delay of the first one suspected is over.
func (c *Core) lookAhead(horizon int64) {
	c.all.soon = c.all.suspected
	for _, z := range c.zones {
		z.soon = z.suspected
	}
	for _, n := range c.nodes {
		if n.suspected || n.firstSeen.IsZero() || n.deadline > horizon {
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
