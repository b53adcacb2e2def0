// Command bench measures roam-scheduler's scheduling throughput against
// stock kube-scheduler on a real kube-apiserver (etcd + kube-apiserver
// from bin/), in-process, on two fleets of the same size:
//
//   - mixed: robots spread over three contexts (a third of them in a
//     hospital), each with its own number of cameras, lidars and arms.
//     roam-scheduler (manifests/scheduler/config.yaml) places pods the
//     example policy of docs/policies.md governs (require the hospital context and a
//     free camera; score cameras minus the distance to the pod's target);
//     stock kube-scheduler's default profile places the same pods with the
//     equivalent constraints stock can express: a nodeSelector on the
//     context label, the camera request, and a preferred node affinity for
//     the zone of the pod's target.
//   - homogeneous: every robot a hospital robot with 8 cameras, the same
//     governed pods for both profiles (the default profile ignores roam's
//     label and annotation): what roam's work costs over the default
//     profile's.
//
// `make bench-scheduler` runs it; its last two lines are
//
//	roam/stock throughput ratio: R (roam X pods/s, stock Y pods/s, N nodes, P pods)
//	roam/default overhead ratio: R (roam X ms, default Y ms of scheduler cpu per pod, ...)
//
// Throughput is measured as kube-scheduler's scheduler_perf does it:
// scheduled pods per second over the window from the first to the last
// binding the bench's watch observes, all pods created before the
// scheduler starts. The profiles' runs are interleaved (-order), and an
// uncounted run of the default profile comes first on each fleet
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
	fleets      []string
	// ungoverned pods carry neither the policy's app label nor a target:
	// RoamPolicy skips them, so the roam profile measures kube-scheduler's
	// and Coscheduling's cost alone (a diagnostic, not the headline).
	ungoverned bool
	// warmup runs the default profile once, uncounted, before the
	// measured runs of each fleet: a new cluster's first run is faster
	// than the rest.
	warmup bool
}

// Fleets.
const (
	fleetMixed       = "mixed"
	fleetHomogeneous = "homogeneous"
)

func main() {
	var o options
	flag.IntVar(&o.nodes, "nodes", 5000, "nodes (robots) in each fleet")
	flag.IntVar(&o.pods, "pods", 10000, "pods to schedule per profile run")
	flag.StringVar(&o.config, "config", defaultConfigPath(), "roam-scheduler's KubeSchedulerConfiguration")
	flag.Int64Var(&o.seed, "seed", 1, "seed for the robots' contexts, devices and locations and the pods' targets")
	flag.IntVar(&o.workers, "workers", 32, "concurrent API writers when creating objects")
	flag.DurationVar(&o.timeout, "timeout", 120*time.Minute, "give up after this long")
	flag.BoolVar(&o.ungoverned, "ungoverned", false, "diagnostic: pods no policy governs and without roam annotations or constraints, so the roam profile's RoamPolicy skips them (the cost of the profile without roam's work)")
	flag.BoolVar(&o.warmup, "warmup", true, "schedule the pods once with the default profile before each fleet's measured runs, and discard that run (a new cluster's first run measured up to 14 % faster than the rest, favouring whichever profile -order puts first)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of each run to PREFIX-<fleet>-<profile>-<run>.pprof")
	order := flag.String("order", "default,roam,roam,default,default,roam,roam,default", "profiles to measure on each fleet, in order (default: stock kube-scheduler's default profile; roam: roam-scheduler); each profile's throughput is the mean of its runs (the default, ABBA twice, cancels drift between earlier and later runs)")
	fleets := flag.String("fleets", fleetMixed+","+fleetHomogeneous, "fleets to measure, in order: mixed (roam against stock with equivalent constraints) and homogeneous (roam's overhead over the default profile)")
	logFile := flag.String("scheduler-log", filepath.Join(os.TempDir(), "bench-scheduler.log"), "where the schedulers' logs go")
	klog.InitFlags(nil)
	flag.Parse()
	// Keep the terminal for the figures: the last lines are the ratios.
	for name, value := range map[string]string{"logtostderr": "false", "alsologtostderr": "false",
		"stderrthreshold": "FATAL", "log_file": *logFile} {
		_ = flag.Set(name, value)
	}
	o.order, o.fleets = splitList(*order), splitList(*fleets)
	if o.nodes < 1 || o.pods < 2 || o.workers < 1 {
		fmt.Fprintln(os.Stderr, "bench: -nodes must be ≥ 1, -pods ≥ 2, -workers ≥ 1")
		os.Exit(2)
	}
	for _, check := range []func() error{
		func() error { return checkOrder(o.order) },
		func() error { return checkFleets(o.fleets) },
		func() error { return checkCameras(o) },
	} {
		if err := check(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(2)
		}
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

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
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

// result is one fleet's measurement.
type result struct {
	rates, cpus map[string][]float64 // by profile, in run order
}

func (r result) rate(profile string) float64 { return mean(r.rates[profile]) }
func (r result) cpu(profile string) float64  { return mean(r.cpus[profile]) }

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
	// The example policy of docs/policies.md governs every roam pod.
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
	defPath, cleanup, err := writeTemp(defaultProfile)
	if err != nil {
		return err
	}
	defer cleanup()
	rng := rand.New(rand.NewSource(o.seed))
	targets := make([]point, o.pods)
	for i := range targets {
		targets[i] = point{rng.Float64() * siteSize, rng.Float64() * siteSize}
	}
	off := false
	over := server.Overrides{Kubeconfig: cp.Kubeconfig, LeaderElect: &off, QPS: 5000, Burst: 5000}
	profiles := map[string]profile{
		"default": {v1.DefaultSchedulerName, server.Config{ConfigFile: defPath, Overrides: over}},
		"roam":    {"roam-scheduler", server.Config{ConfigFile: o.config, Overrides: over}},
	}
	results := map[string]result{}
	for _, fleet := range o.fleets {
		res, err := measureFleet(ctx, cs, o, fleet, profiles, targets)
		if err != nil {
			return fmt.Errorf("%s fleet: %w", fleet, err)
		}
		results[fleet] = res
	}
	if o.ungoverned {
		fmt.Println("(-ungoverned: no pod was governed by a policy or constrained; the ratios below are the roam profile's cost without roam's work, not the headline)")
	}
	if r, ok := results[fleetMixed]; ok {
		fmt.Printf("roam/stock throughput ratio: %.2f (roam %.0f pods/s, stock %.0f pods/s, %d nodes, %d pods)\n",
			r.rate("roam")/r.rate("default"), r.rate("roam"), r.rate("default"), o.nodes, o.pods)
	}
	if r, ok := results[fleetHomogeneous]; ok {
		fmt.Printf("roam/default overhead ratio: %.2f (roam %.2f ms, default %.2f ms of scheduler cpu per pod; roam %.0f pods/s, default %.0f pods/s; %d nodes, %d pods)\n",
			r.cpu("roam")/r.cpu("default"), r.cpu("roam"), r.cpu("default"), r.rate("roam"), r.rate("default"), o.nodes, o.pods)
	}
	return nil
}

// profile is a scheduler configuration to measure.
type profile struct {
	schedulerName string
	cfg           server.Config
}

// measureFleet creates fleet's robots (replacing any others), then
// measures the profiles in o.order on them.
func measureFleet(ctx context.Context, cs kubernetes.Interface, o options, fleet string, profiles map[string]profile, targets []point) (result, error) {
	if err := cs.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return result{}, fmt.Errorf("deleting the previous fleet: %w", err)
	}
	robots := fleetRobots(fleet, o.nodes, o.seed)
	start := time.Now()
	if err := parallel(ctx, len(robots), o.workers, func(i int) error {
		_, err := cs.CoreV1().Nodes().Create(ctx, robots[i].node(), metav1.CreateOptions{})
		return err
	}); err != nil {
		return result{}, fmt.Errorf("creating nodes: %w", err)
	}
	fmt.Printf("%s fleet: created %d nodes in %.1fs\n", fleet, o.nodes, time.Since(start).Seconds())
	podsFor := func(p profile) func(i int) *v1.Pod {
		return func(i int) *v1.Pod {
			return benchPod(i, p.schedulerName, targets[i], fleet == fleetMixed && p.schedulerName != "roam-scheduler", o.ungoverned)
		}
	}
	if o.warmup {
		p, wo := profiles["default"], o
		wo.cpuprofile = ""
		fmt.Printf("%s fleet: warm-up, the default profile once, not counted\n", fleet)
		if _, _, err := measure(ctx, cs, wo, fleet+"-warm-up", p, podsFor(p)); err != nil {
			return result{}, err
		}
	}
	res := result{rates: map[string][]float64{}, cpus: map[string][]float64{}}
	var runRates []float64 // in run order
	for i, name := range o.order {
		p := profiles[name] // checkOrder allowed only these
		rate, cpu, err := measure(ctx, cs, o, fmt.Sprintf("%s-%s-%d", fleet, name, i+1), p, podsFor(p))
		if err != nil {
			return result{}, err
		}
		res.rates[name] = append(res.rates[name], rate)
		res.cpus[name] = append(res.cpus[name], cpu)
		runRates = append(runRates, rate)
	}
	// Runs next to each other see about the same machine, so the spread of
	// their ratios shows how far one ratio can be trusted on this machine.
	if pairs := pairRatios(o.order, runRates); len(pairs) > 0 {
		fmt.Printf("%s fleet: pair ratios (roam/default of runs 1-2, 3-4, ...): %s (min %.2f, max %.2f)\n",
			fleet, formatRatios(pairs), slices.Min(pairs), slices.Max(pairs))
	}
	rival := "default"
	if fleet == fleetMixed {
		rival = "stock"
	}
	// The scheduler's CPU per pod: on a small machine where etcd and the
	// API server take their share, throughput follows it closely.
	fmt.Printf("%s fleet: scheduler cpu per pod: roam %.2f ms, %s %.2f ms (roam/%s %.2f)\n",
		fleet, res.cpu("roam"), rival, res.cpu("default"), rival, res.cpu("roam")/res.cpu("default"))
	return res, nil
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

// checkFleets reports an unknown or repeated fleet.
func checkFleets(fleets []string) error {
	if len(fleets) == 0 {
		return fmt.Errorf("-fleets: name at least one of %s, %s", fleetMixed, fleetHomogeneous)
	}
	seen := map[string]bool{}
	for _, f := range fleets {
		if f != fleetMixed && f != fleetHomogeneous || seen[f] {
			return fmt.Errorf("-fleets: %q is unknown or repeated (want %s and/or %s)", f, fleetMixed, fleetHomogeneous)
		}
		seen[f] = true
	}
	return nil
}

// checkCameras reports a mixed fleet whose hospital robots have fewer
// cameras than a run has pods (each pod takes one): the run would never
// finish.
func checkCameras(o options) error {
	if !slices.Contains(o.fleets, fleetMixed) {
		return nil
	}
	cameras := 0
	for _, r := range fleetRobots(fleetMixed, o.nodes, o.seed) {
		if r.context == hospital {
			cameras += r.cameras
		}
	}
	if cameras < o.pods {
		return fmt.Errorf("the mixed fleet's %d nodes have %d cameras in the hospital context, fewer than -pods %d: use more nodes or fewer pods", o.nodes, cameras, o.pods)
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

const (
	hospital  = "hospital"
	siteSize  = 1000.0 // metres: the site is siteSize × siteSize, zones are strips zoneWidth wide
	zoneWidth = 100.0
)

type point struct{ x, y float64 }

func (p point) String() string { return fmt.Sprintf("%.1f,%.1f", p.x, p.y) }

// zone is the zone a point of the site lies in.
func (p point) zone() string { return fmt.Sprintf("zone-%d", int(min(p.x, siteSize-1)/zoneWidth)) }

// robot is one node of a fleet.
type robot struct {
	name, context         string
	location              point
	cameras, lidars, arms int
}

// fleetRobots returns fleet's n robots (seeded). The mixed fleet's
// contexts rotate hospital, store, warehouse (a third each) and each robot
// has 0..16 cameras (8 on average), 0..1 lidars and 0..2 arms; the
// homogeneous fleet's robots are all hospital robots with 8 cameras.
func fleetRobots(fleet string, n int, seed int64) []robot {
	rng := rand.New(rand.NewSource(seed))
	contexts := []string{hospital, "store", "warehouse"}
	out := make([]robot, n)
	for i := range out {
		r := robot{name: fmt.Sprintf("robot-%05d", i), location: point{rng.Float64() * siteSize, rng.Float64() * siteSize}}
		if fleet == fleetMixed {
			r.context, r.cameras, r.lidars, r.arms = contexts[i%len(contexts)], rng.Intn(17), rng.Intn(2), rng.Intn(3)
		} else {
			r.context, r.cameras = hospital, 8
		}
		out[i] = r
	}
	return out
}

// node is r as a Node.
func (r robot) node() *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110"),
		"roam.dev/camera": *resource.NewQuantity(int64(r.cameras), resource.DecimalSI),
	}
	for name, n := range map[v1.ResourceName]int{"roam.dev/lidar": r.lidars, "roam.dev/arm": r.arms} {
		if n > 0 {
			alloc[name] = *resource.NewQuantity(int64(n), resource.DecimalSI)
		}
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.name,
			Labels: map[string]string{"kubernetes.io/hostname": r.name, policies.ContextLabel: r.context,
				policies.ZoneLabel: r.location.zone()},
			Annotations: map[string]string{policies.LocationAnnotation: r.location.String()}},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

// benchPod is pod i for schedulerName: the policy's app label and a
// target, a camera. constrained adds what stock kube-scheduler needs to
// place it as the policy would: a nodeSelector on the hospital context and
// a preferred node affinity for the zone of its target. ungoverned drops
// the label, the target and the constraints.
func benchPod(i int, schedulerName string, target point, constrained, ungoverned bool) *v1.Pod {
	req := v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi"),
		"roam.dev/camera": resource.MustParse("1")}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", schedulerName, i), Namespace: "bench",
			Labels:      map[string]string{"app": "medical-assistant"},
			Annotations: map[string]string{policies.TargetAnnotation: target.String()}},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			// No node lifecycle controller removes the not-ready taint the
			// apiserver puts on new nodes.
			Tolerations: []v1.Toleration{{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
			Containers: []v1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: req, Limits: v1.ResourceList{"roam.dev/camera": resource.MustParse("1")}}}},
		},
	}
	switch {
	case ungoverned:
		pod.Labels, pod.Annotations = nil, nil
	case constrained:
		pod.Spec.NodeSelector = map[string]string{policies.ContextLabel: hospital}
		pod.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{{Weight: 100,
				Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: policies.ZoneLabel, Operator: v1.NodeSelectorOpIn, Values: []string{target.zone()}}}}}}}}
	}
	return pod
}

// measure creates the pods of one profile (podOf), starts its scheduler,
// and returns pods/s between the first and the last observed binding. It
// deletes the pods and stops the scheduler before returning.
func measure(ctx context.Context, cs kubernetes.Interface, o options, label string, p profile, podOf func(i int) *v1.Pod) (rate, cpuMsPerPod float64, err error) {
	schedulerName := p.schedulerName
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
		_, err := cs.CoreV1().Pods("bench").Create(ctx, podOf(i), metav1.CreateOptions{})
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
	sched, err := server.Start(klog.NewContext(ctx, klog.Background()), p.cfg)
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
