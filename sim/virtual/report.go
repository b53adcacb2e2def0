package virtual

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/roam-dev/roam/sim/network"
)

// WriteMarkdown writes the run's report. Its last lines are the headline
// figures in the fixed form docs/design.md ("Printed figure lines") gives,
// so runs can be compared.
func (r *Result) WriteMarkdown(w io.Writer) error {
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "# roam-sim virtual-time report\n\n")
	fmt.Fprintf(&b, "Every detector sees the same heartbeat trace. A suspicion while the robot is connected is false; ")
	fmt.Fprintf(&b, "detection latency (last heartbeat → suspicion) is taken over outages of at least %s (deaths and long dropouts), which every detector here can catch.\n\n", c.MinLoss)
	fmt.Fprintf(&b, "## Parameters\n\n| parameter | value |\n|---|---|\n")
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	row("seed", c.Seed)
	row("robots", c.Robots)
	row("simulated time", c.Duration)
	row("robot-hours", fmt.Sprintf("%.0f", r.RobotHours))
	if c.ModelName != "" {
		row("network model", c.ModelName)
	}
	row("lease renew interval", c.Network.RenewInterval)
	row("links", "`"+network.FormatLinks(c.Network.Links)+"`")
	row("dropouts", fmt.Sprintf("%g per robot-hour, log-normal median %s, at least %s", c.Network.DropoutsPerHour, c.Network.DropoutMedian, c.Network.DropoutMin))
	row("deaths", fmt.Sprintf("%g per robot-day, repaired after %s", c.Network.DeathsPerDay, c.Network.RepairTime))
	d, p := c.Detector, c.Detector.Phi
	row("roam-detector (detector.Core)", fmt.Sprintf("threshold %g, window %d, min σ %s, acceptable pause %s, first interval %s, tick %s, "+
		"eviction confirmation %s, recovery after %d heartbeats, warm-up %s",
		d.Threshold, p.Window, p.MinStdDev, p.AcceptablePause, p.FirstInterval, c.Tick, d.EvictionConfirm, d.RecoverHeartbeats, d.Warmup))
	if d.Adaptive {
		sc := d.Silence
		row("adaptive eviction timeouts", fmt.Sprintf("budget %g false evictions per 1000 robot-hours, floor %s, ceiling %s, history half-life %s; a robot with too little history is on the prior, the fixed rule; "+
			"the eviction confirmation applies to the fixed rule only", sc.Budget, sc.Floor, sc.Ceiling, sc.HalfLife))
	}
	row("not modelled", "the partition brake, the eviction delay that waits for it and the evictor's rate limit act across the fleet; "+
		"each robot runs in its own Core here, and the network model's outages are independent")
	row("stock Kubernetes", fmt.Sprintf("node-monitor-grace-period %s, node-monitor-period %s", c.StockGrace, c.StockPeriod))
	row("heartbeats delivered", r.Heartbeats)
	row("outages ≥ "+c.MinLoss.String(), r.LongOutages)
	row("shorter outages", r.ShortOutages)
	row("wall time", r.Elapsed.Round(time.Millisecond))

	fmt.Fprintf(&b, "\n## Detectors on the same trace\n\n")
	fmt.Fprintf(&b, "| detector | detection p50 | detection p99 | missed | shorter outages caught | false suspicions | per 1000 robot-hours |\n|---|---|---|---|---|---|---|\n")
	for _, s := range []*Score{&r.Roam, &r.Fixed, &r.Pekko, &r.Rival, &r.Stock} {
		if s.Name != "" {
			r.scoreRow(&b, s)
		}
	}
	if len(r.Sweep) > 0 {
		fmt.Fprintf(&b, "\n## Threshold sweep (roam's detector)\n\n")
		fmt.Fprintf(&b, "| detector | detection p50 | detection p99 | missed | shorter outages caught | false suspicions | per 1000 robot-hours |\n|---|---|---|---|---|---|---|\n")
		for i := range r.Sweep {
			r.scoreRow(&b, &r.Sweep[i])
		}
	}
	fmt.Fprintf(&b, "\n## Evictions (roam's detector, a robot lost alone)\n\n")
	if c.Detector.Adaptive {
		fmt.Fprintf(&b, "With adaptive timeouts a robot's pods are evicted once it has been silent for its own eviction timeout, estimated from its history of silences for its share of the budget. ")
		fmt.Fprintf(&b, "The fixed rule (today's) evicts them once it has stayed silent for the confirmation past its phi suspicion. ")
	} else {
		fmt.Fprintf(&b, "A suspicion taints the robot; its pods are evicted once it has stayed silent for the confirmation past the suspicion (or past being found silent again after heartbeats too few to recover it), so a suspicion that ends sooner costs no eviction. ")
	}
	fmt.Fprintf(&b, "Detection here is last heartbeat → eviction; false suspicions are false evictions.\n\n")
	fmt.Fprintf(&b, "| detector | detection p50 | detection p99 | missed | shorter outages caught | false evictions | per 1000 robot-hours |\n|---|---|---|---|---|---|---|\n")
	r.scoreRow(&b, &r.Evicted)
	if r.FixedEvicted.Name != "" {
		r.scoreRow(&b, &r.FixedEvicted)
	}
	for i := range r.Evictions {
		r.scoreRow(&b, &r.Evictions[i])
	}
	fmt.Fprintf(&b, "\n## By link class (roam's detector)\n\n")
	fmt.Fprintf(&b, "| link | robots | detection p50 | detection p99 | false suspicions | per 1000 robot-hours of the class | live silences > 2 s | > 3 s | > 4 s | > 5 s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	hours := c.Duration.Hours()
	for i := range r.Classes {
		k := &r.Classes[i]
		fmt.Fprintf(&b, "| %s | %d | %.2f s | %.2f s | %d | %.3f | %d | %d | %d | %d |\n", k.Link, k.Robots,
			k.Roam.Percentile(50).Seconds(), k.Roam.Percentile(99).Seconds(), k.Roam.FalseSuspicions,
			k.Roam.FalsePer1000h(float64(k.Robots)*hours),
			k.FalseLongerThan(2*time.Second), k.FalseLongerThan(3*time.Second), k.FalseLongerThan(4*time.Second), k.FalseLongerThan(5*time.Second))
	}
	fmt.Fprintf(&b, "\n## Evictions by link class\n\n")
	fmt.Fprintf(&b, "| link | eviction p99 | false evictions per 1000 robot-hours of the class | fixed rule: eviction p99 | fixed rule: per 1000 robot-hours | timeouts at the end: p50 | p90 | max | too poor | on the prior |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range r.Classes {
		k := &r.Classes[i]
		rh := float64(k.Robots) * hours
		fixedP99, fixedRate := "—", "—"
		if r.FixedEvicted.Name != "" {
			fixedP99, fixedRate = fmt.Sprintf("%.2f s", k.FixedEvicted.Percentile(99).Seconds()), fmt.Sprintf("%.3f", k.FixedEvicted.FalsePer1000h(rh))
		}
		fmt.Fprintf(&b, "| %s | %.2f s | %.3f | %s | %s | %s | %s | %s | %d | %d |\n", k.Link, k.Evicted.Percentile(99).Seconds(), k.Evicted.FalsePer1000h(rh),
			fixedP99, fixedRate, quantile(k.Timeouts, 0.5), quantile(k.Timeouts, 0.9), quantile(k.Timeouts, 1), k.TooPoor, k.Prior)
	}
	fmt.Fprintf(&b, "\n## Hindsight bound\n\n")
	fmt.Fprintf(&b, "Within a link class every robot's delays, losses and blackouts are independent draws from one distribution, ")
	fmt.Fprintf(&b, "so a heartbeat's arrival says nothing about how long the next silence will last: a detector that only sees arrivals ")
	fmt.Fprintf(&b, "can do no better, in expectation, than one silence threshold per class, chosen here with hindsight on this very trace ")
	fmt.Fprintf(&b, "(checked continuously, no tick) for at most %g false suspicions per 1000 robot-hours (%d on this run).\n\n", c.GoalFalsePer1000h, r.Bound.Budget)
	if r.Bound.Feasible {
		var givenUp []string
		for i := range r.Classes {
			if r.Bound.Timeouts[i] != r.Bound.P99 {
				givenUp = append(givenUp, fmt.Sprintf("%s (timeout %s)", r.Classes[i].Link, r.Bound.Timeouts[i]))
			}
		}
		how := "one timeout of " + r.Bound.P99.String() + " for every class: no class's outages fit in the 1 % the p99 ignores"
		if len(givenUp) > 0 {
			how = r.Bound.P99.String() + " for every class but " + strings.Join(givenUp, ", ") + ", whose outages fit in the 1 % the p99 ignores"
		}
		fmt.Fprintf(&b, "Best reachable detection p99: **%.2f s** with %d false suspicions (%.3f per 1000 robot-hours): %s.\n",
			r.Bound.P99.Seconds(), r.Bound.FalseSuspicions, float64(r.Bound.FalseSuspicions)/r.RobotHours*1000, how)
	} else {
		fmt.Fprintf(&b, "No per-class timeouts reach the budget on this run.\n")
	}
	if r.RoamBound.Feasible {
		fmt.Fprintf(&b, "\nAt roam's own %d false suspicions the bound is a p99 of %.2f s; roam reaches %.2f s, checking every %s.\n",
			r.Roam.FalseSuspicions, r.RoamBound.P99.Seconds(), r.Roam.Percentile(99).Seconds(), c.Tick)
	}
	fmt.Fprintf(&b, "\nThe same bound holds for evictions. At the false-eviction budget (%g per 1000 robot-hours, %d on this run) it is %s; roam evicts with a p99 of %.2f s and %d false evictions (%.3f per 1000 robot-hours)%s. ",
		r.evictionBudget(), r.EvictionBound.Budget, boundText(r.EvictionBound), r.Evicted.Percentile(99).Seconds(), r.Evicted.FalseSuspicions,
		r.Evicted.FalsePer1000h(r.RobotHours), ratioText(r.Evicted.Percentile(99), r.EvictionBound))
	fmt.Fprintf(&b, "At roam's own false evictions the bound is %s. ", boundText(r.RoamEvictionBound))
	fmt.Fprintf(&b, "The bound pools the budget over the fleet; roam gives each robot an equal share of it.\n")
	if r.Direct != nil {
		r.writeDirect(&b)
	}
	fmt.Fprintf(&b, "\n## Headline\n\n```\n")
	fmt.Fprintf(&b, "budget: %g false evictions per 1000 robot-hours\n", r.evictionBudget())
	fmt.Fprintf(&b, "eviction p99: %.2f s\n", r.Evicted.Percentile(99).Seconds())
	fmt.Fprintf(&b, "hindsight bound for evictions at the budget: %s\n", boundText(r.EvictionBound))
	if r.FixedEvicted.Name != "" {
		fmt.Fprintf(&b, "fixed-phi eviction p99: %.2f s\n", r.FixedEvicted.Percentile(99).Seconds())
		fmt.Fprintf(&b, "fixed-phi false evictions per 1000 robot-hours: %.3f\n", r.FixedEvicted.FalsePer1000h(r.RobotHours))
	}
	fmt.Fprintf(&b, "detection p99: %.2f s\n", r.Roam.Percentile(99).Seconds())
	fmt.Fprintf(&b, "false suspicions per 1000 robot-hours: %.3f\n", r.Roam.FalsePer1000h(r.RobotHours))
	fmt.Fprintf(&b, "false evictions per 1000 robot-hours: %.3f\n", r.Evicted.FalsePer1000h(r.RobotHours))
	fmt.Fprintf(&b, "fixed-timeout rival detection p99: %.2f s\n", r.Rival.Percentile(99).Seconds())
	if d := r.Direct; d != nil {
		fmt.Fprintf(&b, "direct detection p99: %.2f s\n", d.Roam.Percentile(99).Seconds())
		fmt.Fprintf(&b, "direct false evictions per 1000 robot-hours: %.3f\n", d.Evicted.FalsePer1000h(d.RobotHours))
	}
	fmt.Fprintf(&b, "```\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) scoreRow(b *strings.Builder, s *Score) {
	fmt.Fprintf(b, "| %s | %.2f s | %.2f s | %d | %d of %d | %d | %.3f |\n", s.Name,
		s.Percentile(50).Seconds(), s.Percentile(99).Seconds(), s.Missed, s.ShortDetected, r.ShortOutages,
		s.FalseSuspicions, s.FalsePer1000h(r.RobotHours))
}

// evictionBudget is the false-eviction budget the eviction bound is for.
func (r *Result) evictionBudget() float64 {
	if r.Config.Detector.Adaptive {
		return r.Config.Detector.Silence.Budget
	}
	return r.Config.GoalFalsePer1000h
}

// boundText is a bound's p99, or why there is none.
func boundText(b Bound) string {
	if !b.Feasible {
		return "not reachable by per-class timeouts"
	}
	return fmt.Sprintf("%.2f s", b.P99.Seconds())
}

// ratioText compares a p99 with a bound's.
func ratioText(p99 time.Duration, b Bound) string {
	if !b.Feasible || b.P99 <= 0 {
		return ""
	}
	return fmt.Sprintf(", %.2f× the bound", p99.Seconds()/b.P99.Seconds())
}

// quantile of sorted durations, in seconds ("—" when empty).
func quantile(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return "—"
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return fmt.Sprintf("%.2f s", sorted[max(0, min(i, len(sorted)-1))].Seconds())
}

// writeDirect writes the direct-heartbeat section.
func (r *Result) writeDirect(b *strings.Builder) {
	c, d := r.Config, r.Direct
	p := c.Detector.DirectPhi
	fmt.Fprintf(b, "\n## Direct heartbeats (the first %d robots, the same ground truth)\n\n", d.Robots)
	fmt.Fprintf(b, "The same robots send a UDP datagram every %s; each is delayed by its link's latency and jitter and by the delay spike it is sent in, "+
		"lost independently with the link's loss, and lost during the robot's outages and blackouts. A datagram overtaken by a later one is dropped, "+
		"as the detector's replay window does. roam-detector judges them with its direct window (window %d, min σ %s, acceptable pause %s, "+
		"longest recorded interval %s, threshold %g, eviction confirmation %s, tick %s).\n\n",
		c.DirectInterval, p.Window, p.MinStdDev, p.AcceptablePause, p.MaxInterval, c.Detector.Threshold, c.Detector.EvictionConfirm, c.Tick)
	fmt.Fprintf(b, "| quantity | value |\n|---|---|\n")
	fmt.Fprintf(b, "| robot-hours | %.0f |\n", d.RobotHours)
	fmt.Fprintf(b, "| delay spikes | %g per robot-hour, length mean %s, delay mean %s (both paths) |\n", c.Network.SpikesPerHour, c.Network.SpikeLength, c.Network.SpikeDelay)
	fmt.Fprintf(b, "| datagrams sent / accepted / lost / overtaken | %d / %d / %d / %d |\n", d.Sent, d.Datagrams, d.Lost, d.Overtaken)
	fmt.Fprintf(b, "| Lease writes per second per 1,000 robots, renewing every %s (today) | %.1f |\n", c.Network.RenewInterval, r.LeaseWritesPer1000)
	fmt.Fprintf(b, "| Lease writes per second per 1,000 robots, renewing every %s (with the agent) | %.1f |\n", c.DirectLeaseInterval, d.LeaseWritesPer1000)
	fmt.Fprintf(b, "\n| detector | detection p50 | detection p99 | missed | shorter outages caught | false | per 1000 robot-hours |\n|---|---|---|---|---|---|---|\n")
	for _, s := range []*Score{&d.Roam, &d.Evicted} {
		fmt.Fprintf(b, "| %s | %.2f s | %.2f s | %d | %d | %d | %.3f |\n", s.Name,
			s.Percentile(50).Seconds(), s.Percentile(99).Seconds(), s.Missed, s.ShortDetected, s.FalseSuspicions, s.FalsePer1000h(d.RobotHours))
	}
	fmt.Fprintf(b, "\n| link | robots | detection p99 | false suspicions | live silences > 1 s | > 1.5 s | > 2 s | > 3 s |\n|---|---|---|---|---|---|---|---|\n")
	for i := range d.Classes {
		k := &d.Classes[i]
		fmt.Fprintf(b, "| %s | %d | %.2f s | %d | %d | %d | %d | %d |\n", k.Link, k.Robots, k.Roam.Percentile(99).Seconds(), k.Roam.FalseSuspicions,
			k.FalseLongerThan(time.Second), k.FalseLongerThan(1500*time.Millisecond), k.FalseLongerThan(2*time.Second), k.FalseLongerThan(3*time.Second))
	}
	fmt.Fprintf(b, "\nHindsight bound of the direct path: per link class the silence threshold, chosen on this very trace, ")
	fmt.Fprintf(b, "with at most %g live silences longer per 1000 robot-hours (%d on this run) — no detector that sees only arrivals evicts faster at that false-eviction rate: ", c.GoalFalseEvictionsPer1000h, d.Bound.Budget)
	if d.Bound.Feasible {
		fmt.Fprintf(b, "p99 **%.2f s** (%d live silences longer).\n", d.Bound.P99.Seconds(), d.Bound.FalseSuspicions)
	} else {
		fmt.Fprintf(b, "no per-class thresholds reach the budget on this run.\n")
	}
}
