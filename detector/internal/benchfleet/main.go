// Command benchfleet measures roam-detector's cost at fleet scale (make
// bench-detector): it feeds N nodes' Lease renewals at 1 Hz through the
// same handler the Lease informer calls (detector.Source.OnLeaseUpdate) —
// not through an apiserver — while the decision loop ticks every 200 ms,
// and prints CPU (getrusage over a wall-clock window), RSS (VmRSS) and the
// time of one full sweep over all nodes.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector"
)

func main() {
	nodes := flag.Int("nodes", 10000, "number of nodes")
	window := flag.Duration("duration", 10*time.Second, "measured wall-clock window")
	settle := flag.Duration("settle", 3*time.Second, "unmeasured run-in (covers the warm-up)")
	tick := flag.Duration("tick", detector.DefaultTick, "decision-loop tick")
	flag.Parse()
	if err := run(*nodes, *window, *settle, *tick); err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func rssMB() (float64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", f[1], err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

func run(n int, window, settle, tick time.Duration) error {
	if n <= 0 {
		return fmt.Errorf("-nodes %d must be positive", n)
	}
	reg := prometheus.NewRegistry()
	metrics, err := detector.NewMetrics(reg)
	if err != nil {
		return err
	}
	clk := clock.RealClock{}
	// Defaults everywhere except a shorter warm-up, so the measured window
	// sees the steady state sooner.
	core, err := detector.NewCore(benchCoreConfig(), clk.Now(), metrics)
	if err != nil {
		return err
	}
	src := detector.NewSource(core, clk, func(string) bool { return true }, func() bool { return true })

	// Two versions of each node's Lease (as an informer's old and new
	// objects), renewTime differing, 4 s lease → 1 s renewals.
	dur := int32(4)
	type pair struct{ a, b *coordinationv1.Lease }
	leases := make([]pair, n)
	base := time.Now()
	for i := range leases {
		mk := func(off time.Duration) *coordinationv1.Lease {
			rt := metav1.NewMicroTime(base.Add(off))
			name := fmt.Sprintf("robot-%05d", i)
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: detector.NodeLeaseNamespace},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &dur, RenewTime: &rt}}
		}
		leases[i] = pair{mk(0), mk(time.Second)}
		src.OnLeaseAdd(leases[i].a)
	}

	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	// Heartbeats: every 10 ms one hundredth of the fleet renews, so every
	// node renews once a second.
	// Heartbeats: every 10 ms one hundredth of the fleet renews, so every
	// node renews once a second; slots missed while the machine was busy
	// are delivered late rather than dropped.
	go func() {
		defer func() { done <- struct{}{} }()
		const slots = 100
		slotDur := time.Second / slots
		t := time.NewTicker(slotDur)
		defer t.Stop()
		start := time.Now()
		delivered := 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			due := int(time.Since(start) / slotDur)
			for ; delivered < due; delivered++ {
				slot, flip := delivered%slots, (delivered/slots)%2 == 1
				lo, hi := slot*n/slots, (slot+1)*n/slots
				for i := lo; i < hi; i++ {
					p := leases[i]
					if flip {
						src.OnLeaseUpdate(p.b, p.a)
					} else {
						src.OnLeaseUpdate(p.a, p.b)
					}
				}
			}
		}
	}()
	sweeps := make(chan []time.Duration, 1)
	var suspicions int
	go func() {
		defer func() { done <- struct{}{} }()
		t := time.NewTicker(tick)
		defer t.Stop()
		var buf []detector.Intent
		var d []time.Duration
		measure := time.Now().Add(settle)
		for {
			select {
			case <-stop:
				sweeps <- d
				return
			case <-t.C:
			}
			start := time.Now()
			buf = core.Tick(start, buf[:0])
			el := time.Since(start)
			if start.After(measure) {
				d = append(d, el)
				for _, in := range buf {
					if in.Kind == detector.IntentSuspect {
						suspicions++
					}
				}
			}
		}
	}()

	time.Sleep(settle)
	c0, err := cpuTime()
	if err != nil {
		return err
	}
	h0 := counterValue(reg, "roam_heartbeats_total")
	w0 := time.Now()
	time.Sleep(window)
	c1, err := cpuTime()
	if err != nil {
		return err
	}
	wall := time.Since(w0)
	h1 := counterValue(reg, "roam_heartbeats_total")
	rss, err := rssMB()
	if err != nil {
		return err
	}
	close(stop)
	<-done
	<-done
	d := <-sweeps
	if len(d) == 0 {
		return fmt.Errorf("no sweep measured")
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p50, p99, mx := d[len(d)/2], d[len(d)*99/100], d[len(d)-1]
	cpu := float64(c1-c0) / float64(wall) * 100

	fmt.Printf("parameters: %d nodes, 4 s leases renewed at 1 Hz through detector.Source.OnLeaseUpdate, tick %v, window %v, GOMAXPROCS default\n", n, tick, window.Round(time.Second))
	fmt.Printf("sweeps: %d, p50 %d us, p99 %d us, max %d us; heartbeats in window %.0f (%.0f/s); suspicions of live nodes in window: %d\n",
		len(d), p50.Microseconds(), p99.Microseconds(), mx.Microseconds(), h1-h0, (h1-h0)/wall.Seconds(), suspicions)
	fmt.Printf("detector %d nodes @1Hz: cpu %.1f%% of one core, rss %.0f MB, sweep %d us\n", n, cpu, rss, p50.Microseconds())
	return nil
}

func counterValue(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// benchCoreConfig is the default configuration with a short warm-up.
func benchCoreConfig() detector.CoreConfig {
	c := detector.DefaultCoreConfig()
	c.Warmup = 2 * time.Second
	return c
}
