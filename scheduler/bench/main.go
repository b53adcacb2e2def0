// Command bench measures roam-scheduler's scheduling throughput against a
// real kube-apiserver (etcd + kube-apiserver from bin/), in-process: the
// roam profile (manifests/scheduler/config.yaml, every pod governed by the
// example policy of docs/policies.md and carrying a target) against the default
// profile, on the same nodes, in the same run. `make bench-scheduler` runs
// it; its last line is
//
//	roam/default throughput ratio: R (roam X pods/s, default Y pods/s, N nodes, P pods)
//
// Throughput is measured as kube-scheduler's scheduler_perf does it:
// scheduled pods per second over the window from the first to the last
// binding the bench's watch observes, all pods created before the
// scheduler starts. An uncounted run of the default profile comes first
// (-warmup), since a new cluster's first run measured faster than the rest.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/server"
)

type options struct {
	nodes, pods int
	config      string
	seed        int64
	workers     int
	timeout     time.Duration
	cpuprofile  string
	order       []string
	// ungoverned pods carry neither the policy's app label nor a target:
	// RoamPolicy skips them, so the roam profile measures kube-scheduler's
	// and Coscheduling's cost alone (a diagnostic, not the headline).
	ungoverned bool
	// warmup runs the default profile once, uncounted, before the
	// measured runs: a new cluster's first run is faster than the rest.
	warmup bool
}

func main() {
	var o options
	flag.IntVar(&o.nodes, "nodes", 5000, "nodes (robots) to create")
	flag.IntVar(&o.pods, "pods", 10000, "pods to schedule per profile")
	flag.StringVar(&o.config, "config", defaultConfigPath(), "roam-scheduler's KubeSchedulerConfiguration")
	flag.Int64Var(&o.seed, "seed", 1, "seed for node locations and pod targets")
	flag.IntVar(&o.workers, "workers", 32, "concurrent API writers when creating objects")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "give up after this long")
	flag.BoolVar(&o.ungoverned, "ungoverned", false, "diagnostic: pods no policy governs and without roam annotations, so the roam profile's RoamPolicy skips them (the cost of the profile without roam's work)")
	flag.BoolVar(&o.warmup, "warmup", true, "schedule the pods once with the default profile before the measured runs, and discard that run (on a new cluster the first run measured up to 14 % faster than the rest, favouring whichever profile -order puts first)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of each profile's scheduling to PREFIX-<profile>.pprof")
	order := flag.String("order", "default,roam,roam,default,default,roam,roam,default", "profiles to measure, in order; each profile's throughput is the mean of its runs (the default, ABBA twice, cancels drift between earlier and later runs and averages four runs of each)")
	logFile := flag.String("scheduler-log", filepath.Join(os.TempDir(), "bench-scheduler.log"), "where the schedulers' logs go")
	klog.InitFlags(nil)
	flag.Parse()
	// Keep the terminal for the figures: the last line is the ratio.
	for name, value := range map[string]string{"logtostderr": "false", "alsologtostderr": "false",
		"stderrthreshold": "FATAL", "log_file": *logFile} {
		_ = flag.Set(name, value)
	}
	for _, p := range strings.Split(*order, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.order = append(o.order, p)
		}
	}
	if o.nodes < 1 || o.pods < 2 || o.workers < 1 {
		fmt.Fprintln(os.Stderr, "bench: -nodes must be ≥ 1, -pods ≥ 2, -workers ≥ 1")
		os.Exit(2)
	}
	if err := checkOrder(o.order); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, o.timeout)
	defer cancelTimeout()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func defaultConfigPath() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "manifests/scheduler/config.yaml"
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "manifests", "scheduler", "config.yaml")
}

// defaultProfile is kube-scheduler's default profile, nothing else.
const defaultProfile = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
`

func run(ctx context.Context, o options) error {
	fmt.Printf("starting etcd + kube-apiserver (scheduler logs: %s)\n", flag.Lookup("log_file").Value)
	cp, err := controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	if err := controlplane.InstallCRDs(ctx, cfg, filepath.Join(filepath.Dir(o.config), "..", "crds", "scheduling.x-k8s.io_podgroups.yaml")); err != nil {
		return err
	}
	for _, ns := range []string{"roam-system", "bench"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	// The example policy of docs/policies.md governs every bench pod.
	policy := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "medical-assistant", Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data: map[string]string{
			"match":   `pod.labels["app"] == "medical-assistant"`,
			"require": `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`,
			"score":   `10 * node.devices["roam.dev/camera"] - distance(node.location, pod.target)`,
			"weight":  "2",
		},
	}
	if _, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating policy: %w", err)
	}
	rng := rand.New(rand.NewSource(o.seed))
	locations := make([]string, o.nodes)
	for i := range locations {
		locations[i] = fmt.Sprintf("%.1f,%.1f", rng.Float64()*1000, rng.Float64()*1000)
	}
	start := time.Now()
	if err := parallel(ctx, o.nodes, o.workers, func(i int) error {
		_, err := cs.CoreV1().Nodes().Create(ctx, benchNode(i, locations[i]), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating nodes: %w", err)
	}
	fmt.Printf("created %d nodes in %.1fs\n", o.nodes, time.Since(start).Seconds())

	defPath, cleanup, err := writeTemp(defaultProfile)
	if err != nil {
		return err
	}
	defer cleanup()
	targets := make([]string, o.pods)
	for i := range targets {
		targets[i] = fmt.Sprintf("%.1f,%.1f", rng.Float64()*1000, rng.Float64()*1000)
	}
	off := false
	over := server.Overrides{Kubeconfig: cp.Kubeconfig, LeaderElect: &off, QPS: 5000, Burst: 5000}
	profiles := map[string]struct {
		schedulerName string
		cfg           server.Config
	}{
		"default": {v1.DefaultSchedulerName, server.Config{ConfigFile: defPath, Overrides: over}},
		"roam":    {"roam-scheduler", server.Config{ConfigFile: o.config, Overrides: over}},
	}
	if o.warmup {
		p, wo := profiles["default"], o
		wo.cpuprofile = ""
		fmt.Println("warm-up: the default profile once, not counted")
		if _, _, err := measure(ctx, cs, wo, "warm-up", p.schedulerName, p.cfg, targets); err != nil {
			return err
		}
	}
	rates, cpus := map[string][]float64{}, map[string][]float64{}
	var runRates []float64 // in run order
	for i, name := range o.order {
		p := profiles[name] // checkOrder allowed only these
		rate, cpu, err := measure(ctx, cs, o, fmt.Sprintf("%s-%d", name, i+1), p.schedulerName, p.cfg, targets)
		if err != nil {
			return err
		}
		rates[name] = append(rates[name], rate)
		cpus[name] = append(cpus[name], cpu)
		runRates = append(runRates, rate)
	}
	defaultRate, roamRate := mean(rates["default"]), mean(rates["roam"])
	// Runs next to each other see about the same machine, so the spread of
	// their ratios shows how far one ratio can be trusted on this machine.
	if pairs := pairRatios(o.order, runRates); len(pairs) > 0 {
		fmt.Printf("pair ratios (roam/default of runs 1-2, 3-4, ...): %s (min %.2f, max %.2f)\n",
			formatRatios(pairs), slices.Min(pairs), slices.Max(pairs))
	}
	// The scheduler's CPU per pod: on a small machine where etcd and the
	// API server take their share, throughput follows it closely.
	fmt.Printf("scheduler cpu per pod: roam %.2f ms, default %.2f ms (default/roam %.2f)\n",
		mean(cpus["roam"]), mean(cpus["default"]), mean(cpus["default"])/mean(cpus["roam"]))
	if o.ungoverned {
		fmt.Println("(-ungoverned: no pod was governed by a policy; the ratio below is the roam profile's cost without roam's work, not the headline)")
	}
	fmt.Printf("roam/default throughput ratio: %.2f (roam %.0f pods/s, default %.0f pods/s, %d nodes, %d pods)\n",
		roamRate/defaultRate, roamRate, defaultRate, o.nodes, o.pods)
	return nil
}

// checkOrder reports what is wrong with -order's runs: each must name a
// profile, default or roam, and both must run, before any cluster starts.
func checkOrder(order []string) error {
	seen := map[string]bool{}
	for i, name := range order {
		if name != "default" && name != "roam" {
			return fmt.Errorf("-order: run %d names unknown profile %q (want default or roam)", i+1, name)
		}
		seen[name] = true
	}
	if !seen["default"] || !seen["roam"] {
		return fmt.Errorf("-order %q must measure both default and roam", strings.Join(order, ","))
	}
	return nil
}

// pairRatios returns roam's throughput over default's for each pair of
// consecutive runs (runs 1 and 2, 3 and 4, ...) that measured one of each
// profile; rates are the runs' throughputs in order.
func pairRatios(order []string, rates []float64) []float64 {
	var out []float64
	for i := 0; i+1 < len(order) && i+1 < len(rates); i += 2 {
		a, b := order[i], order[i+1]
		switch {
		case a == "roam" && b == "default":
			out = append(out, rates[i]/rates[i+1])
		case a == "default" && b == "roam":
			out = append(out, rates[i+1]/rates[i])
		}
	}
	return out
}

func formatRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, ", ")
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// benchNode is a hospital robot with cameras at a random location.
func benchNode(i int, loc string) *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("64Gi"),
		v1.ResourcePods: resource.MustParse("110"), "roam.dev/camera": resource.MustParse("8"),
	}
	name := fmt.Sprintf("robot-%05d", i)
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name, policies.ContextLabel: "hospital",
				policies.ZoneLabel: fmt.Sprintf("ward-%d", i%10)},
			Annotations: map[string]string{policies.LocationAnnotation: loc}},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

// benchPod is the same pod for both profiles but its scheduler.
func benchPod(i int, schedulerName, target string) *v1.Pod {
	req := v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi"),
		"roam.dev/camera": resource.MustParse("1")}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", schedulerName, i), Namespace: "bench",
			Labels:      map[string]string{"app": "medical-assistant"},
			Annotations: map[string]string{policies.TargetAnnotation: target}},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			// No node lifecycle controller removes the not-ready taint the
			// apiserver puts on new nodes.
			Tolerations: []v1.Toleration{{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
			Containers: []v1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: req, Limits: v1.ResourceList{"roam.dev/camera": resource.MustParse("1")}}}},
		},
	}
}

// measure creates the pods of one profile, starts its scheduler, and
// returns pods/s between the first and the last observed binding. It
// deletes the pods and stops the scheduler before returning.
func measure(ctx context.Context, cs kubernetes.Interface, o options, label, schedulerName string, cfg server.Config, targets []string) (rate, cpuMsPerPod float64, err error) {
	var bound atomic.Int64
	var mu sync.Mutex
	var first, last time.Time
	done := make(chan struct{})
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("bench"))
	inf := factory.Core().V1().Pods().Informer()
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			oldPod, newPod := oldObj.(*v1.Pod), newObj.(*v1.Pod)
			if oldPod.Spec.NodeName != "" || newPod.Spec.NodeName == "" || newPod.Spec.SchedulerName != schedulerName {
				return
			}
			now := time.Now()
			mu.Lock()
			if first.IsZero() {
				first = now
			}
			last = now
			mu.Unlock()
			if bound.Add(1) == int64(o.pods) {
				close(done)
			}
		},
	})
	if err != nil {
		return 0, 0, err
	}
	ictx, stopInformer := context.WithCancel(ctx)
	defer stopInformer()
	factory.Start(ictx.Done())
	factory.WaitForCacheSync(ictx.Done())

	start := time.Now()
	if err := parallel(ctx, o.pods, o.workers, func(i int) error {
		pod := benchPod(i, schedulerName, targets[i])
		if o.ungoverned {
			delete(pod.Labels, "app")
			delete(pod.Annotations, policies.TargetAnnotation)
		}
		_, err := cs.CoreV1().Pods("bench").Create(ctx, pod, metav1.CreateOptions{})
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("%s: creating pods: %w", label, err)
	}
	fmt.Printf("%s: created %d pods in %.1fs; starting the scheduler\n", label, o.pods, time.Since(start).Seconds())
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile + "-" + label + ".pprof")
		if err != nil {
			return 0, 0, err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	sched, err := server.Start(klog.NewContext(ctx, klog.Background()), cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", label, err)
	}
	select {
	case <-done:
	case <-sched.Done():
		return 0, 0, fmt.Errorf("%s: scheduler stopped with %d/%d pods bound", label, bound.Load(), o.pods)
	case <-ctx.Done():
		_ = sched.Stop()
		return 0, 0, fmt.Errorf("%s: %d/%d pods bound: %w", label, bound.Load(), o.pods, ctx.Err())
	}
	cpu := cpuTime() - cpu0
	if err := sched.Stop(); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", label, err)
	}
	mu.Lock()
	window := last.Sub(first)
	mu.Unlock()
	rate = float64(o.pods-1) / window.Seconds()
	cpuMs := float64(cpu.Microseconds()) / 1000 / float64(o.pods)
	// CPU of this process (scheduler + the bench's watch) from scheduler
	// start to the last binding: on a shared machine a steadier measure
	// of the scheduler's cost than wall-clock throughput.
	fmt.Printf("%s: %d pods bound in %.2fs: %.0f pods/s; scheduler process cpu %.2f ms/pod\n",
		label, o.pods, window.Seconds(), rate, cpuMs)

	// Clean up so the next profile starts from empty nodes.
	if err := deleteAllPods(ctx, cs); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", label, err)
	}
	return rate, cpuMs, nil
}

// deleteAllPods deletes the bench's pods and waits until they are gone. On
// a loaded machine deleting 10,000 pods can outlast the API server's
// request timeout while the deletion goes on, so a timeout is not an
// error: it waits, and asks again every minute.
func deleteAllPods(ctx context.Context, cs kubernetes.Interface) error {
	zero := int64(0)
	deleteAll := func() error {
		err := cs.CoreV1().Pods("bench").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		if apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) {
			return nil
		}
		return err
	}
	if err := deleteAll(); err != nil {
		return fmt.Errorf("deleting pods: %w", err)
	}
	asked := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods("bench").List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil || len(l.Items) == 0 {
			return err == nil, nil
		}
		if time.Since(asked) > time.Minute {
			asked = time.Now()
			if err := deleteAll(); err != nil {
				return false, fmt.Errorf("deleting pods: %w", err)
			}
		}
		return false, nil
	}); err != nil {
		return fmt.Errorf("pods not deleted: %w", err)
	}
	return nil
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs fn(0..n-1) on workers goroutines; the first error wins.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

func writeTemp(content string) (string, func(), error) {
	f, err := os.CreateTemp("", "bench-scheduler-*.yaml")
	if err != nil {
		return "", nil, fmt.Errorf("writing config: %w", err)
	}
	name := f.Name()
	cleanup := func() { _ = os.Remove(name) }
	if _, err := f.WriteString(content); err != nil {
		_ = f.Close()
		cleanup()
		return "", nil, fmt.Errorf("writing config: %w", err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("writing config: %w", err)
	}
	return name, cleanup, nil
}
