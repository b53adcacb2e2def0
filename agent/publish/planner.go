// Package publish writes what the robot senses into its Node: a server-side
// apply (field manager roam-agent) that owns only the agent's keys, paced by
// a Planner so a moving fleet does not flood the API server.
package publish

import (
	"maps"
	"math"
	"time"

	"github.com/roam-dev/roam/agent/state"
)

// Limits pace Node writes.
type Limits struct {
	// Debounce is how long a change of context, zone or an extra key waits
	// for further changes before it is written; changes within it share one
	// write.
	Debounce time.Duration
	// LocationResolution is the distance in metres the robot must move from
	// its published location before a new location is written.
	LocationResolution float64
	// LocationInterval is the least time between two location writes.
	LocationInterval time.Duration
	// BatteryStep is the change in percentage points that is written at
	// once; smaller changes wait for BatteryInterval.
	BatteryStep float64
	// BatteryInterval is the least time between two writes of a battery
	// change smaller than BatteryStep.
	BatteryInterval time.Duration
}

// DefaultLimits are the agent's defaults.
func DefaultLimits() Limits {
	return Limits{
		Debounce:           200 * time.Millisecond,
		LocationResolution: 1,
		LocationInterval:   2 * time.Second,
		BatteryStep:        5,
		BatteryInterval:    60 * time.Second,
	}
}

// Kind names why a write is due; it labels the publishes metric.
type Kind string

// Kinds of writes, most urgent first.
const (
	KindLabels   Kind = "labels" // context, zone or an extra label/annotation
	KindLocation Kind = "location"
	KindBattery  Kind = "battery"
)

// Planner decides when the newest state must be written. It is pure logic
// driven by the caller's monotonic clock readings: Observe each new state,
// ask Next when the next write is due, and report a successful write with
// Written. A write always carries the whole newest state (a server-side
// apply that left a key out would remove it), so location and battery
// changes ride along with any write that happens for another reason.
type Planner struct {
	limits Limits

	desired   state.State
	published state.State
	// hasPublished is false until the first write; the first state is
	// written without waiting.
	hasPublished bool

	// urgentSince is when the desired state first differed from the
	// published one in a key that is written after Debounce (zero: no
	// such difference).
	urgentSince time.Time
	// lastLocation and lastBattery are when the published location and
	// battery last changed.
	lastLocation time.Time
	lastBattery  time.Time
}

// NewPlanner returns a planner with nothing observed.
func NewPlanner(l Limits) *Planner {
	return &Planner{limits: l}
}

// Desired returns the newest observed state.
func (p *Planner) Desired() state.State { return p.desired }

// Published returns the last state written.
func (p *Planner) Published() (state.State, bool) { return p.published, p.hasPublished }

// Observe records s as the newest state at time now.
func (p *Planner) Observe(s state.State, now time.Time) {
	p.desired = s
	if p.urgentDiff() {
		if p.urgentSince.IsZero() {
			p.urgentSince = now
		}
	} else {
		p.urgentSince = time.Time{}
	}
}

// urgentDiff reports whether desired and published differ in a key that
// is written after Debounce: labels, extra annotations, or a location or
// battery appearing or disappearing.
func (p *Planner) urgentDiff() bool {
	d, q := p.desired, p.published
	if !p.hasPublished {
		return true
	}
	if d.Context != q.Context || d.Zone != q.Zone {
		return true
	}
	if !maps.Equal(d.Labels, q.Labels) || !maps.Equal(d.Annotations, q.Annotations) {
		return true
	}
	return (d.Location == nil) != (q.Location == nil) || (d.Battery == nil) != (q.Battery == nil)
}

// Next returns whether a write is due at now, when the earliest pending
// write is or was due given no further observations (zero: none pending;
// it may lie before now), and its reason.
func (p *Planner) Next(now time.Time) (due bool, at time.Time, kind Kind) {
	consider := func(t time.Time, k Kind) {
		if t.IsZero() {
			return
		}
		if at.IsZero() || t.Before(at) {
			at, kind = t, k
		}
	}
	if !p.urgentSince.IsZero() {
		if p.hasPublished {
			consider(p.urgentSince.Add(p.limits.Debounce), KindLabels)
		} else {
			consider(p.urgentSince, KindLabels)
		}
	}
	d, q := p.desired, p.published
	if d.Location != nil && q.Location != nil && d.Location.Distance(*q.Location) >= p.limits.LocationResolution {
		consider(p.lastLocation.Add(p.limits.LocationInterval), KindLocation)
	}
	if d.Battery != nil && q.Battery != nil {
		if delta := math.Abs(*d.Battery - *q.Battery); delta >= p.limits.BatteryStep {
			consider(now, KindBattery)
		} else if state.BatteryString(*d.Battery) != state.BatteryString(*q.Battery) {
			consider(p.lastBattery.Add(p.limits.BatteryInterval), KindBattery)
		}
	}
	if at.IsZero() {
		return false, time.Time{}, ""
	}
	due = !at.After(now)
	if due && !p.urgentSince.IsZero() {
		// The write carries a label change: count it as one, whatever
		// made it due first.
		kind = KindLabels
	}
	return due, at, kind
}

// Written records that s (a state previously observed, normally the
// newest) was written at now.
func (p *Planner) Written(s state.State, now time.Time) {
	if !p.hasPublished || !ptrEqual(s.Location, p.published.Location) {
		p.lastLocation = now
	}
	if !p.hasPublished || !ptrEqual(s.Battery, p.published.Battery) {
		p.lastBattery = now
	}
	p.published, p.hasPublished = s, true
	p.urgentSince = time.Time{}
	if p.urgentDiff() {
		// A change arrived while s was being written.
		p.urgentSince = now
	}
}

// ptrEqual: both nil, or both set to equal values.
func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
