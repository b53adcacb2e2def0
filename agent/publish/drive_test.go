package publish

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/state"
)

// Drive describes a robot's virtual hour of driving followed by an hour
// parked, as its localisation and mission software would report it.
type Drive struct {
	Speed         float64       // m/s along a rectangular loop
	LoopW, LoopH  float64       // loop size in metres
	SensorPeriod  time.Duration // how often the robot's software reports
	ContextEvery  time.Duration // context change period while driving
	DrainPerMin   float64       // battery percentage points per minute while driving
	Noise         float64       // localisation jitter (uniform ± metres)
	Driving, Park time.Duration
	Seed          uint64
}

// DefaultDrive is the scenario the agent's write rate is quoted for:
// 1.5 m/s, a context change every 10 minutes, localisation at 10 Hz with
// ±5 cm jitter, battery draining 0.5 %/min while driving and steady while
// parked.
func DefaultDrive() Drive {
	return Drive{Speed: 1.5, LoopW: 60, LoopH: 40, SensorPeriod: 100 * time.Millisecond,
		ContextEvery: 10 * time.Minute, DrainPerMin: 0.5, Noise: 0.05,
		Driving: time.Hour, Park: time.Hour, Seed: 1}
}

// DriveResult counts the writes of a drive.
type DriveResult struct {
	// DrivingWrites happen while driving, StopWrites within one location
	// interval of stopping, ParkedWrites later.
	DrivingWrites, StopWrites, ParkedWrites int
	ByKind                                  map[Kind]int
	ContextChanges                          int
	MaxContextDelay                         time.Duration
	MinLocationGap                          time.Duration
	MaxLocationError                        float64
}

// position on a w×h rectangle after travelling d metres.
func position(d, w, h float64) (float64, float64) {
	d = math.Mod(d, 2*(w+h))
	switch {
	case d < w:
		return d, 0
	case d < w+h:
		return w, d - w
	case d < 2*w+h:
		return w - (d - w - h), h
	default:
		return 0, h - (d - 2*w - h)
	}
}

// DriveAndPark runs the planner over a drive in virtual time, writing
// whenever it says a write is due (with no write latency), and counts.
func DriveAndPark(l Limits, d Drive) DriveResult {
	rng := rand.New(rand.NewPCG(d.Seed, 0))
	contexts := []string{"hospital", "store", "warehouse"}
	p := NewPlanner(l)
	r := DriveResult{ByKind: map[Kind]int{}, MinLocationGap: time.Duration(math.MaxInt64)}
	var lastLocWrite time.Time
	var pendingCtx time.Time // when the newest unpublished context was observed
	var truth state.Location
	var lastObserved time.Time

	flush := func(until time.Time) {
		for {
			due, when, kind := p.Next(until)
			if !due {
				return
			}
			when = later(when, lastObserved)
			prev, had := p.Published()
			s := p.Desired()
			p.Written(s, when)
			switch since := when.Sub(t0); {
			case since < d.Driving:
				r.DrivingWrites++
			case since <= d.Driving+l.LocationInterval:
				// The last location of the drive, written when the
				// interval since the previous one has passed.
				r.StopWrites++
			default:
				r.ParkedWrites++
			}
			r.ByKind[kind]++
			if kind == KindLocation {
				if !lastLocWrite.IsZero() {
					r.MinLocationGap = min(r.MinLocationGap, when.Sub(lastLocWrite))
				}
				lastLocWrite = when
			}
			if !pendingCtx.IsZero() && (!had || s.Context != prev.Context) {
				r.MaxContextDelay = max(r.MaxContextDelay, when.Sub(pendingCtx))
				pendingCtx = time.Time{}
			}
		}
	}

	end := d.Driving + d.Park
	ctx := 0
	for el := time.Duration(0); el <= end; el += d.SensorPeriod {
		now := t0.Add(el)
		flush(now)
		driving := min(el, d.Driving)
		truth.X, truth.Y = position(d.Speed*driving.Seconds(), d.LoopW, d.LoopH)
		if el < d.Driving {
			if c := int(el / d.ContextEvery); c != ctx {
				ctx = c
				r.ContextChanges++
				pendingCtx = now
			}
		}
		battery := 100 - d.DrainPerMin*driving.Minutes()
		s := state.State{Context: contexts[ctx%len(contexts)], Zone: "site-a",
			Location: &state.Location{X: truth.X + d.Noise*(2*rng.Float64()-1), Y: truth.Y + d.Noise*(2*rng.Float64()-1)},
			Battery:  &battery}
		p.Observe(s, now)
		lastObserved = now
		if pub, ok := p.Published(); ok && pub.Location != nil {
			r.MaxLocationError = max(r.MaxLocationError, pub.Location.Distance(truth))
		}
	}
	return r
}

// BenchmarkNodeWritesPerRobotHour reports the Node writes of DefaultDrive
// under the default limits (deterministic: virtual time, fixed seed).
//
//	go test -run '^$' -bench NodeWritesPerRobotHour ./agent/publish/
func BenchmarkNodeWritesPerRobotHour(b *testing.B) {
	d := DefaultDrive()
	var r DriveResult
	for range b.N {
		r = DriveAndPark(DefaultLimits(), d)
	}
	perSec := float64(r.DrivingWrites) / d.Driving.Seconds()
	b.ReportMetric(float64(r.DrivingWrites)/d.Driving.Hours(), "writes/robot-hour-driving")
	b.ReportMetric(perSec, "writes/s-driving")
	b.ReportMetric(float64(r.ParkedWrites)/d.Park.Hours(), "writes/robot-hour-parked")
	b.Logf("agent node writes: driving %.3f/s (%d in %v: %v), %d on stopping, parked %d in %v, %d context changes, max context delay %v, max location error %.2f m",
		perSec, r.DrivingWrites, d.Driving, fmt.Sprint(r.ByKind), r.StopWrites, r.ParkedWrites, d.Park, r.ContextChanges, r.MaxContextDelay, r.MaxLocationError)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
