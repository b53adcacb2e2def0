package detector

import (
	"math"
	"time"

	"github.com/roam-dev/roam/detector/silence"
)

// Adaptive eviction timeouts (CoreConfig.Adaptive).
//
// Each node has a silence.Estimator fed with every silence between two of
// its heartbeats. The node is evicted once it has been silent for the
// estimator's timeout — the shortest silence its own link exceeds, while
// alive, no more often than its share of the false-eviction budget — and
// it is suspected (tainted) at its phi threshold or at that timeout,
// whichever comes first. A suspected node that sends heartbeats too few
// to recover is evicted only after a whole timeout of silence again.
//
// Until a node's history is long enough to estimate its tail
// (silence.MinSilences silences, 10 minutes at 1 s renewals) its prior is
// the fixed rule — suspicion at its phi threshold, eviction EvictionConfirm
// later (≈3.7 s after the last heartbeat for a new node renewing every
// second, whose phi window starts from the Lease's prior ± 25 %) — which is
// never the floor, and which the fleet simulator measures on the same
// traces. A restarted or newly elected detector starts every node there.
//
// A policy's phiThreshold keeps its meaning on both: it is the node's
// suspicion threshold, and it scales the node's share of the budget by
// 10^(Threshold − phiThreshold) — phi is −log10 of the probability that a
// live node stays this silent, so a policy asking for phi 10 instead of 8
// accepts a hundredth of the false evictions (a longer timeout), and one
// asking for phi 6 a hundred times as many (a shorter one).

// link is a node's adaptive eviction timeout.
type link struct {
	est     *silence.Estimator // nil: eviction after EvictionConfirm
	evictAt time.Duration      // last heartbeat + the estimator's timeout
	// poor: the link needs more than the ceiling; reported: what the
	// last IntentLink said; pending: queued in Core.linkChanged.
	poor, reported, pending bool
}

// LinkStatus is a node's adaptive eviction timeout and what it costs.
type LinkStatus struct {
	// EvictionTimeout is the silence after the last heartbeat at which
	// the node is evicted (0: adaptive timeouts are off, or the node is on
	// the prior).
	EvictionTimeout time.Duration
	// Needed is the timeout its share of the budget asks for, before the
	// floor and the ceiling.
	Needed time.Duration
	// FalseEvictionRate is the estimated rate of false evictions at
	// EvictionTimeout, per 1,000 hours of the node (0 while Prior).
	FalseEvictionRate float64
	// Prior: the node's history is still too short to estimate its link;
	// it is evicted by the fixed rule (phi threshold and EvictionConfirm).
	Prior bool
	// TooPoor: the link needs a longer timeout than the ceiling.
	TooPoor bool
}

func (c *Core) newLink(n *nodeState) {
	n.evictAt = never
	if c.cfg.Adaptive {
		n.est = silence.New(c.cfg.Silence, n.interval)
		n.est.SetScale(c.budgetScale(n))
	}
}

// resetLink forgets the node's history (its renewal interval changed).
func (c *Core) resetLink(n *nodeState) {
	if n.est != nil {
		n.est.Reset(n.interval)
		c.noteLink(n)
	}
}

// observeSilence records a silence of s that ended with a heartbeat.
func (c *Core) observeSilence(n *nodeState, s time.Duration) {
	if n.est != nil {
		n.est.Observe(s)
		c.noteLink(n)
	}
}

// scaleLink follows a change of the node's threshold.
func (c *Core) scaleLink(n *nodeState) {
	if n.est != nil {
		n.est.SetScale(c.budgetScale(n))
		c.noteLink(n)
	}
}

// budgetScale is the factor on the node's share of the budget: 1 at the
// default threshold, 10^(default − threshold) at a policy's.
func (c *Core) budgetScale(n *nodeState) float64 {
	return math.Pow(10, c.cfg.Threshold-c.threshold(n))
}

// linkDeadline sets the node's eviction instant from its last heartbeat
// and brings its suspicion deadline no later than it.
func (c *Core) linkDeadline(n *nodeState) {
	if n.est == nil || n.est.Prior() {
		n.evictAt = never
		return
	}
	n.evictAt = n.last + n.est.Timeout()
	n.deadline = min(n.deadline, n.evictAt)
}

// evictionDue is the instant from which a suspected, still silent node is
// evicted (brake and eviction delay aside).
func (c *Core) evictionDue(n *nodeState) time.Duration {
	if n.est != nil && !n.est.Prior() {
		return n.evictAt
	}
	return n.silentFrom + c.cfg.EvictionConfirm
}

// noteLink queues an IntentLink when the node's link became, or stopped
// being, too poor for fast failover.
func (c *Core) noteLink(n *nodeState) {
	n.poor = n.est.TooPoor()
	if n.poor != n.reported && !n.pending {
		n.pending = true
		c.linkChanged = append(c.linkChanged, n.name)
	}
}

// linkIntents appends the IntentLink of every node whose report changed.
func (c *Core) linkIntents(out []Intent) []Intent {
	for _, name := range c.linkChanged {
		i, ok := c.index[name]
		if !ok {
			continue // forgotten
		}
		n := c.nodes[i]
		n.pending = false
		if n.poor == n.reported {
			continue
		}
		n.reported = n.poor
		out = append(out, Intent{Kind: IntentLink, Node: n.name, Active: n.poor, Threshold: c.threshold(n),
			LastHeartbeat: n.det.LastHeartbeat(), EvictionTimeout: n.est.Timeout()})
	}
	c.linkChanged = c.linkChanged[:0]
	return out
}

// timeout is the node's adaptive eviction timeout (0: off, or the node is
// on the prior, the fixed rule).
func (n *nodeState) timeout() time.Duration {
	if n.est == nil || n.est.Prior() {
		return 0
	}
	return n.est.Timeout()
}

func (n *nodeState) linkStatus() LinkStatus {
	if n.est == nil {
		return LinkStatus{}
	}
	st := n.est.Status()
	if st.Prior {
		return LinkStatus{Prior: true}
	}
	return LinkStatus{EvictionTimeout: st.Timeout, Needed: st.Needed, FalseEvictionRate: st.Rate, TooPoor: st.TooPoor()}
}

// eachLink reports every node's link status (for the roam_node_eviction_*
// metrics at scrape time).
func (c *Core) eachLink(yield func(string, LinkStatus)) {
	type nl struct {
		name string
		st   LinkStatus
	}
	c.mu.Lock()
	snap := make([]nl, len(c.nodes))
	for i, n := range c.nodes {
		snap[i] = nl{n.name, n.linkStatus()}
	}
	c.mu.Unlock()
	for _, s := range snap {
		yield(s.name, s.st)
	}
}
