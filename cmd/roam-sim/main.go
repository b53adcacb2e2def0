// Command roam-sim simulates a robot fleet and measures roam side by side
// with stock Kubernetes. `--mode virtual` runs the network model and the
// detectors in virtual time (no cluster); `--mode cluster` (what `make demo`
// runs) drives a real control plane.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roam-dev/roam/sim/network"
	"github.com/roam-dev/roam/sim/virtual"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "roam-sim:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("roam-sim", flag.ContinueOnError)
	v := virtual.DefaultConfig()
	mode := fs.String("mode", "virtual", "virtual (network model and detectors in virtual time) or cluster (a real control plane)")
	report := fs.String("report", "", "also write the Markdown report to this file (default roam-sim-<mode>-report.md)")
	fs.Uint64Var(&v.Seed, "seed", v.Seed, "random seed: the same seed gives the same figures")
	fs.IntVar(&v.Robots, "robots", v.Robots, "number of robots")
	fs.DurationVar(&v.Duration, "duration", v.Duration, "simulated time")
	model := fs.String("model", "default", "network model: "+strings.Join(network.ModelNames(), ", ")+" (docs/simulator.md); the network flags below override its parameters")
	fs.DurationVar(&v.Network.RenewInterval, "renew-interval", v.Network.RenewInterval, "kubelet Lease renew interval (nodeLeaseDurationSeconds / 4)")
	links := fs.String("links", network.FormatLinks(v.Network.Links), "link classes: name:share:latency=D,jitter=normal|lognormal|pareto,scale=D,shape=F,loss=P,bursts=N (blackouts per hour),burstmean=D;...")
	fs.Float64Var(&v.Network.DropoutsPerHour, "dropouts-per-hour", v.Network.DropoutsPerHour, "per robot: how often a robot leaves the network")
	fs.DurationVar(&v.Network.DropoutMedian, "dropout-median", v.Network.DropoutMedian, "median dropout length (log-normal)")
	fs.DurationVar(&v.Network.DropoutMin, "dropout-min", v.Network.DropoutMin, "shortest dropout")
	fs.Float64Var(&v.Network.DeathsPerDay, "deaths-per-day", v.Network.DeathsPerDay, "per robot: how often a robot dies")
	fs.DurationVar(&v.Network.RepairTime, "repair-time", v.Network.RepairTime, "how long a dead robot stays dead")
	fs.Float64Var(&v.Detector.Threshold, "phi-threshold", v.Detector.Threshold, "roam's suspicion threshold (roam-detector --phi-threshold)")
	fs.IntVar(&v.Detector.Phi.Window, "phi-window", v.Detector.Phi.Window, "phi window in intervals")
	fs.DurationVar(&v.Detector.Phi.MinStdDev, "phi-min-stddev", v.Detector.Phi.MinStdDev, "phi standard deviation floor")
	fs.DurationVar(&v.Detector.Phi.AcceptablePause, "phi-acceptable-pause", v.Detector.Phi.AcceptablePause, "phi acceptable pause (0: none)")
	fs.DurationVar(&v.Detector.EvictionConfirm, "eviction-confirm", v.Detector.EvictionConfirm, "roam-detector --eviction-confirm: the headline's false evictions (0: evict at suspicion)")
	fs.BoolVar(&v.Detector.Adaptive, "adaptive-eviction", v.Detector.Adaptive, "roam-detector --adaptive-eviction: per-robot eviction timeouts (the fixed rule also runs on the same trace for comparison)")
	fs.Float64Var(&v.Detector.Silence.Budget, "false-eviction-budget", v.Detector.Silence.Budget, "roam-detector --false-eviction-budget (per 1000 robot-hours); also the budget of the eviction bound")
	fs.DurationVar(&v.Detector.Silence.Floor, "eviction-timeout-floor", v.Detector.Silence.Floor, "roam-detector --eviction-timeout-floor")
	fs.DurationVar(&v.Detector.Silence.Ceiling, "eviction-timeout-ceiling", v.Detector.Silence.Ceiling, "roam-detector --eviction-timeout-ceiling")
	fs.DurationVar(&v.Detector.Silence.HalfLife, "silence-half-life", v.Detector.Silence.HalfLife, "roam-detector --silence-half-life")
	fs.IntVar(&v.Detector.RecoverHeartbeats, "recover-heartbeats", v.Detector.RecoverHeartbeats, "roam-detector --recover-heartbeats")
	fs.DurationVar(&v.Detector.Warmup, "warmup", v.Detector.Warmup, "roam-detector --warmup")
	fs.DurationVar(&v.Tick, "tick", v.Tick, "how often roam-detector evaluates phi")
	sweep := fs.String("sweep", joinFloats(v.Sweep), "phi thresholds for the sweep table, e.g. 4,6,10,12 (each costs one more detector per robot)")
	evictAfter := fs.String("evict-after", joinDurations(v.EvictAfter), "further eviction confirmations (roam-detector --eviction-confirm) for the evictions table, e.g. 0,400ms,1s (each costs one more detector per robot)")
	fs.DurationVar(&v.StockGrace, "stock-grace", v.StockGrace, "stock node-monitor-grace-period")
	fs.DurationVar(&v.StockPeriod, "stock-period", v.StockPeriod, "stock node-monitor-period")
	fs.DurationVar(&v.MinLoss, "min-loss", v.MinLoss, "detection latency is measured over outages at least this long")
	fs.IntVar(&v.Workers, "workers", 0, "parallel workers (0: GOMAXPROCS)")
	fs.Float64Var(&v.Network.SpikesPerHour, "spikes-per-hour", v.Network.SpikesPerHour, "per robot: how often a delay spike (a slow period delaying every packet sent in it) begins (0: none)")
	fs.DurationVar(&v.Network.SpikeLength, "spike-length", v.Network.SpikeLength, "mean length of a delay spike (exponential)")
	fs.DurationVar(&v.Network.SpikeDelay, "spike-delay", v.Network.SpikeDelay, "mean extra delay of the packets in a spike (exponential, one draw per spike)")
	fs.IntVar(&v.DirectRobots, "direct-robots", v.DirectRobots, "also run the first this many robots with direct heartbeats (0: off; each costs ten Lease paths' work)")
	fs.DurationVar(&v.DirectInterval, "direct-interval", v.DirectInterval, "roam-agent --heartbeat-interval of the direct path")
	fs.DurationVar(&v.DirectLeaseInterval, "direct-lease-interval", v.DirectLeaseInterval, "Lease renew interval of robots with the agent (the kubelet's default 10 s)")
	fs.DurationVar(&v.Detector.DirectPhi.MinStdDev, "direct-phi-min-stddev", v.Detector.DirectPhi.MinStdDev, "standard deviation floor of the direct window")
	fs.DurationVar(&v.Detector.DirectPhi.AcceptablePause, "direct-phi-acceptable-pause", v.Detector.DirectPhi.AcceptablePause, "acceptable pause of the direct window (0: none)")
	fs.Float64Var(&v.GoalFalseEvictionsPer1000h, "bound-false-evictions-per-1000h", v.GoalFalseEvictionsPer1000h, "false-eviction budget of the direct path's hindsight bound (per 1000 robot-hours)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the virtual run to this file (read it with go tool pprof)")
	fs.Float64Var(&v.GoalFalsePer1000h, "bound-false-per-1000h", v.GoalFalsePer1000h, "false-suspicion budget of the report's hindsight bound (per 1000 robot-hours)")
	cf := addClusterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if v.Network, err = withModel(fs, *model, v.Network); err != nil {
		return err
	}
	v.ModelName = *model
	if set := flagsSet(fs); set["links"] || *model == "default" {
		if v.Network.Links, err = network.ParseLinks(*links); err != nil {
			return fmt.Errorf("--links: %w", err)
		}
	}
	if v.Sweep, err = parseFloats(*sweep); err != nil {
		return fmt.Errorf("--sweep: %w", err)
	}
	if v.EvictAfter, err = parseDurations(*evictAfter); err != nil {
		return fmt.Errorf("--evict-after: %w", err)
	}
	if *report == "" {
		*report = "roam-sim-" + *mode + "-report.md"
	}
	switch *mode {
	case "virtual":
		return runVirtual(ctx, v, *report, *cpuProfile, stdout)
	case "cluster":
		return runCluster(ctx, fs, v, cf, *report, stdout)
	default:
		return fmt.Errorf("--mode %q: want virtual or cluster", *mode)
	}
}

func runVirtual(ctx context.Context, cfg virtual.Config, reportPath, cpuProfile string, stdout io.Writer) error {
	fmt.Fprintf(os.Stderr, "roam-sim: %d robots × %s in virtual time (seed %d)…\n", cfg.Robots, cfg.Duration, cfg.Seed)
	if cpuProfile != "" {
		pf, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	done := make(chan struct{})
	var res *virtual.Result
	var err error
	go func() { res, err = virtual.Run(cfg); close(done) }()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			fmt.Fprintf(os.Stderr, "\r  running… %s", time.Since(start).Round(time.Second))
		case <-done:
			waiting = false
		}
	}
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	f, err := os.Create(reportPath)
	if err != nil {
		return fmt.Errorf("creating report: %w", err)
	}
	defer f.Close()
	if err := res.WriteMarkdown(io.MultiWriter(stdout, f)); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "roam-sim: report written to %s\n", reportPath)
	return f.Close()
}

func joinFloats(fs []float64) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// flagsSet is the set of flags given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// withModel is the named network model with the network flags given on
// the command line (in flagged) applied over it; --links is applied by
// the caller.
func withModel(fs *flag.FlagSet, name string, flagged network.Model) (network.Model, error) {
	m, err := network.NamedModel(name)
	if err != nil {
		return m, fmt.Errorf("--model: %w", err)
	}
	set := flagsSet(fs)
	for flagName, apply := range map[string]func(){
		"renew-interval":    func() { m.RenewInterval = flagged.RenewInterval },
		"dropouts-per-hour": func() { m.DropoutsPerHour = flagged.DropoutsPerHour },
		"dropout-median":    func() { m.DropoutMedian = flagged.DropoutMedian },
		"dropout-min":       func() { m.DropoutMin = flagged.DropoutMin },
		"deaths-per-day":    func() { m.DeathsPerDay = flagged.DeathsPerDay },
		"repair-time":       func() { m.RepairTime = flagged.RepairTime },
	} {
		if set[flagName] {
			apply()
		}
	}
	return m, nil
}
