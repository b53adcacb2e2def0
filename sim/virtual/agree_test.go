package virtual

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/sim/network"
)

// event is one decision about a robot: what and when (from the epoch).
type event struct {
	kind detector.IntentKind
	at   time.Duration
}

// TestVirtualDriverAgreesWithFleetCore feeds the same heartbeat traces to
// the simulator's driver (a Core per robot, ticked only where it can change
// anything) and to one Core watching the whole fleet, ticked every 200 ms
// as roam-detector ticks it; suspicions, evictions and recoveries must
// come at identical times. The traces come from the network model with
// frequent dropouts on lossy, roaming links, so they hold false
// suspicions, recoveries, silences that resume before the confirmation and
// suspected robots that fall silent again.
func TestVirtualDriverAgreesWithFleetCore(t *testing.T) {
	model := network.DefaultModel()
	model.Links = model.Links[1:] // congested and roaming only
	model.DropoutsPerHour, model.DeathsPerDay = 4, 2
	const robots, dur = 40, 3 * time.Hour
	traces := make([][]time.Duration, robots)
	for i := range traces {
		r := model.NewRobot(7, i, dur)
		for {
			at, ok := r.Next()
			if !ok {
				break
			}
			traces[i] = append(traces[i], at)
		}
	}
	confirm0 := LeaseDetector(4)
	confirm0.Adaptive, confirm0.EvictionConfirm, confirm0.RecoverHeartbeats = false, 0, 5
	adaptive := LeaseDetector(4)
	adaptive.Adaptive = true
	for name, cfg := range map[string]detector.CoreConfig{"defaults": LeaseDetector(4), "adaptive timeouts": adaptive,
		"fixed rule, no confirmation, 5 to recover": confirm0} {
		t.Run(name, func(t *testing.T) {
			const tick = 200 * time.Millisecond
			epoch := time.Unix(0, 0)
			interval := cfg.Phi.FirstInterval

			// The simulator's driver, one Core per robot.
			virtual := make([][]event, robots)
			for i, trace := range traces {
				d, err := newCoreDriver(cfg, detector.SourceLease, epoch, tick)
				if err != nil {
					t.Fatal(err)
				}
				var out []detector.Intent
				for _, at := range trace {
					out = d.until(at, out)
					d.heartbeat(robotNode, interval, at)
				}
				out = d.until(dur, out)
				for _, in := range out {
					virtual[i] = append(virtual[i], event{in.Kind, in.At.Sub(epoch)})
				}
			}

			// One Core for the fleet, every tick.
			fleet, err := detector.NewCore(cfg, epoch, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make([][]event, robots)
			next := make([]int, robots)
			var out []detector.Intent
			for now := time.Duration(0); now < dur; now += tick {
				for i, trace := range traces {
					for ; next[i] < len(trace) && trace[next[i]] <= now; next[i]++ {
						fleet.Heartbeat(fmt.Sprint(i), interval, epoch.Add(trace[next[i]]))
					}
				}
				for _, in := range fleet.Tick(epoch.Add(now), out[:0]) {
					if in.Kind == detector.IntentBrake {
						t.Fatalf("the fleet's brake engaged at %v (%d of %d suspected): the traces do not isolate the per-robot rule", now, in.Suspected, in.Total)
					}
					var i int
					fmt.Sscan(in.Node, &i)
					got[i] = append(got[i], event{in.Kind, in.At.Sub(epoch)})
				}
			}

			counts := map[detector.IntentKind]int{}
			for i := range robots {
				if !slices.Equal(virtual[i], got[i]) {
					t.Errorf("robot %d: the simulator's driver decided\n  %v\nthe fleet's Core\n  %v", i, virtual[i], got[i])
				}
				for _, e := range got[i] {
					counts[e.kind]++
				}
			}
			t.Logf("%d suspicions, %d evictions, %d recoveries compared", counts[detector.IntentSuspect], counts[detector.IntentEvict], counts[detector.IntentRecover])
			if counts[detector.IntentSuspect] < 50 || counts[detector.IntentEvict] < 20 || counts[detector.IntentRecover] < 50 {
				t.Errorf("too few decisions to compare: %v", counts)
			}
		})
	}
}
