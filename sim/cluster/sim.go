package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/state"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/sim/network"
)

// robot is a simulated robot's live state.
type robot struct {
	spec robotSpec
	net  *network.Robot
	// guarded by sim.mu
	context  string
	lost     bool
	lostAt   time.Time
	switched bool
	lastBeat time.Time
	beats    int
	// observed from the Node informer
	roamTaintAt, stockTaintAt time.Time
}

// podInfo is what the sim saw of one pod.
type podInfo struct {
	uid                     types.UID
	namespace, name, node   string
	workload                string
	copy                    Copy
	created, bound, running time.Time
	deleting                time.Time
	reason                  string
}

// disruption is one pod displaced by a lost robot or a context switch,
// and the pod that replaced it.
type disruption struct {
	kind        string // "loss" or "context"
	robot       *robot
	at          time.Time // the loss or the label change
	pod         *podInfo
	known       map[types.UID]bool
	replacement *podInfo
}

// sim is one cluster-mode run.
type sim struct {
	cfg    *Config
	clock  clock.WithTicker
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	queue  workqueue.TypedRateLimitingInterface[string]
	rng    *rand.Rand

	robots map[string]*robot
	order  []*robot
	// agents publish what each robot senses into its Node.
	agents *agents
	origin time.Time // fleet boot: network offsets count from here

	mu          sync.Mutex
	start, end  time.Time
	bound       map[types.UID]time.Time
	podsSeen    map[types.UID]*podInfo
	disruptions []*disruption
	evictions   map[string]int
	tolerations string
	// Lease writes: how many, how many landed > 1 s after the model's
	// arrival time (a loaded machine), the worst lateness, and how many
	// were dropped because every writer was busy.
	renewals, renewalsLate, renewalsDropped int
	maxLate                                 time.Duration
}

// Run runs the cluster mode end to end and returns its result. It stops
// every process it started before it returns, also when ctx is cancelled.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output dir: %w", err)
	}
	logger := klog.FromContext(ctx)
	status := func(format string, args ...any) {
		if cfg.Status != nil {
			fmt.Fprintf(cfg.Status, "roam-sim: "+format+"\n", args...)
		}
	}
	cpLog, err := os.Create(filepath.Join(cfg.OutDir, "controlplane.log"))
	if err != nil {
		return nil, fmt.Errorf("creating control plane log: %w", err)
	}
	defer cpLog.Close()
	status("starting etcd, kube-apiserver and kube-controller-manager (stock settings)…")
	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancelSetup()
	cp, err := controlplane.Start(setupCtx, controlplane.Options{
		BinDir: cfg.ControlPlaneBinDir, ControllerManager: true, Output: cpLog,
		GracefulSignals: cfg.GracefulSignals,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			logger.Error(err, "Stopping the control plane")
		}
	}()
	kubeconfig, unpublish, err := publishKubeconfig(cp.Kubeconfig, cfg.OutDir)
	if err != nil {
		return nil, err
	}
	defer unpublish()
	status("the control plane's admin kubeconfig is %s while the run lasts; watch roam act from another terminal:\n%s",
		kubeconfig, strings.TrimRight(WatchCommands(kubeconfig, cfg.RoamBinDir), "\n"))
	client, err := kubernetes.NewForConfig(withQPS(cp))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := controlplane.InstallCRDs(setupCtx, cp.Config, cfg.CRDs...); err != nil {
		return nil, err
	}
	status("starting roam-scheduler and roam-detector (logs in %s)…", cfg.OutDir)
	sched, det, err := startChildren(setupCtx, &cfg, cp.Kubeconfig, cp.Dir)
	if err != nil {
		return nil, err
	}
	defer det.stop()
	defer sched.stop()

	s := &sim{
		cfg: &cfg, clock: cfg.Clock, client: client,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x5CE7A)),
		robots:    map[string]*robot{},
		bound:     map[types.UID]time.Time{},
		podsSeen:  map[types.UID]*podInfo{},
		evictions: map[string]int{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "roam-sim-kubelet", Clock: cfg.Clock}),
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	defer s.queue.ShutDown()
	if err := s.setup(runCtx, setupCtx, status); err != nil {
		return nil, err
	}
	cancelSetup()
	for _, c := range []*child{sched, det} {
		if err := c.exited(); err != nil {
			return nil, err
		}
	}
	if err := s.scenario(runCtx, sched, det); err != nil {
		if errors.Is(err, ErrInterrupted) {
			res := s.result()
			res.Interrupted = true
			return res, err
		}
		return nil, err
	}
	return s.result(), nil
}

// ErrInterrupted is returned by Run, with the result so far, when ctx ends
// during the scenario.
var ErrInterrupted = errors.New("interrupted")

func withQPS(cp *controlplane.ControlPlane) *rest.Config {
	c := *cp.Config
	c.QPS, c.Burst = 500, 1000
	c.UserAgent = "roam-sim"
	return &c
}

// setup creates the fleet and the workloads and waits until every pod runs.
func (s *sim) setup(ctx, setupCtx context.Context, status func(string, ...any)) error {
	cfg := s.cfg
	for _, ns := range namespaces(cfg.Workloads) {
		_, err := s.client.CoreV1().Namespaces().Create(setupCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	factory := informers.NewSharedInformerFactory(s.client, 0)
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	s.pods, s.nodes = podInf.Lister(), nodeInf.Lister()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    s.podEvent,
		UpdateFunc: func(_, obj any) { s.podEvent(obj) },
		DeleteFunc: s.podDeleted,
	}
	if _, err := podInf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.nodeEvent,
		UpdateFunc: func(_, obj any) { s.nodeEvent(obj) },
	}); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}

	fleet := newFleet(cfg.Seed, cfg.Robots, cfg.Devices)
	horizon := cfg.SetupTimeout + cfg.Duration + time.Minute
	for i := range fleet {
		r := &robot{spec: fleet[i], context: fleet[i].Context}
		r.net = cfg.Network.NewRobot(cfg.Seed, i, horizon)
		r.spec.LinkName = r.net.Link.Name
		s.robots[r.spec.Name] = r
		s.order = append(s.order, r)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(setupCtx.Done()) {
		if !ok {
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	for range 4 {
		go s.kubeletWorker(ctx)
	}

	status("creating %d robots (Nodes + Leases, %ds lease, renewals per the network model)…", cfg.Robots, cfg.LeaseDurationSeconds())
	now := s.clock.Now()
	for _, r := range s.order {
		node, err := s.client.CoreV1().Nodes().Create(setupCtx, r.spec.node(), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating node %s: %w", r.spec.Name, err)
		}
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := s.client.CoreV1().Nodes().Get(setupCtx, r.spec.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Status = r.spec.nodeStatus(metav1.NewTime(now))
			node, err = s.client.CoreV1().Nodes().UpdateStatus(setupCtx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("setting node %s status: %w", r.spec.Name, err)
		}
		lease := r.spec.lease(node, cfg.LeaseDurationSeconds(), metav1.NewMicroTime(s.clock.Now()))
		if _, err := s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(setupCtx, lease, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating lease %s: %w", r.spec.Name, err)
		}
	}
	status("starting %d roam-agent publishers (in-process) to publish what each robot senses…", cfg.Robots)
	s.agents = startAgents(ctx, s.client, s.order)
	for _, r := range s.order {
		s.agents.sense(r.spec.Name, r.spec.sensed())
	}
	if err := s.agents.waitPublished(setupCtx, 2*time.Minute); err != nil {
		return fmt.Errorf("robots' agents publishing their sensed state: %w", err)
	}
	s.origin = s.clock.Now()
	go s.heartbeats(ctx)

	status("creating %d workloads, each as a roam copy and a stock copy…", len(cfg.Workloads))
	for _, w := range cfg.Workloads {
		if _, err := s.client.CoreV1().ConfigMaps(w.Namespace).Create(setupCtx, w.Policy(cfg.Settle.String()), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating policy %s/%s: %w", w.Namespace, w.Name, err)
		}
	}
	for _, c := range []Copy{Roam, Stock} {
		for _, w := range cfg.Workloads {
			var err error
			if w.Kind == "StatefulSet" {
				_, err = s.client.AppsV1().StatefulSets(w.Namespace).Create(setupCtx, w.StatefulSet(c), metav1.CreateOptions{})
			} else {
				_, err = s.client.AppsV1().Deployments(w.Namespace).Create(setupCtx, w.Deployment(c), metav1.CreateOptions{})
			}
			if err != nil {
				return fmt.Errorf("creating %s %s: %w", w.Kind, w.objectName(c), err)
			}
		}
	}
	want := 0
	for _, w := range cfg.Workloads {
		want += 2 * int(w.Replicas)
	}
	status("waiting for %d pods to run…", want)
	err := wait.PollUntilContextCancel(setupCtx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
		pending, running, _ := s.podCounts()
		if cfg.Status != nil {
			fmt.Fprintf(cfg.Status, "\r  pods running %d/%d, pending %d   ", running, want, pending)
		}
		return running >= want && pending == 0, nil
	})
	if cfg.Status != nil {
		fmt.Fprintln(cfg.Status)
	}
	if err != nil {
		pending, running, _ := s.podCounts()
		return fmt.Errorf("waiting for the workloads to run (%d/%d running, %d pending; see %s): %w",
			running, want, pending, filepath.Join(cfg.OutDir, "roam-scheduler.log"), err)
	}
	s.tolerations = s.stockTolerations()
	return nil
}

func namespaces(ws []Workload) []string {
	seen := map[string]bool{policies.DefaultGlobalNamespace: true}
	out := []string{policies.DefaultGlobalNamespace}
	for _, w := range ws {
		if !seen[w.Namespace] {
			seen[w.Namespace] = true
			out = append(out, w.Namespace)
		}
	}
	return out
}

// stockTolerations describes the tolerations the API server gave a stock
// pod (DefaultTolerationSeconds admission), for the report.
func (s *sim) stockTolerations() string {
	pods, _ := s.pods.List(labels.SelectorFromSet(labels.Set{CopyLabel: string(Stock)}))
	for _, p := range pods {
		out := ""
		for _, t := range p.Spec.Tolerations {
			if t.TolerationSeconds != nil {
				out += fmt.Sprintf("%s:%s for %ds; ", t.Key, t.Effect, *t.TolerationSeconds)
			}
		}
		if out == "" {
			return "none (DefaultTolerationSeconds admission is off?)"
		}
		return out[:len(out)-2]
	}
	return "unknown"
}

// podCounts counts the sim's workload pods by state.
func (s *sim) podCounts() (pending, running, terminating int) {
	pods, _ := s.pods.List(labels.Everything())
	for _, p := range pods {
		if p.Labels[CopyLabel] == "" {
			continue
		}
		switch {
		case p.DeletionTimestamp != nil:
			terminating++
		case p.Status.Phase == corev1.PodRunning:
			running++
		default:
			pending++
		}
	}
	return pending, running, terminating
}

// podDeleted records a pod's deletion (a force-deleted pod may never be
// seen terminating).
func (s *sim) podDeleted(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	s.observePod(pod, true)
}

// observePod records a pod's milestones.
func (s *sim) observePod(pod *corev1.Pod, deleted bool) {
	if pod.Labels[CopyLabel] == "" {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.podsSeen[pod.UID]
	if p == nil {
		p = &podInfo{uid: pod.UID, namespace: pod.Namespace, name: pod.Name,
			workload: pod.Labels[WorkloadLabel], copy: Copy(pod.Labels[CopyLabel]), created: now}
		s.podsSeen[pod.UID] = p
	}
	if pod.Spec.NodeName != "" && p.bound.IsZero() {
		p.bound, p.node = now, pod.Spec.NodeName
		s.bound[pod.UID] = now
	}
	if !deleted && pod.DeletionTimestamp == nil {
		return
	}
	reason := "deleted"
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			reason = c.Reason
		}
	}
	key := func(reason string) string { return string(p.copy) + "/" + reason }
	switch {
	case p.deleting.IsZero():
		p.deleting, p.reason = now, reason
		s.evictions[key(reason)]++
	case reason != p.reason && reason != "deleted":
		// The API server sets EvictionByEvictionAPI when it evicts;
		// roam-detector then restores its own reason: count the last.
		s.evictions[key(p.reason)]--
		if s.evictions[key(p.reason)] == 0 {
			delete(s.evictions, key(p.reason))
		}
		p.reason = reason
		s.evictions[key(reason)]++
	}
}

// podStarted is called when the sim's kubelet has set a pod Running: it
// completes the open disruption of the same workload copy whose pod was
// deleted first, among those deleted before this pod was created.
func (s *sim) podStarted(pod *corev1.Pod, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.podsSeen[pod.UID]
	if p == nil || !p.running.IsZero() {
		return
	}
	p.running = at
	if s.start.IsZero() {
		return
	}
	// The owner replaces a pod only once it is deleted (terminating or
	// gone), and the informer sees that before the replacement's creation.
	var match *disruption
	for _, d := range s.disruptions {
		if d.replacement != nil || d.pod.workload != p.workload || d.known[p.uid] || p.node == d.robot.spec.Name {
			continue
		}
		if d.pod.deleting.IsZero() || p.created.Before(d.pod.deleting) {
			continue
		}
		if match == nil || d.pod.deleting.Before(match.pod.deleting) {
			match = d
		}
	}
	if match != nil {
		match.replacement = p
	}
}

// nodeEvent records when roam's and stock's unreachable taints appear.
func (s *sim) nodeEvent(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	r := s.robots[node.Name]
	if r == nil {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range node.Spec.Taints {
		switch {
		case t.Key == policies.UnreachableTaint && r.roamTaintAt.IsZero() && r.lost:
			r.roamTaintAt = now
		case t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute && r.stockTaintAt.IsZero() && r.lost:
			r.stockTaintAt = now
		}
	}
}

// scenario runs the scripted losses and switches for cfg.Duration, with a
// status line.
func (s *sim) scenario(ctx context.Context, children ...*child) error {
	type event struct {
		at   time.Duration
		loss bool
	}
	var events []event
	for _, at := range s.cfg.LossAt {
		events = append(events, event{at, true})
	}
	for _, at := range s.cfg.SwitchAt {
		events = append(events, event{at, false})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at < events[j].at })
	s.mu.Lock()
	s.start = s.clock.Now()
	s.mu.Unlock()
	ticker := s.clock.NewTicker(max(s.cfg.StatusInterval, 100*time.Millisecond))
	defer ticker.Stop()
	end := s.clock.NewTimer(s.cfg.Duration)
	defer end.Stop()
	next := func() <-chan time.Time {
		if len(events) == 0 {
			return nil
		}
		return s.clock.After(s.start.Add(events[0].at).Sub(s.clock.Now()))
	}
	eventC := next()
	logger := klog.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.end = s.clock.Now()
			s.mu.Unlock()
			s.printStatus(true)
			return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
		case <-end.C():
			s.mu.Lock()
			s.end = s.clock.Now()
			s.mu.Unlock()
			s.printStatus(true)
			return nil
		case <-ticker.C():
			for _, c := range children {
				if err := c.exited(); err != nil {
					return err
				}
			}
			s.printStatus(false)
		case <-eventC:
			e := events[0]
			events = events[1:]
			var err error
			if e.loss {
				err = s.loseRobot()
			} else {
				err = s.switchContext(ctx)
			}
			if err != nil {
				logger.Info("Scenario event skipped", "at", e.at, "err", err)
			}
			eventC = next()
		}
	}
}

// onRobot lists the Running, not terminating, workload pods on a robot.
func (s *sim) onRobot(name string) []*corev1.Pod {
	pods, _ := s.pods.List(labels.Everything())
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == name && p.Labels[CopyLabel] != "" && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// knownPods are the UIDs of a workload copy's current pods.
func (s *sim) knownPods(workload string) map[types.UID]bool {
	pods, _ := s.pods.List(labels.SelectorFromSet(labels.Set{WorkloadLabel: workload}))
	out := map[types.UID]bool{}
	for _, p := range pods {
		out[p.UID] = true
	}
	return out
}

// roomElsewhere reports whether every roam pod in pods could be replaced
// on another live robot of its workload's context with a free device unit,
// so the scenario measures roam, not a fleet without capacity.
func (s *sim) roomElsewhere(except *robot, pods []*corev1.Pod) bool {
	need := map[string]int{}
	for _, p := range pods {
		if Copy(p.Labels[CopyLabel]) == Roam {
			need[p.Labels[WorkloadLabel]]++
		}
	}
	if len(need) == 0 {
		return true
	}
	all, _ := s.pods.List(labels.Everything())
	used := map[string]map[string]int64{} // node → device → units requested
	for _, p := range all {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range p.Spec.Containers {
			for name, q := range c.Resources.Requests {
				if used[p.Spec.NodeName] == nil {
					used[p.Spec.NodeName] = map[string]int64{}
				}
				used[p.Spec.NodeName][string(name)] += q.Value()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, n := range need {
		var w *Workload
		for i := range s.cfg.Workloads {
			if s.cfg.Workloads[i].key(Roam) == key {
				w = &s.cfg.Workloads[i]
			}
		}
		if w == nil {
			return false
		}
		free := int64(0)
		for _, q := range s.order {
			if q == except || q.lost || q.context != w.Context {
				continue
			}
			free += max(0, q.spec.Devices[w.Device]-used[q.spec.Name][w.Device])
		}
		if free < int64(n) {
			return false
		}
	}
	return true
}

// loseRobot loses, for good, the live robot that runs the most pods of
// both copies and whose roam pods have room elsewhere (ties: the context with the fewest losses so far, then the
// most pods, then the seeded RNG).
func (s *sim) loseRobot() error {
	type cand struct {
		r                  *robot
		both, ctxLoss, all int
		pods               []*corev1.Pod
	}
	s.mu.Lock()
	lossesIn := map[string]int{}
	var live []*robot
	for _, r := range s.order {
		if r.lost {
			lossesIn[r.context]++
		} else if !r.switched {
			live = append(live, r)
		}
	}
	s.mu.Unlock()
	var best []cand
	for _, r := range live {
		pods := s.onRobot(r.spec.Name)
		var nr, ns int
		for _, p := range pods {
			if Copy(p.Labels[CopyLabel]) == Roam {
				nr++
			} else {
				ns++
			}
		}
		if nr+ns == 0 || !s.roomElsewhere(r, pods) {
			continue
		}
		c := cand{r: r, both: min(nr, ns), ctxLoss: -lossesIn[r.context], all: nr + ns, pods: pods}
		if len(best) == 0 {
			best = []cand{c}
			continue
		}
		b := best[0]
		switch cmp := compare3(c.both, c.ctxLoss, c.all, b.both, b.ctxLoss, b.all); {
		case cmp > 0:
			best = []cand{c}
		case cmp == 0:
			best = append(best, c)
		}
	}
	if len(best) == 0 {
		return errors.New("no live robot runs any workload pod")
	}
	c := best[s.rng.IntN(len(best))]
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c.r.lost, c.r.lostAt = true, now
	for _, p := range c.pods {
		info := s.podsSeen[p.UID]
		if info == nil {
			continue
		}
		s.disruptions = append(s.disruptions, &disruption{kind: "loss", robot: c.r, at: now, pod: info, known: s.knownPods(info.workload)})
	}
	return nil
}

func compare3(a1, a2, a3, b1, b2, b3 int) int {
	switch {
	case a1 != b1:
		return a1 - b1
	case a2 != b2:
		return a2 - b2
	default:
		return a3 - b3
	}
}

// switchContext moves a live robot that runs a roam pod (with room for
// it elsewhere) to the next context (and its site): roam's policy no longer holds there, so
// roam-detector should evict the pod after the policy's settle time.
// Stock pods stay (nodeSelector is IgnoredDuringExecution).
func (s *sim) switchContext(ctx context.Context) error {
	contexts := Contexts()
	s.mu.Lock()
	switchesIn := map[string]int{}
	var live []*robot
	for _, r := range s.order {
		if r.switched {
			switchesIn[r.spec.Context]++
		} else if !r.lost {
			live = append(live, r)
		}
	}
	s.mu.Unlock()
	var best []*robot
	bestScore := -1 << 30
	bestPods := map[*robot][]*corev1.Pod{}
	for _, r := range live {
		var roam []*corev1.Pod
		for _, p := range s.onRobot(r.spec.Name) {
			if Copy(p.Labels[CopyLabel]) == Roam {
				roam = append(roam, p)
			}
		}
		if len(roam) == 0 || !s.roomElsewhere(r, roam) {
			continue
		}
		score := -switchesIn[r.context]
		switch {
		case score > bestScore:
			best, bestScore = []*robot{r}, score
		case score == bestScore:
			best = append(best, r)
		}
		bestPods[r] = roam
	}
	if len(best) == 0 {
		return errors.New("no live robot runs a roam pod")
	}
	r := best[s.rng.IntN(len(best))]
	to := r.context
	for i, c := range contexts {
		if c == r.context {
			to = contexts[(i+1)%len(contexts)]
		}
	}
	x, y := s.rng.Float64()*100, s.rng.Float64()*100
	// The robot drives to the new site: its agent publishes the new
	// context, zone and location (within its debounce).
	sensed := r.spec.sensed()
	sensed.Context, sensed.Zone = to, zoneOf(to)
	sensed.Location = &state.Location{X: math.Round(x*10) / 10, Y: math.Round(y*10) / 10}
	now := s.clock.Now()
	s.agents.sense(r.spec.Name, sensed)
	s.mu.Lock()
	defer s.mu.Unlock()
	r.switched, r.context = true, to
	for _, p := range bestPods[r] {
		info := s.podsSeen[p.UID]
		if info == nil {
			continue
		}
		s.disruptions = append(s.disruptions, &disruption{kind: "context", robot: r, at: now, pod: info, known: s.knownPods(info.workload)})
	}
	return nil
}

// printStatus writes the live status line.
func (s *sim) printStatus(final bool) {
	if s.cfg.Status == nil {
		return
	}
	nodes, _ := s.nodes.List(labels.Everything())
	var suspected, notReady int
	for _, n := range nodes {
		for _, t := range n.Spec.Taints {
			if t.Key == policies.UnreachableTaint {
				suspected++
			}
			if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
				notReady++
			}
		}
	}
	pending, running, terminating := s.podCounts()
	s.mu.Lock()
	alive := 0
	for _, r := range s.order {
		if !r.lost {
			alive++
		}
	}
	var roamEv, stockEv int
	for k, v := range s.evictions {
		if len(k) > 5 && k[:5] == "roam/" {
			roamEv += v
		} else {
			stockEv += v
		}
	}
	elapsed := s.clock.Since(s.start).Round(time.Second)
	s.mu.Unlock()
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(s.cfg.Status, "\r[%4s/%s] robots alive %d/%d, suspected by roam %d, unreachable for stock %d | pods pending %d, running %d, terminating %d | deletions roam %d, stock %d   %s",
		elapsed, s.cfg.Duration, alive, len(s.order), suspected, notReady, pending, running, terminating, roamEv, stockEv, end)
}
