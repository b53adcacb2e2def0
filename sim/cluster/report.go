package cluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/roam-dev/roam/sim/network"
)

// Headline returns the report's two figure lines, in the fixed form that
// docs/design.md ("Printed figure lines") gives so runs can be compared:
//
//	redeploy p99: roam X s, stock Y s, ratio Z
//	context redeploy p99: X s
//
// A figure with pods not yet replaced at the end of the run is a lower
// bound and is printed with ">" (e.g. "stock > 150.0 s, ratio > 25.0").
func (r *Result) Headline() []string {
	roam, stock := r.P99("loss", Roam), r.P99("loss", Stock)
	num := func(f Figure) string {
		if f.N == 0 {
			return "n/a"
		}
		if f.Lower {
			return fmt.Sprintf("> %.1f s", f.Seconds)
		}
		return fmt.Sprintf("%.1f s", f.Seconds)
	}
	ratio := "n/a"
	if roam.N > 0 && stock.N > 0 && !roam.Lower && roam.Seconds > 0 {
		ratio = fmt.Sprintf("%.1f", stock.Seconds/roam.Seconds)
		if stock.Lower {
			ratio = "> " + ratio
		}
	}
	ctx := r.P99("context", Roam)
	ctxLine := "context redeploy p99: " + num(ctx)
	if ctx.N > 0 && ctx.Pending == ctx.N {
		ctxLine = "context redeploy p99: n/a"
	}
	return []string{
		fmt.Sprintf("redeploy p99: roam %s, stock %s, ratio %s", num(roam), num(stock), ratio),
		ctxLine,
	}
}

// Label is the one-line parameter summary every chart carries.
func (r *Result) Label() string {
	c := r.Config
	return fmt.Sprintf("seed %d · %d robots · run %s · renew %s (lease %d s) · start delay %s · settle %s · stock: KCM defaults (grace 50 s, tolerations 300 s)",
		c.Seed, c.Robots, c.Duration, c.Network.RenewInterval, c.LeaseDurationSeconds(), c.StartDelay, c.Settle)
}

// WriteMarkdown writes the report.
func (r *Result) WriteMarkdown(w io.Writer, charts []string) error {
	c := r.Config
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# roam-sim cluster mode: roam vs stock Kubernetes\n\n")
	p("A real control plane (etcd, kube-apiserver, kube-controller-manager with stock settings), roam-scheduler and roam-detector as child processes, and %d simulated robots whose Leases are renewed per the network model. Every workload runs twice: a **roam** copy (roam-scheduler, a policy with `onNodeFailure: reschedule`) and a **stock** copy (default scheduler profile, no policy, the API server's default tolerations). Both copies are hit by the same failures, in the same run.\n\n", c.Robots)
	if r.Interrupted {
		p("**Interrupted after %s of the planned %s**: every figure below covers only that time.\n\n", r.RunLength().Round(time.Second), c.Duration)
	}
	p("## Headline\n\n```\n%s\n```\n\n", strings.Join(r.Headline(), "\n"))
	roam, stock, ctx := r.P99("loss", Roam), r.P99("loss", Stock), r.P99("context", Roam)
	p("- Redeploy time: a lost robot's last heartbeat → a replacement pod of the same owner Running (nearest-rank p99; %d roam pods, %d stock pods on %d lost robots).\n", roam.N, stock.N, len(r.Lost))
	longer := ""
	if c.Duration < 7*time.Minute {
		longer = " Run with `--duration 8m` to see the Deployments' stock figure complete."
	}
	if stock.Pending > 0 {
		p("- **%d of %d stock pods were still not replaced when the run ended** (%s after its start): they count with the time they had waited (a lower bound), so the stock figure and the ratio are lower bounds (`>`). Stock Kubernetes needs node-monitor-grace-period (50 s) + the default toleration (300 s) ≈ 5 min 40 s to delete a Deployment's pod from an unreachable node, and never replaces a StatefulSet pod (it stays Terminating until the node returns or someone force-deletes it).%s\n", stock.Pending, stock.N, r.RunLength().Round(time.Second), longer)
	}
	if dep := r.stockDeploymentsOnly(); dep.N > 0 && dep.N != stock.N {
		lb := ""
		if dep.Lower {
			lb = "> "
		}
		ratio := ""
		if roam.N > 0 && !roam.Lower && roam.Seconds > 0 {
			ratio = fmt.Sprintf(", %s%.1f× roam's p99", lb, dep.Seconds/roam.Seconds)
		}
		p("- Stock, Deployment pods only: p99 %s%.1f s (%d pods, %d not replaced%s).\n", lb, dep.Seconds, dep.N, dep.Pending, ratio)
	}
	if roam.Pending > 0 {
		p("- %d roam pods were not replaced by the end of the run (counted as lower bounds).\n", roam.Pending)
	}
	switch {
	case ctx.N == 0:
		p("- Context redeploy: no roam pod was on a switched robot (n/a).\n")
	case ctx.Pending == ctx.N:
		p("- Context redeploy: n/a — none of the %d roam pods on switched robots was moved within the run (roam-detector does not evict on context changes in this build, or no other robot satisfied the policy).\n", ctx.N)
	default:
		p("- Context redeploy: label change → replacement Running, %d roam pods (%d not replaced). Settle is %s, so the target is ≤ settle + 2 s.\n", ctx.N, ctx.Pending, c.Settle)
	}
	if r.Renewals > 0 {
		p("- Heartbeat delivery: %d Lease renewals written, %d (%.2f%%) more than 1 s after the network model's arrival time (worst %.1f s), %d dropped with every writer busy. Late renewals mean the machine was too loaded to keep up; the detector rightly sees them as silence (and its brake holds evictions when many robots go silent at once).\n",
			r.Renewals, r.RenewalsLate, 100*float64(r.RenewalsLate)/float64(r.Renewals), r.MaxLate.Seconds(), r.RenewalsDropped)
	}
	if r.AgentWrites != nil {
		p("- Sensing: %s (setup included). Each robot's context, zone, location and battery reach its Node only through roam-agent's publisher (server-side apply, rate-limited).\n", r.AgentWritesLine())
	}
	p("- Stock pods on a switched robot never move (a nodeSelector is IgnoredDuringExecution): %d stayed.\n", r.stockStayed())
	p("\n## Parameters\n\n| parameter | value |\n|---|---|\n")
	rows := [][2]string{
		{"seed", fmt.Sprint(c.Seed)},
		{"robots", fmt.Sprintf("%d in %s (round-robin), zone = site-<context>", c.Robots, strings.Join(Contexts(), ", "))},
		{"run length", fmt.Sprintf("%s (measured %s)", c.Duration, r.RunLength().Round(time.Millisecond))},
		{"lease renew interval / leaseDurationSeconds", fmt.Sprintf("%s / %d", c.Network.RenewInterval, c.LeaseDurationSeconds())},
		{"network links", network.FormatLinks(c.Network.Links)},
		{"dropouts per robot-hour / deaths per robot-day", fmt.Sprintf("%g / %g", c.Network.DropoutsPerHour, c.Network.DeathsPerDay)},
		{"pod start delay", c.StartDelay.String()},
		{"robot losses at", joinDurations(c.LossAt)},
		{"context switches at", joinDurations(c.SwitchAt)},
		{"policy settle", c.Settle.String()},
		{"devices", formatDevices(c.Devices)},
		{"workloads (each ×2: roam + stock)", formatWorkloads(c.Workloads)},
		{"roam-detector extra flags", orNone(strings.Join(c.DetectorArgs, " "))},
		{"roam-scheduler config", c.SchedulerConfig + " + profile default-scheduler (default plugins)"},
		{"stock settings", "kube-controller-manager defaults: node-monitor-period 5 s, node-monitor-grace-period 50 s; tolerations from the API server: " + r.StockTolerations},
	}
	for _, row := range rows {
		p("| %s | %s |\n", row[0], strings.ReplaceAll(row[1], "|", "\\|"))
	}
	p("\n## Lost robots\n\n| robot | context | link | roam pods | stock pods | roam taint after | stock NoExecute taint after |\n|---|---|---|---|---|---|---|\n")
	for _, l := range r.Lost {
		p("| %s | %s | %s | %d | %d | %s | %s |\n", l.Name, l.Context, l.Link, l.RoamPods, l.StockPods, after(l.LastBeat, l.RoamTaint), after(l.LastBeat, l.StockTaint))
	}
	p("\n## Every displaced pod\n\nSeconds after the robot's last heartbeat (loss) or its label change (context); steps: the pod seen terminating or deleted / its replacement created / bound.\n\n| cause | robot | copy | pod | replaced by | on | seconds | steps |\n|---|---|---|---|---|---|---|---|\n")
	samples := append([]Sample(nil), r.Samples...)
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].Kind > samples[j].Kind })
	for _, s := range samples {
		secs := fmt.Sprintf("%.1f", s.Seconds)
		repl, node := s.Replacement, s.NewNode
		if !s.Replaced {
			secs, repl, node = "> "+secs+" (run ended)", "—", "—"
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Kind, s.Robot, s.Copy, s.Pod, repl, node, secs, steps(s))
	}
	if len(r.Switches) > 0 {
		p("\nContext switches: %s.\n", strings.Join(r.Switches, "; "))
	}
	p("\n## Pod deletions by reason\n\n")
	keys := make([]string, 0, len(r.Deletions))
	for k := range r.Deletions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	evictionAPI := false
	for _, k := range keys {
		p("- %s: %d\n", k, r.Deletions[k])
		evictionAPI = evictionAPI || strings.HasSuffix(k, "/EvictionByEvictionAPI")
	}
	if evictionAPI {
		p("\nEvictionByEvictionAPI is the reason the API server writes when it evicts a pod; roam-detector evicts context moves through the Eviction API and then restores RoamContextChanged, unless the pod is gone first.\n")
	}
	if len(charts) > 0 {
		p("\n## Charts\n\n")
		for _, ch := range charts {
			p("- %s\n", ch)
		}
	}
	p("\n_%s_\n", r.Label())
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) stockDeploymentsOnly() Figure {
	sts := map[string]bool{}
	for _, w := range r.Config.Workloads {
		if w.Kind == "StatefulSet" {
			sts[w.key(Stock)] = true
		}
	}
	sub := &Result{}
	for _, s := range r.Samples {
		if s.Kind == "loss" && s.Copy == Stock && !sts[s.Workload] {
			sub.Samples = append(sub.Samples, s)
		}
	}
	return sub.P99("loss", Stock)
}

// stockStayed counts the stock pods running on switched robots at the end.
func (r *Result) stockStayed() int { return r.stayed }

func after(base, t time.Time) string {
	if t.IsZero() {
		return "— (not within the run)"
	}
	return fmt.Sprintf("%.1f s", t.Sub(base).Seconds())
}

func orNone(s string) string {
	if s == "" {
		return "none (detector defaults)"
	}
	return s
}

func joinDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return orDash(strings.Join(parts, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func formatDevices(ds []Device) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%s ×%d on %.0f%% of each context", d.Resource, d.Units, 100*d.Share)
	}
	return strings.Join(parts, "; ")
}

func formatWorkloads(ws []Workload) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		extra := ""
		if w.ForceDelete {
			extra = ", forceDelete"
		}
		parts[i] = fmt.Sprintf("%s/%s %s ×%d (%s, %s%s)", w.Namespace, w.Name, w.Kind, w.Replicas, w.Context, w.Device, extra)
	}
	return strings.Join(parts, "; ")
}

// WriteFiles writes the report and the charts into dir and returns the
// report's path.
func (r *Result) WriteFiles(dir string) (string, error) {
	charts := []string{}
	cdf := filepath.Join(dir, "redeploy-cdf.svg")
	if err := os.WriteFile(cdf, []byte(r.CDFChart()), 0o644); err != nil {
		return "", fmt.Errorf("writing chart: %w", err)
	}
	charts = append(charts, "redeploy time CDF, roam vs stock: "+cdf)
	if len(r.Lost) > 0 {
		tl := filepath.Join(dir, "lost-robot-timeline.svg")
		if err := os.WriteFile(tl, []byte(r.TimelineChart()), 0o644); err != nil {
			return "", fmt.Errorf("writing chart: %w", err)
		}
		charts = append(charts, "timeline of "+r.timelineRobot().Name+": "+tl)
	}
	r.charts = charts
	path := filepath.Join(dir, "report.md")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("writing report: %w", err)
	}
	defer f.Close()
	if err := r.WriteMarkdown(f, charts); err != nil {
		return "", fmt.Errorf("writing report: %w", err)
	}
	return path, f.Close()
}

// Charts lists the chart files WriteFiles wrote.
func (r *Result) Charts() []string { return r.charts }

// steps formats a sample's evicted / created / bound seconds ("—" for a
// step not seen).
func steps(s Sample) string {
	parts := make([]string, 0, 3)
	for _, v := range []float64{s.Evicted, s.Created, s.Bound} {
		if v < 0 {
			parts = append(parts, "—")
		} else {
			parts = append(parts, fmt.Sprintf("%.1f", v))
		}
	}
	return strings.Join(parts, " / ")
}
