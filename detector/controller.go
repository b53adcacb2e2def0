package detector

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// DefaultTick is how often every node's phi is evaluated: fine enough that
// the tick adds at most 0.2 s to a ~2.6 s detection, coarse enough that a
// sweep of 10,000 nodes costs well under 1 % of a core.
const DefaultTick = 200 * time.Millisecond

// Options configure a Controller.
type Options struct {
	// Core configures the decision logic.
	Core CoreConfig
	// Tick (DefaultTick).
	Tick time.Duration
	// Clock (default: the real clock). Tests pass a fake one.
	Clock clock.WithTicker
	// Metrics (optional).
	Metrics *Metrics
	// Recorder emits Events on Nodes and Pods (optional).
	Recorder record.EventRecorder
	// Policies resolves the policies governing a pod (optional: without it
	// no pod is governed, so nothing is evicted). If it also has
	// AddChangeHandler(func(policies.Change)), thresholds follow policy
	// changes.
	Policies PolicyResolver
	// WaitFor are extra caches to sync before starting (e.g. the policy
	// Store's HasSynced).
	WaitFor []cache.InformerSynced
	// Workers sync nodes concurrently (default 4).
	Workers int
	// Evictor removes the pods of lost robots (shared with the context
	// controller). Default: one with evict.DefaultLimits.
	Evictor *evict.Evictor
	// Probe configures the API server reachability probe (zero: off;
	// roam-detector runs DefaultProbeConfig).
	Probe ProbeConfig
	// ProbeCheck is the probe (default: ReadyzCheck of the client).
	ProbeCheck func(context.Context) error
	// FenceLeases is an informer factory scoped to FenceLeaseNamespace,
	// where fenced robots renew their fence Leases (optional: without it no
	// robot counts as fenced).
	FenceLeases         informers.SharedInformerFactory
	FenceLeaseNamespace string
}

// Controller is roam-detector's control loop: Lease/Node/Pod informers feed
// a Core; every tick the nodes its intents name are queued, and a worker
// brings each to the state the Core holds for it now (level-triggered:
// the Controller keeps no copy of it).
type Controller struct {
	opts     Options
	client   kubernetes.Interface
	clock    clock.WithTicker
	factory  informers.SharedInformerFactory
	leaseFac informers.SharedInformerFactory
	leaseInf cache.SharedIndexInformer
	nodeInf  cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer

	core     *Core
	source   *Source
	actuator *Actuator
	probe    *Probe // nil: off

	evictor *evict.Evictor

	queue      workqueue.TypedRateLimitingInterface[string] // nodes to sync
	thresholds workqueue.TypedRateLimitingInterface[string] // nodes whose threshold to recompute

	thrEval *policies.Evaluator // used by the single threshold worker only
	ready   atomic.Bool

	fenceInf    cache.SharedIndexInformer         // nil: no fencing
	fenceLeases coordlisters.LeaseNamespaceLister // nil: no fencing
}

// NewController wires informers from factory (all namespaces) and a
// kube-node-lease-scoped factory for Leases. Call Run to start.
func NewController(client kubernetes.Interface, factory, leaseFactory informers.SharedInformerFactory, opts Options) (*Controller, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	core, err := NewCore(opts.Core, opts.Clock.Now(), opts.Metrics)
	if err != nil {
		return nil, err
	}
	if opts.Evictor == nil {
		em := evict.Metrics{}
		if opts.Metrics != nil {
			em = evict.Metrics{Evictions: opts.Metrics.Evictions, Redeploy: opts.Metrics.Redeploy}
		}
		if opts.Evictor, err = evict.New(client, evict.Options{Limits: evict.DefaultLimits(), Clock: opts.Clock,
			Recorder: opts.Recorder, Metrics: em}); err != nil {
			return nil, err
		}
	}
	c := &Controller{
		opts: opts, client: client, clock: opts.Clock, factory: factory, leaseFac: leaseFactory, core: core,
		leaseInf: leaseFactory.Coordination().V1().Leases().Informer(),
		nodeInf:  factory.Core().V1().Nodes().Informer(),
		podInf:   factory.Core().V1().Pods().Informer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "roam-detector-nodes", Clock: opts.Clock}),
		thresholds: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "roam-detector-thresholds", Clock: opts.Clock}),
		thrEval: policies.NewEvaluator(),
		evictor: opts.Evictor,
	}
	if err := evict.AddPodIndex(c.podInf); err != nil {
		return nil, err
	}
	if opts.Probe.Interval > 0 {
		check := opts.ProbeCheck
		if check == nil {
			if check, err = ReadyzCheck(client); err != nil {
				return nil, fmt.Errorf("API server probe: %w", err)
			}
		}
		if c.probe, err = NewProbe(opts.Probe, check, core, opts.Clock); err != nil {
			return nil, fmt.Errorf("API server probe: %w", err)
		}
	}
	leaseLister := leaseFactory.Coordination().V1().Leases().Lister().Leases(NodeLeaseNamespace)
	c.source = NewSource(core, opts.Clock, func(node string) bool {
		_, err := leaseLister.Get(node)
		return err == nil
	}, c.leaseInf.HasSynced)
	c.actuator = NewActuator(client, factory.Core().V1().Nodes().Lister(), c.podInf.GetIndexer(), opts.Policies, opts.Recorder, opts.Evictor, opts.Clock)

	// A failed watch or list of the heartbeats means the detector, not the
	// robots, may be cut off: the Core judges nothing until the stream
	// delivers objects again, and for a warm-up period after that.
	for _, inf := range []cache.SharedIndexInformer{c.leaseInf, c.nodeInf} {
		if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			klog.FromContext(ctx).Info("Heartbeat source interrupted: judging no robot until it is back and a warm-up has passed", "err", err)
			c.core.SourceInterrupted(c.clock.Now())
		}); err != nil {
			return nil, fmt.Errorf("watch error handler: %w", err)
		}
	}
	// A Lease delivered after an interruption (a renewal, or a relist)
	// shows the stream of heartbeats flows again; they are judged after the
	// warm-up. A Node delivered does not: the Lease and Node watches
	// reconnect on their own back-offs, and a Node watch back first says
	// nothing of the Leases (a Node's fallback heartbeat does, see Source).
	if _, err := c.leaseInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { c.core.SourceResumed(c.clock.Now()) },
		UpdateFunc: func(interface{}, interface{}) { c.core.SourceResumed(c.clock.Now()) },
	}); err != nil {
		return nil, fmt.Errorf("source handler: %w", err)
	}
	if _, err := c.leaseInf.AddEventHandler(c.source.LeaseHandler()); err != nil {
		return nil, fmt.Errorf("lease handler: %w", err)
	}
	if _, err := c.nodeInf.AddEventHandler(c.source.NodeHandler()); err != nil {
		return nil, fmt.Errorf("node handler: %w", err)
	}
	// Level-triggered on the marks too: a node whose roam taint or
	// RoamReachable condition changed is synced again to what the Core
	// holds. A mark written from a stale view (a late retry after an
	// outage, whose recovery was then checked against a Node cache that
	// had not seen the mark yet) or by another writer is undone.
	if _, err := c.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if ok1 && ok2 && marksChanged(old, n) {
				c.queue.Add(n.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("node marks handler: %w", err)
	}
	if _, err := c.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { c.onPod(nil, o) },
		UpdateFunc: c.onPod,
		DeleteFunc: func(o interface{}) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			c.onPod(nil, o)
		},
	}); err != nil {
		return nil, fmt.Errorf("pod handler: %w", err)
	}
	if opts.FenceLeases != nil {
		if opts.FenceLeaseNamespace == "" {
			opts.FenceLeaseNamespace = policies.FenceLeaseNamespace
			c.opts.FenceLeaseNamespace = opts.FenceLeaseNamespace
		}
		c.fenceInf = opts.FenceLeases.Coordination().V1().Leases().Informer()
		c.fenceLeases = opts.FenceLeases.Coordination().V1().Leases().Lister().Leases(opts.FenceLeaseNamespace)
		if _, err := c.fenceInf.AddEventHandler(c.fenceLeaseHandler()); err != nil {
			return nil, fmt.Errorf("fence lease handler: %w", err)
		}
	}
	// A robot's fenceAfter comes from its Node: its fence mode is
	// recomputed with its threshold.
	if _, err := c.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o interface{}) {
			if n, ok := o.(*corev1.Node); ok {
				c.thresholds.Add(n.Name)
			}
		},
		UpdateFunc: func(o, n interface{}) {
			on, ok1 := o.(*corev1.Node)
			nn, ok2 := n.(*corev1.Node)
			if ok1 && ok2 && FenceAfter(on) != FenceAfter(nn) {
				c.thresholds.Add(nn.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("node fence handler: %w", err)
	}
	if h, ok := opts.Policies.(interface{ AddChangeHandler(func(policies.Change)) }); ok {
		h.AddChangeHandler(func(policies.Change) { c.requeueAllThresholds() })
	}
	return c, nil
}

// Core exposes the decision core (for status and tests).
func (c *Controller) Core() *Core { return c.core }

// Ready reports whether the caches synced and the loop runs.
func (c *Controller) Ready() bool { return c.ready.Load() }

func (c *Controller) onPod(oldObj, obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName != "" {
		c.thresholds.Add(pod.Spec.NodeName)
	}
	if old, ok := oldObj.(*corev1.Pod); ok && old.Spec.NodeName != "" && old.Spec.NodeName != pod.Spec.NodeName {
		c.thresholds.Add(old.Spec.NodeName)
	}
	c.evictor.ObservePod(pod)
}

func (c *Controller) requeueAllThresholds() {
	for _, name := range c.nodeInf.GetIndexer().ListKeys() {
		c.thresholds.Add(name)
	}
}

// Run starts the informers, waits for their caches and runs the loop until
// ctx ends. Warm-up counts from the moment the caches synced.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	defer c.thresholds.ShutDown()
	logger := klog.FromContext(ctx)

	c.factory.Start(ctx.Done())
	c.leaseFac.Start(ctx.Done())
	synced := append([]cache.InformerSynced{c.leaseInf.HasSynced, c.nodeInf.HasSynced, c.podInf.HasSynced}, c.opts.WaitFor...)
	if c.opts.FenceLeases != nil {
		// Not waited for: until the fence Leases are listed (or when
		// roam-detector may not read them) no robot counts as fenced,
		// which only makes evictions slower.
		c.opts.FenceLeases.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("roam-detector: caches did not sync: %w", ctx.Err())
	}
	// Warm-up starts now: a detector that just took over judges nothing
	// before it has watched every node for the warm-up period.
	c.core.BeginWarmup(c.clock.Now())
	c.requeueAllThresholds()
	logger.Info("roam-detector running", "tick", c.opts.Tick, "threshold", c.core.Config().Threshold, "warmup", c.core.Config().Warmup)

	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNode(ctx) {
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c.processThreshold(ctx) {
		}
	}()
	if c.probe != nil {
		// A failed watch is reported by client-go, a refused connection
		// is not: the probe finds it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.probe.Run(ctx)
		}()
	}
	c.ready.Store(true)
	defer c.ready.Store(false)

	t := c.clock.NewTicker(c.opts.Tick)
	defer t.Stop()
	var intents []Intent
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			c.thresholds.ShutDown()
			wg.Wait()
			return nil
		case <-t.C():
			intents = c.core.Tick(c.clock.Now(), intents[:0])
			c.dispatch(ctx, intents)
		}
	}
}

// dispatch logs the intents and queues the nodes they name.
func (c *Controller) dispatch(ctx context.Context, intents []Intent) {
	logger := klog.FromContext(ctx)
	for _, in := range intents {
		switch in.Kind {
		case IntentBrake:
			scope := in.Scope
			if scope == "" {
				scope = "all nodes"
			}
			if in.Active {
				logger.Info("Partition brake engaged: evictions held", "scope", scope, "suspected", in.Suspected, "total", in.Total)
			} else {
				logger.Info("Partition brake released", "scope", scope, "suspected", in.Suspected, "total", in.Total)
			}
			continue
		case IntentLink:
			c.reportLink(ctx, in)
			continue
		case IntentSuspect:
			logger.Info("Node suspected", "node", in.Node, "phi", in.Phi, "threshold", in.Threshold,
				"sinceLastHeartbeat", in.At.Sub(in.LastHeartbeat), "braked", in.Braked)
		case IntentRecover:
			logger.V(2).Info("Node alive", "node", in.Node, "phi", in.Phi)
		case IntentEvict:
			logger.Info("Evicting pods of unreachable node", "node", in.Node, "phi", in.Phi)
		}
		c.queue.Add(in.Node)
	}
}

// marksChanged reports whether roam's taint or RoamReachable condition
// differs between two versions of a Node.
func marksChanged(old, n *corev1.Node) bool {
	if hasTaint(old) != hasTaint(n) {
		return true
	}
	oc, nc := condition(old), condition(n)
	if oc == nil || nc == nil {
		return oc != nc
	}
	return oc.Status != nc.Status || oc.Reason != nc.Reason
}

// want is what the actuator should make of a node in the state st: its
// marks, whether its pods are to be evicted, and whether the Core has judged
// it at all.
func want(st NodeStatus) (w NodeWant, evictPods, judged bool) {
	w = NodeWant{Phi: st.Phi, Threshold: st.Threshold, LastHeartbeat: st.LastHeartbeat, Link: st.Link}
	switch st.Phase {
	case PhaseAlive:
		return w, false, true
	case PhaseSuspected, PhaseHeld, PhaseEvicted:
		w.Suspected, w.Braked = true, st.Phase == PhaseHeld
		w.Phi = max(st.Phi, st.SuspicionPhi)
		return w, st.Phase == PhaseEvicted, true
	}
	return w, false, false // not judged yet: leave the node alone
}

// processNode brings one node to the state the Core holds for it now.
func (c *Controller) processNode(ctx context.Context) bool {
	node, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(node)
	st := c.core.Status(node, c.clock.Now())
	w, evictPods, judged := want(st)
	if !evictPods {
		c.evictor.ReleaseNode(node) // alive (or gone): a later loss takes a new token
	}
	if !judged {
		c.queue.Forget(node)
		return true
	}
	err := c.actuator.SyncNode(ctx, node, w)
	var wait time.Duration
	if err == nil && evictPods {
		var ok bool
		if ok, err = c.checkFence(ctx, node); err == nil && !ok {
			c.queue.Forget(node)
			return true // back to Suspected: the Core evicts it again after its floor
		}
	}
	if err == nil && evictPods {
		var n int
		n, wait, err = c.actuator.EvictPods(ctx, node, w.Phi)
		if n > 0 {
			klog.FromContext(ctx).V(2).Info("Evicted pods", "node", node, "count", n)
		}
	}
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing node", "node", node)
		c.queue.AddRateLimited(node)
		return true
	}
	c.queue.Forget(node)
	if wait > 0 {
		c.queue.AddAfter(node, wait)
	}
	return true
}

func (c *Controller) processThreshold(ctx context.Context) bool {
	node, quit := c.thresholds.Get()
	if quit {
		return false
	}
	defer c.thresholds.Done(node)
	c.thresholds.Forget(node)
	c.core.SetThreshold(node, c.nodeThreshold(node))
	mode, after := c.nodeFence(node, func(pod *corev1.Pod) policies.Failure {
		return policies.OnNodeFailure(c.opts.Policies.ForPod(c.thrEval, pod))
	})
	c.core.SetFence(node, mode, after)
	return true
}

// nodeThreshold is the lowest phiThreshold among the policies governing the
// pods on node, or 0 (the default).
func (c *Controller) nodeThreshold(node string) float64 {
	if c.opts.Policies == nil {
		return 0
	}
	best := math.Inf(1)
	for _, pod := range evict.PodsOn(c.podInf.GetIndexer(), node) {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, p := range c.opts.Policies.ForPod(c.thrEval, pod).Policies {
			if p.PhiThreshold > 0 && p.PhiThreshold < best {
				best = p.PhiThreshold
			}
		}
	}
	if math.IsInf(best, 1) {
		return 0
	}
	return best
}

// WaitReady polls until the controller is ready (for tests and main).
func (c *Controller) WaitReady(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		return c.Ready(), nil
	})
}
