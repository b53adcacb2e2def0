package detector

import (
	"fmt"
	"time"

	"github.com/roam-dev/roam/detector/phi"
)

// HeartbeatSource is where a heartbeat came from; its String is the
// roam_heartbeats_total{source} label.
type HeartbeatSource uint8

// Heartbeat sources, lowest priority first.
const (
	// SourceNode: a change of the Ready condition's lastHeartbeatTime of a
	// node without a Lease.
	SourceNode HeartbeatSource = iota
	// SourceLease: a change of the node's Lease renewTime.
	SourceLease
	// SourceDirect: an accepted datagram from the robot's roam-agent.
	SourceDirect
	numSources
)

func (s HeartbeatSource) String() string {
	switch s {
	case SourceLease:
		return "lease"
	case SourceNode:
		return "node"
	case SourceDirect:
		return "direct"
	}
	return fmt.Sprintf("HeartbeatSource(%d)", int(s))
}

// Defaults of the direct source's phi model, each with its reason.
const (
	// DefaultDirectInterval is the agent's default heartbeat interval, the
	// prior of a new direct window.
	DefaultDirectInterval = 100 * time.Millisecond
	// DefaultDirectWindow: 30 s of history at 10 Hz.
	DefaultDirectWindow = 300
	// DefaultDirectMinStdDev floors the spread of a window of 100 ms
	// intervals: one lost datagram adds a whole interval.
	DefaultDirectMinStdDev = 100 * time.Millisecond
	// DefaultDirectAcceptablePause: a fast roam between access points
	// (802.11r) takes tens of milliseconds, a full re-association a few
	// hundred; this much silence beyond the mean costs nothing.
	DefaultDirectAcceptablePause = 300 * time.Millisecond
	// DefaultDirectMaxInterval: a longer gap is an outage, not jitter, and
	// stays out of the window (it is longer than a detection takes).
	DefaultDirectMaxInterval = 2 * time.Second
)

// DefaultDirectPhi is the phi model of direct heartbeats.
func DefaultDirectPhi() phi.Config {
	return phi.Config{Window: DefaultDirectWindow, MinStdDev: DefaultDirectMinStdDev,
		AcceptablePause: DefaultDirectAcceptablePause, FirstInterval: DefaultDirectInterval, MaxInterval: DefaultDirectMaxInterval}
}

// phiConfigFor is the window configuration of source src for a node
// heartbeating every interval (0: unknown).
func (c *Core) phiConfigFor(src HeartbeatSource, interval time.Duration) phi.Config {
	if src != SourceDirect {
		return c.phiConfig(interval)
	}
	pc := c.cfg.DirectPhi
	if interval > 0 {
		pc.FirstInterval = interval
		pc.MaxInterval = max(pc.MaxInterval, interval)
	}
	return pc
}

// HeartbeatFrom records a heartbeat of node from src observed at now.
// Every source keeps its own phi window; the node is judged by its active
// source, the highest-priority one it has heard from: a robot with a
// direct session is judged by its direct heartbeats, while its Lease
// renewals keep the Lease window warm. Switching to a source does not
// suspect the robot: the new window starts from this heartbeat. interval
// is the source's interval when known, else 0.
func (c *Core) HeartbeatFrom(node string, src HeartbeatSource, interval time.Duration, now time.Time) {
	if src >= numSources {
		return
	}
	c.mu.Lock()
	c.heartbeatFrom(node, src, interval, now)
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.heartbeats[src].Inc()
	}
}

// heartbeatFrom is HeartbeatFrom with c.mu held.
func (c *Core) heartbeatFrom(node string, src HeartbeatSource, interval time.Duration, now time.Time) {
	var n *nodeState
	if src == SourceLease {
		n = c.node(node, interval) // a new node's window starts as its Lease's
	} else {
		n = c.node(node, 0)
	}
	switch {
	case src == n.active:
		c.heartbeat(n, interval, now)
	case src > n.active || n.windows[n.active].LastHeartbeat().IsZero():
		c.activate(n, src, interval)
		c.heartbeat(n, interval, now)
	default: // a lower-priority source: keep its window warm
		w := n.windows[src]
		if w == nil {
			w = phi.New(c.phiConfigFor(src, interval))
			n.windows[src] = w
		}
		w.Heartbeat(now)
	}
}

// activate makes src n's active source, keeping (or creating) its window.
func (c *Core) activate(n *nodeState, src HeartbeatSource, interval time.Duration) {
	w := n.windows[src]
	if w == nil {
		pc := c.phiConfigFor(src, interval)
		w = phi.New(pc)
		n.windows[src] = w
		interval = pc.FirstInterval
	}
	switched := n.active != src
	n.active, n.det = src, w
	if interval > 0 {
		n.interval = interval
	}
	if switched {
		c.resetLink(n) // the silence history was the other source's
	}
}

// EndDirect hands node back to its Lease (or Node) heartbeats at now: its
// direct sessions have ended. The robot is not suspected for the switch:
// the fallback window's silence counts from now.
func (c *Core) EndDirect(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.known(node)
	if n == nil {
		return
	}
	if n.active != SourceDirect {
		return
	}
	src := SourceLease
	if n.windows[SourceLease] == nil && n.windows[SourceNode] != nil {
		src = SourceNode
	}
	c.activate(n, src, 0)
	n.det.Skip(now)
	if t := c.mono(now); t > n.last {
		n.last = t
	}
	c.updateDeadline(n)
	c.schedule(n)
}

// ActiveSource reports the source node is judged by.
func (c *Core) ActiveSource(node string) HeartbeatSource {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.index[node]; ok {
		return c.nodes[i].active
	}
	return SourceLease
}
