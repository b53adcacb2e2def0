// Command benchfleet measures roam-detector's cost at fleet scale (make
// bench-detector). By default it feeds N nodes' Lease renewals at 1 Hz through the
// same handler the Lease informer calls (detector.Source.OnLeaseUpdate) —
// not through an apiserver — while the decision loop ticks every 200 ms,
// and prints CPU (getrusage over a wall-clock window), RSS (VmRSS) and the
// time of one full sweep over all nodes. With -direct it measures direct
// heartbeats instead (see runDirect).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
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
	direct := flag.Bool("direct", false, "measure direct heartbeats (UDP on loopback) instead of Lease renewals")
	hz := flag.Int("hz", 10, "direct heartbeats per second per node")
	garbage := flag.Float64("garbage", 0, "direct: extra garbage datagrams, as a fraction of the heartbeats")
	sender := flag.Bool("sender", false, "internal: run as the direct benchmark's sending child process")
	target := flag.String("target", "", "internal: the sender's destination")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured process to this file")
	flag.Parse()
	if *cpuProfile != "" && !*sender {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchfleet: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	switch {
	case *sender:
		err = runSender(*target, *hz, *garbage, *window)
	case *direct:
		err = runDirect(*nodes, *hz, *garbage, *window, *settle, *tick)
	default:
		err = run(*nodes, *window, *settle, *tick)
	}
	if err != nil {
		pprof.StopCPUProfile()
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
	done := make(chan struct{}, 1)
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
	st, err := measure(core, reg, tick, settle, window)
	close(stop)
	<-done
	if err != nil {
		return err
	}
	fmt.Printf("parameters: %d nodes, 4 s leases renewed at 1 Hz through detector.Source.OnLeaseUpdate, tick %v, window %v, GOMAXPROCS default\n", n, tick, window.Round(time.Second))
	st.print()
	fmt.Printf("detector %d nodes @1Hz: cpu %.1f%% of one core, rss %.0f MB, sweep %d us\n", n, st.cpu, st.rss, st.p50.Microseconds())
	return nil
}

// stats is what measure finds.
type stats struct {
	cpu, rss         float64 // % of one core, MB
	p50, p99, max    time.Duration
	sweeps           int
	heartbeats, perS float64
	suspicions       int
}

func (st stats) print() {
	fmt.Printf("sweeps: %d, p50 %d us, p99 %d us, max %d us; heartbeats in window %.0f (%.0f/s); suspicions of live nodes in window: %d\n",
		st.sweeps, st.p50.Microseconds(), st.p99.Microseconds(), st.max.Microseconds(), st.heartbeats, st.perS, st.suspicions)
}

// measure ticks core every tick while heartbeats are fed elsewhere, and
// measures the process's CPU and RSS over window after settle, and every
// sweep in it.
func measure(core *detector.Core, reg *prometheus.Registry, tick, settle, window time.Duration) (stats, error) {
	stop := make(chan struct{})
	sweeps := make(chan []time.Duration, 1)
	var suspicions int
	go func() {
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
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	time.Sleep(settle)
	c0, err := cpuTime()
	if err != nil {
		return stats{}, err
	}
	h0 := counterValue(reg, "roam_heartbeats_total")
	w0 := time.Now()
	time.Sleep(window)
	c1, err := cpuTime()
	if err != nil {
		return stats{}, err
	}
	wall := time.Since(w0)
	h1 := counterValue(reg, "roam_heartbeats_total")
	rss, err := rssMB()
	if err != nil {
		return stats{}, err
	}
	close(stop)
	d := <-sweeps
	if len(d) == 0 {
		return stats{}, fmt.Errorf("no sweep measured")
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return stats{cpu: float64(c1-c0) / float64(wall) * 100, rss: rss, sweeps: len(d),
		p50: d[len(d)/2], p99: d[len(d)*99/100], max: d[len(d)-1],
		heartbeats: h1 - h0, perS: (h1 - h0) / wall.Seconds(), suspicions: suspicions}, nil
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
