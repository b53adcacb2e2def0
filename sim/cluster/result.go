package cluster

import (
	"math"
	"sort"
	"time"
)

// Sample is one displaced pod and how long its replacement took.
type Sample struct {
	// Kind is "loss" (a robot went silent) or "context" (its context changed).
	Kind     string
	Robot    string
	Workload string
	Copy     Copy
	Pod      string
	// Start is the robot's last heartbeat (loss) or the label change (context).
	Start time.Time
	// Seconds is Start → a replacement pod of the same owner Running; when
	// Replaced is false the run ended first and Seconds is the run's end −
	// Start, a lower bound.
	Seconds     float64
	Replaced    bool
	Replacement string
	NewNode     string
	// Steps are seconds after Start when the pod was seen terminating or
	// deleted, and its replacement created and bound (negative: not seen),
	// so a slow redeploy shows which step took the time.
	Evicted, Created, Bound float64
}

// Mark is one event on a lost robot's timeline, in seconds after its last
// heartbeat.
type Mark struct {
	Lane    string // "robot", "roam" or "stock"
	Seconds float64
	Label   string
}

// LostRobot is what happened around one lost robot.
type LostRobot struct {
	Name, Context, Link   string
	RoamPods, StockPods   int
	LastBeat, LostAt      time.Time
	RoamTaint, StockTaint time.Time
	Marks                 []Mark
}

// Result is a cluster-mode run's measurements.
type Result struct {
	Config     Config
	Start, End time.Time
	Samples    []Sample
	Lost       []LostRobot
	// Deletions counts pod deletions by copy/reason (reason: the pod's
	// DisruptionTarget reason, or "deleted").
	Deletions        map[string]int
	StockTolerations string
	// Switches are "robot: from → to" for every context switch.
	Switches []string

	// Renewals counts the Lease writes of the run (setup included),
	// RenewalsLate those that landed more than 1 s after the network
	// model's arrival time (the machine was too loaded to keep up; the
	// detector rightly sees that as silence), RenewalsDropped those skipped
	// because every writer was busy; MaxLate is the worst lateness.
	Renewals, RenewalsLate, RenewalsDropped int
	MaxLate                                 time.Duration
	// AgentWrites counts the Node writes of the robots' agents (what the
	// fleet's sensing cost), by kind: labels, location, battery.
	AgentWrites map[string]int
	// Interrupted is set when the run was cut short (Ctrl-C): the
	// figures cover Start → End only.
	Interrupted bool

	stayed int      // stock pods left on switched robots at the end
	charts []string // chart files written by WriteFiles
}

// RunLength is the scenario's length (start → end).
func (r *Result) RunLength() time.Duration { return r.End.Sub(r.Start) }

// Figure is a p99 over samples; Lower is true when some sample was not
// replaced by the end of the run, so the true p99 is at least Seconds.
type Figure struct {
	Seconds    float64
	Lower      bool
	N, Pending int
}

// P99 is the nearest-rank 99th percentile of the samples of kind and copy.
func (r *Result) P99(kind string, c Copy) Figure {
	var xs []float64
	var f Figure
	for _, s := range r.Samples {
		if s.Kind != kind || s.Copy != c {
			continue
		}
		xs = append(xs, s.Seconds)
		if !s.Replaced {
			f.Pending++
		}
	}
	f.N = len(xs)
	if f.N == 0 {
		return f
	}
	sort.Float64s(xs)
	f.Seconds = xs[int(math.Ceil(0.99*float64(len(xs))))-1]
	f.Lower = f.Pending > 0
	return f
}

func (s *sim) result() *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := *s.cfg
	cfg.Clock, cfg.Status = nil, nil
	res := &Result{Config: cfg, Start: s.start, End: s.end, Deletions: map[string]int{}, StockTolerations: s.tolerations,
		Renewals: s.renewals, RenewalsLate: s.renewalsLate, RenewalsDropped: s.renewalsDropped, MaxLate: s.maxLate}
	if res.End.IsZero() {
		res.End = s.clock.Now()
	}
	if s.agents != nil {
		res.AgentWrites = map[string]int{}
		for k, v := range s.agents.Writes() {
			res.AgentWrites[string(k)] = v
		}
	}
	for k, v := range s.evictions {
		res.Deletions[k] = v
	}
	lost := map[*robot]*LostRobot{}
	var lostOrder []*robot
	for _, d := range s.disruptions {
		start := d.at
		if d.kind == "loss" {
			start = d.robot.lastBeat
		}
		step := func(t time.Time) float64 {
			if t.IsZero() {
				return -1
			}
			return t.Sub(start).Seconds()
		}
		sm := Sample{Kind: d.kind, Robot: d.robot.spec.Name, Workload: d.pod.workload, Copy: d.pod.copy, Pod: d.pod.name, Start: start,
			Evicted: step(d.pod.deleting), Created: -1, Bound: -1}
		if d.replacement != nil {
			sm.Replaced, sm.Replacement, sm.NewNode = true, d.replacement.name, d.replacement.node
			sm.Seconds = d.replacement.running.Sub(start).Seconds()
			sm.Created, sm.Bound = step(d.replacement.created), step(d.replacement.bound)
		} else {
			sm.Seconds = res.End.Sub(start).Seconds()
		}
		res.Samples = append(res.Samples, sm)
		if d.kind == "context" {
			continue
		}
		lr := lost[d.robot]
		if lr == nil {
			r := d.robot
			lr = &LostRobot{Name: r.spec.Name, Context: r.context, Link: r.spec.LinkName, LastBeat: r.lastBeat, LostAt: r.lostAt,
				RoamTaint: r.roamTaintAt, StockTaint: r.stockTaintAt}
			lost[d.robot] = lr
			lostOrder = append(lostOrder, d.robot)
			since := func(t time.Time) float64 { return t.Sub(r.lastBeat).Seconds() }
			lr.Marks = append(lr.Marks, Mark{"robot", 0, "last heartbeat"}, Mark{"robot", since(r.lostAt), "robot lost"})
			if !r.roamTaintAt.IsZero() {
				lr.Marks = append(lr.Marks, Mark{"roam", since(r.roamTaintAt), "roam: suspected, tainted"})
			}
			if !r.stockTaintAt.IsZero() {
				lr.Marks = append(lr.Marks, Mark{"stock", since(r.stockTaintAt), "stock: NotReady, NoExecute taint"})
			}
		}
		since := func(t time.Time) float64 { return t.Sub(d.robot.lastBeat).Seconds() }
		lane := string(d.pod.copy)
		if d.pod.copy == Roam {
			lr.RoamPods++
		} else {
			lr.StockPods++
		}
		if !d.pod.deleting.IsZero() {
			lr.Marks = append(lr.Marks, Mark{lane, since(d.pod.deleting), d.pod.name + " deleted"})
		}
		if d.replacement != nil {
			lr.Marks = append(lr.Marks, Mark{lane, since(d.replacement.running), d.replacement.name + " Running"})
		} else {
			lr.Marks = append(lr.Marks, Mark{lane, since(res.End), "run ends: " + d.pod.name + " not replaced"})
		}
	}
	for _, r := range lostOrder {
		res.Lost = append(res.Lost, *lost[r])
	}
	for _, r := range s.order {
		if r.switched {
			res.Switches = append(res.Switches, r.spec.Name+": "+r.spec.Context+" → "+r.context)
			for _, p := range s.onRobot(r.spec.Name) {
				if Copy(p.Labels[CopyLabel]) == Stock {
					res.stayed++
				}
			}
		}
	}
	return res
}
