package detector

import (
	"fmt"
	"time"
)

// Fencing defaults, each with its reason (docs/fencing.md).
const (
	// DefaultFenceMargin is added to a fenced robot's fenceAfter before its
	// pods may be removed. It covers what the agent's count and the
	// detector's may differ by: the agent freezing the pods after its
	// deadline (a timer, then one write per pod cgroup: milliseconds), the
	// monotonic clocks' rate difference (at most 2 × 10⁻³ of fenceAfter:
	// 6 ms at 3 s) and scheduling delays on a loaded robot, with room to
	// spare.
	DefaultFenceMargin = 500 * time.Millisecond
	// DefaultUnfencedTimeout: pods that move on node failure but are not
	// fenced (no agent, an agent that cannot freeze, a pod whose policy says
	// freeze: "false") and whose policies do not accept duplicates are
	// removed this long after the robot's last heartbeat: stock
	// Kubernetes' 50 s node-monitor grace period plus its 300 s default
	// toleration, so roam is never less safe than the default.
	DefaultUnfencedTimeout = 340 * time.Second
)

// FenceConfig configures the Core's fencing rule.
type FenceConfig struct {
	// Margin is added to fenceAfter (zero or more).
	Margin time.Duration
	// UnfencedTimeout is how long after its last heartbeat an unfenced
	// robot's pods wait (zero or more; zero: as fast as fenced ones, which
	// allows duplicates).
	UnfencedTimeout time.Duration
}

// DefaultFenceConfig is roam-detector's default fencing configuration.
func DefaultFenceConfig() FenceConfig {
	return FenceConfig{Margin: DefaultFenceMargin, UnfencedTimeout: DefaultUnfencedTimeout}
}

func (f FenceConfig) validate() error {
	switch {
	case f.Margin < 0:
		return fmt.Errorf("fence margin %v must not be negative", f.Margin)
	case f.UnfencedTimeout < 0:
		return fmt.Errorf("unfenced timeout %v must not be negative", f.UnfencedTimeout)
	}
	return nil
}

// FenceMode says how soon a suspected robot's pods may be removed.
type FenceMode uint8

const (
	// FenceUnset: the caller never said (the Core is driven without
	// fencing, as by the virtual simulator): no floor beyond the leader's.
	FenceUnset FenceMode = iota
	// FenceFenced: the robot's agent freezes every pod that moves, fenceAfter
	// after its last acknowledged heartbeat. The pods are removed no earlier
	// than fenceAfter + margin after the last fence-lease renewal observed.
	FenceFenced
	// FenceAcceptDuplicates: every pod that moves accepts duplicates: no
	// floor.
	FenceAcceptDuplicates
	// FenceUnfenced: some pod that moves is neither fenced nor accepts
	// duplicates: removed UnfencedTimeout after the last heartbeat.
	FenceUnfenced
)

func (m FenceMode) String() string {
	switch m {
	case FenceUnset:
		return "Unset"
	case FenceFenced:
		return "Fenced"
	case FenceAcceptDuplicates:
		return "AcceptDuplicates"
	case FenceUnfenced:
		return "Unfenced"
	}
	return fmt.Sprintf("FenceMode(%d)", int(m))
}

// nodeFence is one node's fencing state.
type nodeFence struct {
	mode  FenceMode
	after time.Duration // the agent's fenceAfter (FenceFenced)
	last  time.Duration // last fence-lease renewal observed
	seen  bool          // last is valid
}

// SetFence records how node is fenced: its agent's fenceAfter (0: none) and
// the mode its pods and policies call for.
func (c *Core) SetFence(node string, mode FenceMode, fenceAfter time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(node, 0)
	n.fence.mode, n.fence.after = mode, fenceAfter
	c.fenceMax = max(c.fenceMax, fenceAfter)
	c.schedule(n)
}

// FenceObserved records a renewal of node's fence Lease observed at now:
// the agent may count its lease from as late as now.
func (c *Core) FenceObserved(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(node, 0)
	if t := c.mono(now); !n.fence.seen || t > n.fence.last {
		n.fence.last, n.fence.seen = t, true
	}
	c.schedule(n)
}

// AckHeartbeat is for heartbeat sources that acknowledge heartbeats to the
// robot themselves (direct heartbeats): call it when a heartbeat from node
// arrived at now, before acknowledging it. It records the heartbeat as an
// acknowledged one observed at now (like FenceObserved) and reports whether
// the acknowledgement may be sent: never once the node's pods were handed
// for removal, so that no acknowledgement the floor did not count can keep
// the robot unfenced.
func (c *Core) AckHeartbeat(node string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(node, 0)
	if n.phase == PhaseEvicted {
		return false
	}
	if t := c.mono(now); !n.fence.seen || t > n.fence.last {
		n.fence.last, n.fence.seen = t, true
	}
	c.schedule(n)
	return true
}

// EvictionAborted records that node's eviction was called off at now: the
// conditional revocation of its fence Lease found a renewal the detector had
// not observed yet. It counts as a renewal observed now; the node is
// suspected again and its eviction waits for the new floor.
func (c *Core) EvictionAborted(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.known(node)
	if n == nil {
		return
	}
	t := c.mono(now)
	n.fence.last, n.fence.seen = max(n.fence.last, t), true
	if n.phase == PhaseEvicted {
		c.setPhase(n, PhaseSuspected)
		n.silentFrom, n.beats = t, 0
	}
	c.schedule(n)
}

// EvictionDeferred takes node back from Evicted to Suspected: its fence
// floor, which changed after the Core decided, has not passed yet.
func (c *Core) EvictionDeferred(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.known(node)
	if n == nil {
		return
	}
	if n.phase == PhaseEvicted {
		c.setPhase(n, PhaseSuspected)
	}
	c.schedule(n)
}

// FenceFloor is the earliest time node's pods may be removed, and its mode.
func (c *Core) FenceFloor(node string) (time.Time, FenceMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.known(node)
	if n == nil {
		return time.Time{}, FenceUnset
	}
	return c.at(c.fenceFloor(n)), n.fence.mode
}

// fenceFloor is the earliest instant n's pods may be removed:
//   - after a leadership change (BeginWarmup), no earlier than the longest
//     fenceAfter of any robot + margin: a robot's agent may have been
//     acknowledged by the previous leader's watch just before it;
//   - fenced: fenceAfter + margin after the last fence-lease renewal
//     observed — unless the agent stopped renewing while the robot still
//     heartbeat (the agent is down, nothing freezes): then unfenced;
//   - unfenced: UnfencedTimeout after the last heartbeat.
func (c *Core) fenceFloor(n *nodeState) time.Duration {
	floor := asap
	if c.fenceMax > 0 {
		floor = c.warmStart + c.fenceMax + c.cfg.Fence.Margin
	}
	f := &n.fence
	switch f.mode {
	case FenceUnset, FenceAcceptDuplicates:
		return floor
	case FenceFenced:
		if f.seen && n.last-f.last <= f.after+c.cfg.Fence.Margin {
			return max(floor, f.last+f.after+c.cfg.Fence.Margin)
		}
	}
	return max(floor, n.last+c.cfg.Fence.UnfencedTimeout)
}
