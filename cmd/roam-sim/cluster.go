package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roam-dev/roam/sim/cluster"
	"github.com/roam-dev/roam/sim/virtual"
)

// clusterFlags are the flags only --mode cluster reads.
type clusterFlags struct {
	c        cluster.Config
	lossAt   string
	switchAt string
	replicas int
	stsRepl  int
	detector string
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	f := &clusterFlags{c: cluster.DefaultConfig()}
	fs.DurationVar(&f.c.StartDelay, "start-delay", f.c.StartDelay, "cluster: how long the simulated kubelet takes to start a bound pod")
	fs.DurationVar(&f.c.Settle, "settle", f.c.Settle, "cluster: the policies' settle time before a context-change eviction")
	f.lossAt = joinDurations(f.c.LossAt)
	fs.StringVar(&f.lossAt, "loss-at", f.lossAt, "cluster: times after the start at which a robot running pods of both copies is lost for good")
	f.switchAt = joinDurations(f.c.SwitchAt)
	fs.StringVar(&f.switchAt, "switch-at", f.switchAt, "cluster: times after the start at which a robot running a roam pod changes context")
	fs.IntVar(&f.replicas, "replicas", int(f.c.Workloads[0].Replicas), "cluster: replicas of each Deployment copy")
	fs.IntVar(&f.stsRepl, "statefulset-replicas", int(f.c.Workloads[2].Replicas), "cluster: replicas of each StatefulSet copy")
	fs.StringVar(&f.c.OutDir, "out", f.c.OutDir, "cluster: directory for the report, SVG charts and child-process logs")
	fs.StringVar(&f.detector, "detector-args", "", "cluster: extra roam-detector flags, space-separated")
	return f
}

// runCluster runs --mode cluster. Shared flags keep their meaning; those
// whose virtual-mode defaults do not fit a real-time run (robots, duration,
// dropouts, deaths) take cluster defaults unless given.
func runCluster(ctx context.Context, fs *flag.FlagSet, v virtual.Config, f *clusterFlags, reportPath string, stdout io.Writer) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	c := f.c
	c.Seed = v.Seed
	if set["robots"] {
		c.Robots = v.Robots
	}
	if set["duration"] {
		c.Duration = v.Duration
	}
	dropouts, deaths := c.Network.DropoutsPerHour, c.Network.DeathsPerDay
	c.Network = v.Network
	if !set["dropouts-per-hour"] {
		c.Network.DropoutsPerHour = dropouts
	}
	if !set["deaths-per-day"] {
		c.Network.DeathsPerDay = deaths
	}
	var err error
	if c.LossAt, err = parseDurations(f.lossAt); err != nil {
		return fmt.Errorf("--loss-at: %w", err)
	}
	if c.SwitchAt, err = parseDurations(f.switchAt); err != nil {
		return fmt.Errorf("--switch-at: %w", err)
	}
	if f.replicas < 1 || f.stsRepl < 1 {
		return fmt.Errorf("--replicas and --statefulset-replicas must be ≥ 1")
	}
	c.Workloads = cluster.DefaultWorkloads(int32(f.replicas), int32(f.stsRepl))
	for flagName, detFlag := range map[string]string{"phi-threshold": "phi-threshold", "tick": "tick", "phi-window": "phi-window", "phi-min-stddev": "phi-min-stddev", "phi-acceptable-pause": "phi-acceptable-pause"} {
		if set[flagName] {
			c.DetectorArgs = append(c.DetectorArgs, "--"+detFlag+"="+fs.Lookup(flagName).Value.String())
		}
	}
	c.DetectorArgs = append(c.DetectorArgs, strings.Fields(f.detector)...)
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	c.WithRepoPaths(root)
	c.Status = os.Stderr
	fmt.Fprintf(os.Stderr, "roam-sim: cluster mode, %d robots for %s (seed %d)\n", c.Robots, c.Duration, c.Seed)
	c.GracefulSignals = true // main's context ends on the first Ctrl-C
	res, runErr := cluster.Run(ctx, c)
	interrupted := errors.Is(runErr, cluster.ErrInterrupted) && res != nil
	if runErr != nil && !interrupted {
		return runErr
	}
	dirReport, err := res.WriteFiles(c.OutDir)
	if err != nil {
		return err
	}
	out, err := os.Create(reportPath)
	if err != nil {
		return fmt.Errorf("creating report: %w", err)
	}
	defer out.Close()
	if err := res.WriteMarkdown(io.MultiWriter(stdout, out), res.Charts()); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "roam-sim: report written to %s and %s\n", reportPath, dirReport)
	if err := out.Close(); err != nil {
		return err
	}
	if interrupted {
		return fmt.Errorf("the report covers the %s before the interrupt: %w", res.RunLength().Round(time.Second), runErr)
	}
	return nil
}

func joinDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil {
			if n, nerr := strconv.ParseFloat(p, 64); nerr == nil {
				d = time.Duration(n * float64(time.Second))
			} else {
				return nil, err
			}
		}
		out = append(out, d)
	}
	return out, nil
}
