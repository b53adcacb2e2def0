// Package lease is roam-agent's side of the fencing lease: the robot may run
// its governed pods only while the cluster has acknowledged one of its
// heartbeats recently. It counts from the send time of the newest
// acknowledged heartbeat, measured on the agent's monotonic clock, and
// expires fenceAfter later unless a newer acknowledgement arrives. Every
// source of acknowledgements feeds it through Acked: the renewals of the
// agent's fence Lease in the API server, and the direct heartbeats'
// acknowledgements from roam-detector's leader.
//
// The package is pure: times are given by the caller.
package lease

import (
	"fmt"
	"sync"
	"time"
)

// Lease is the agent's fencing lease. It is safe for concurrent use.
type Lease struct {
	fenceAfter time.Duration
	changed    chan struct{}

	mu sync.Mutex
	// lastAck is the send time of the newest acknowledged heartbeat.
	lastAck time.Time
	// revokedAt: the cluster revoked the lease (it removes or may remove
	// the robot's pods); acknowledgements of heartbeats sent before it do
	// not count.
	revokedAt time.Time
	revoked   bool
	// revocations counts revocations, so that one the fencer has not
	// handled yet is not lost when an acknowledgement follows quickly.
	revocations uint64
}

// New returns a lease expiring fenceAfter after lastAck: the send time of
// the last heartbeat acknowledged before the agent (re)started, restored
// from where it was kept, or the agent's start time when nothing was kept
// (see Restore).
func New(fenceAfter time.Duration, lastAck time.Time) (*Lease, error) {
	if fenceAfter <= 0 {
		return nil, fmt.Errorf("fence after %v must be positive", fenceAfter)
	}
	return &Lease{fenceAfter: fenceAfter, lastAck: lastAck, changed: make(chan struct{}, 1)}, nil
}

// FenceAfter is the lease's length.
func (l *Lease) FenceAfter() time.Duration { return l.fenceAfter }

// Acked records that the cluster acknowledged the heartbeat sent at
// sentAt. It reports whether that extended the lease: an acknowledgement of
// an older heartbeat than the newest acknowledged, or of one sent before a
// revocation, changes nothing.
func (l *Lease) Acked(sentAt time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revoked && !sentAt.After(l.revokedAt) {
		return false
	}
	if !sentAt.After(l.lastAck) {
		return false
	}
	l.lastAck = sentAt
	l.revoked = false
	l.notify()
	return true
}

// Revoke records that at now the cluster revoked the lease: it is expired
// from now on until a heartbeat sent after now is acknowledged.
func (l *Lease) Revoke(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.revoked, l.revokedAt = true, now
	l.revocations++
	l.notify()
}

func (l *Lease) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Changed receives a value after an acknowledgement extended the lease or
// the lease was revoked.
func (l *Lease) Changed() <-chan struct{} { return l.changed }

// State is a snapshot of the lease.
type State struct {
	// LastAck is the send time of the newest acknowledged heartbeat.
	LastAck time.Time
	// Deadline is when the lease expires (LastAck + fenceAfter).
	Deadline time.Time
	// Revoked: the cluster revoked the lease after LastAck.
	Revoked bool
	// Revocations counts every revocation so far: the fencer must handle
	// each (freeze, then kill rather than thaw), even one that a newer
	// acknowledgement has already ended.
	Revocations uint64
}

// Expired reports whether the robot must be fenced at now.
func (s State) Expired(now time.Time) bool { return s.Revoked || !now.Before(s.Deadline) }

// State returns the lease's current state.
func (l *Lease) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return State{LastAck: l.lastAck, Deadline: l.lastAck.Add(l.fenceAfter), Revoked: l.revoked, Revocations: l.revocations}
}
