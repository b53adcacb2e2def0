package publish

import (
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/state"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func st(ctx string, x, y, battery float64) state.State {
	return state.State{Context: ctx, Location: &state.Location{X: x, Y: y}, Battery: &battery}
}

// written makes p publish whatever is due at now and reports whether it did.
func written(p *Planner, now time.Time) bool {
	due, _, _ := p.Next(now)
	if due {
		p.Written(p.Desired(), now)
	}
	return due
}

func TestFirstStateWrittenAtOnce(t *testing.T) {
	p := NewPlanner(DefaultLimits())
	if due, at, _ := p.Next(t0); due || !at.IsZero() {
		t.Fatalf("nothing observed: due=%v at=%v", due, at)
	}
	p.Observe(st("hospital", 0, 0, 80), t0)
	if due, _, kind := p.Next(t0); !due || kind != KindLabels {
		t.Fatalf("first state: due=%v kind=%v, want due labels", due, kind)
	}
}

func TestContextChangeDebounced(t *testing.T) {
	l := DefaultLimits()
	p := NewPlanner(l)
	p.Observe(st("hospital", 0, 0, 80), t0)
	written(p, t0)

	p.Observe(st("store", 0, 0, 80), at(time.Second))
	due, when, kind := p.Next(at(time.Second))
	if due || !when.Equal(at(time.Second+l.Debounce)) || kind != KindLabels {
		t.Fatalf("context change: due=%v at=%v kind=%v; want a labels write at +%v", due, when, kind, l.Debounce)
	}
	// A second change within the debounce shares the write.
	p.Observe(st("warehouse", 0, 0, 80), at(time.Second+50*time.Millisecond))
	if _, when, _ := p.Next(at(time.Second + 50*time.Millisecond)); !when.Equal(at(time.Second + l.Debounce)) {
		t.Fatalf("second change moved the write to %v", when)
	}
	if !written(p, at(time.Second+l.Debounce)) {
		t.Fatal("not due after the debounce")
	}
	if got, _ := p.Published(); got.Context != "warehouse" {
		t.Fatalf("published context %q, want the newest", got.Context)
	}
	// Flapping back within the debounce cancels the write.
	p.Observe(st("store", 0, 0, 80), at(2*time.Second))
	p.Observe(st("warehouse", 0, 0, 80), at(2*time.Second+10*time.Millisecond))
	if due, when, _ := p.Next(at(3 * time.Second)); due || !when.IsZero() {
		t.Fatalf("flap back: due=%v at=%v, want nothing pending", due, when)
	}
}

func TestLocationResolutionAndInterval(t *testing.T) {
	l := DefaultLimits()
	p := NewPlanner(l)
	p.Observe(st("a", 0, 0, 80), t0)
	written(p, t0)

	// Moving less than the resolution is never written.
	p.Observe(st("a", 0.6, 0.7, 80), at(10*time.Second))
	if due, when, _ := p.Next(at(10 * time.Second)); due || !when.IsZero() {
		t.Fatalf("0.92 m move: due=%v at=%v", due, when)
	}
	// Moving 1 m is written, at once when the interval has passed.
	p.Observe(st("a", 0.6, 0.8, 80), at(10*time.Second))
	if due, _, kind := p.Next(at(10 * time.Second)); !due || kind != KindLocation {
		t.Fatalf("1 m move: due=%v kind=%v", due, kind)
	}
	written(p, at(10*time.Second))
	// The next move waits for the interval.
	p.Observe(st("a", 5, 5, 80), at(10*time.Second+500*time.Millisecond))
	due, when, _ := p.Next(at(10*time.Second + 500*time.Millisecond))
	if due || !when.Equal(at(10*time.Second+l.LocationInterval)) {
		t.Fatalf("move within the interval: due=%v at=%v, want at +%v", due, when, l.LocationInterval)
	}
}

func TestBatteryStepAndInterval(t *testing.T) {
	l := DefaultLimits()
	p := NewPlanner(l)
	p.Observe(st("a", 0, 0, 80), t0)
	written(p, t0)

	// A change that rounds to the same percent is never written.
	p.Observe(st("a", 0, 0, 80.3), at(2*time.Minute))
	if due, when, _ := p.Next(at(2 * time.Minute)); due || !when.IsZero() {
		t.Fatalf("80.3: due=%v at=%v", due, when)
	}
	// A small change waits for the interval since the last battery write.
	p.Observe(st("a", 0, 0, 78), at(2*time.Minute))
	if due, _, kind := p.Next(at(2 * time.Minute)); !due || kind != KindBattery {
		t.Fatalf("small change a minute after the last: due=%v kind=%v", due, kind)
	}
	written(p, at(2*time.Minute))
	p.Observe(st("a", 0, 0, 77), at(2*time.Minute+time.Second))
	if due, when, _ := p.Next(at(2*time.Minute + time.Second)); due || !when.Equal(at(3*time.Minute)) {
		t.Fatalf("small change: due=%v at=%v, want at 3m", due, when)
	}
	// A change of 5 points is written at once.
	p.Observe(st("a", 0, 0, 73), at(2*time.Minute+2*time.Second))
	if due, _, _ := p.Next(at(2*time.Minute + 2*time.Second)); !due {
		t.Fatal("5-point change not due at once")
	}
}

func TestContextChangeWithAMoveIsALabelsWrite(t *testing.T) {
	p := NewPlanner(DefaultLimits())
	p.Observe(st("a", 0, 0, 80), t0)
	written(p, t0)
	// The robot reaches another site: the location is due at once (the
	// interval has long passed) and the write carries the new context.
	p.Observe(st("b", 50, 50, 80), at(time.Minute))
	if due, _, kind := p.Next(at(time.Minute)); !due || kind != KindLabels {
		t.Fatalf("context change with a move: due=%v kind=%v, want a labels write at once", due, kind)
	}
}

func TestKeysAppearingOrDisappearingAreUrgent(t *testing.T) {
	l := DefaultLimits()
	p := NewPlanner(l)
	p.Observe(st("a", 0, 0, 80), t0)
	written(p, t0)
	p.Observe(state.State{Context: "a"}, at(time.Second))
	if _, when, kind := p.Next(at(time.Second)); !when.Equal(at(time.Second+l.Debounce)) || kind != KindLabels {
		t.Fatalf("location and battery lost: at=%v kind=%v", when, kind)
	}
}

// TestWritesWhileDrivingAndParked drives a robot in a virtual hour and
// checks the pacing invariants: no two location writes closer than the
// interval, every context change published within the debounce, and no
// writes at all while parked.
func TestWritesWhileDrivingAndParked(t *testing.T) {
	l := DefaultLimits()
	r := DriveAndPark(l, DefaultDrive())
	if r.MaxContextDelay > l.Debounce {
		t.Errorf("a context change took %v to be written, more than the debounce %v", r.MaxContextDelay, l.Debounce)
	}
	if r.MinLocationGap < l.LocationInterval {
		t.Errorf("two location-driven writes only %v apart (interval %v)", r.MinLocationGap, l.LocationInterval)
	}
	if r.MaxLocationError > l.LocationResolution+DefaultDrive().Speed*l.LocationInterval.Seconds() {
		t.Errorf("published location was %.2f m off", r.MaxLocationError)
	}
	if r.ParkedWrites != 0 {
		t.Errorf("%d writes while parked, want 0", r.ParkedWrites)
	}
	if r.DrivingWrites == 0 || r.ContextChanges == 0 {
		t.Fatalf("drive did not exercise the planner: %+v", r)
	}
}
