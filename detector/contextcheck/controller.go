package contextcheck

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// Reasons of the DisruptionTarget condition and of the Events on pods.
const (
	// ReasonContextChanged is the DisruptionTarget reason and the Event
	// reason of a context-change eviction (docs/design.md).
	ReasonContextChanged = evict.ReasonContextChanged
	// ReasonContextViolated (Normal Event): the settle window started.
	ReasonContextViolated = "RoamContextViolated"
	// ReasonContextRestored (Normal Event): the node satisfied the policy
	// again within the settle window; nothing happens.
	ReasonContextRestored = "RoamContextRestored"
	// ReasonNoAlternative (Warning Event): the pod stays because no other
	// node would satisfy its policies and fit it.
	ReasonNoAlternative = "RoamNoAlternative"
	// ReasonEvictionRefused (Warning Event): the Eviction API refused
	// (usually a PodDisruptionBudget, HTTP 429); retried with backoff.
	ReasonEvictionRefused = evict.ReasonEvictionRefused
)

// Defaults of Options.
const (
	// DefaultNoAlternativeRecheck: a pod kept for lack of an alternative is
	// re-checked this often, besides on every node change.
	DefaultNoAlternativeRecheck = 30 * time.Second
	// DefaultRetryBase and DefaultRetryMax bound the exponential backoff
	// of refused evictions (PDBs) and API errors.
	DefaultRetryBase = time.Second
	DefaultRetryMax  = 2 * time.Minute
	// DefaultWorkers sync nodes concurrently.
	DefaultWorkers = 2
)

// Options configure a Controller. Zero fields take their defaults.
type Options struct {
	// Clock (default: the real clock). Tests pass a fake one.
	Clock clock.WithTicker
	// Policies resolves the policies governing a pod (required). If it also
	// has AddChangeHandler(func(policies.Change)), every node is re-checked
	// when a policy changes (unless NoPolicyRecheck).
	Policies PolicyResolver
	// NoPolicyRecheck turns off the re-check on policy changes.
	NoPolicyRecheck bool
	// EvictWithoutAlternative evicts even when no other node would take
	// the pod (default false: the pod keeps running, with an Event).
	EvictWithoutAlternative bool
	// Evictor removes the pods (shared with the lost-robot controller; it
	// owns the pod rate limit). Default: one with evict.DefaultLimits.
	Evictor *evict.Evictor
	// NoAlternativeRecheck (DefaultNoAlternativeRecheck).
	NoAlternativeRecheck time.Duration
	// RetryBase, RetryMax (DefaultRetryBase, DefaultRetryMax).
	RetryBase, RetryMax time.Duration
	// Recorder emits Events on pods (optional).
	Recorder record.EventRecorder
	// WaitFor are extra caches to sync before starting (the policy Store's
	// HasSynced).
	WaitFor []cache.InformerSynced
	// Workers (DefaultWorkers).
	Workers int
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.NoAlternativeRecheck <= 0 {
		o.NoAlternativeRecheck = DefaultNoAlternativeRecheck
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Recorder == nil {
		o.Recorder = &record.FakeRecorder{}
	}
	return o
}

// violation is a pod whose node no longer satisfies its policies.
type violation struct {
	pod    *corev1.Pod
	node   string
	since  time.Time // first seen, on the controller's clock
	settle time.Duration
	why    string
	// blocked: kept for lack of an alternative node (Event sent).
	blocked bool
}

// Controller re-checks policies on node and policy changes and evicts the
// pods whose node no longer satisfies them after settle.
type Controller struct {
	opts    Options
	client  kubernetes.Interface
	clock   clock.WithTicker
	factory informers.SharedInformerFactory
	nodeInf cache.SharedIndexInformer
	podInf  cache.SharedIndexInformer
	nodes   corelisters.NodeLister

	queue   workqueue.TypedRateLimitingInterface[string] // node names
	evictor *evict.Evictor
	checker sync.Pool // *Checker
	res     *resolutions

	mu      sync.Mutex
	pending map[types.UID]*violation

	ready atomic.Bool
}

// NewController wires Node and Pod informers of factory (share it with
// detector.NewController so both use one cache). Call Run to start.
func NewController(client kubernetes.Interface, factory informers.SharedInformerFactory, opts Options) (*Controller, error) {
	if opts.Policies == nil {
		return nil, errors.New("contextcheck: Options.Policies is required")
	}
	opts = opts.withDefaults()
	if opts.Evictor == nil {
		ev, err := evict.New(client, evict.Options{Limits: evict.DefaultLimits(), Clock: opts.Clock, Recorder: opts.Recorder})
		if err != nil {
			return nil, err
		}
		opts.Evictor = ev
	}
	c := &Controller{
		opts: opts, client: client, clock: opts.Clock, factory: factory,
		nodeInf: factory.Core().V1().Nodes().Informer(),
		podInf:  factory.Core().V1().Pods().Informer(),
		nodes:   factory.Core().V1().Nodes().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBase, opts.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "roam-context", Clock: opts.Clock}),
		evictor: opts.Evictor,
		pending: map[types.UID]*violation{},
	}
	changes, tracked := opts.Policies.(interface{ AddChangeHandler(func(policies.Change)) })
	c.res = newResolutions(opts.Policies, tracked)
	c.checker.New = func() any { return &Checker{res: c.res, eval: policies.NewEvaluator()} }
	// The pods-by-node index is shared with the lost-robot controller.
	if err := evict.AddPodIndex(c.podInf); err != nil {
		return nil, fmt.Errorf("contextcheck: %w", err)
	}
	if _, err := c.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.onNode(nil, o) },
		UpdateFunc: c.onNode,
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if n, ok := o.(*corev1.Node); ok {
				c.queue.Add(n.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("contextcheck: node handler: %w", err)
	}
	if _, err := c.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.onPod(nil, o) },
		UpdateFunc: c.onPod,
		DeleteFunc: c.onPodDelete,
	}); err != nil {
		return nil, fmt.Errorf("contextcheck: pod handler: %w", err)
	}
	if tracked {
		changes.AddChangeHandler(func(policies.Change) {
			c.res.gen.Add(1)
			if !opts.NoPolicyRecheck {
				c.requeueAll()
			}
		})
	}
	return c, nil
}

// Ready reports whether the caches synced and the workers run.
func (c *Controller) Ready() bool { return c.ready.Load() }

// onNode queues a node whose labels, annotations or allocatable changed,
// and the nodes whose pods wait for an alternative when any node changed
// in a way that could make it one.
func (c *Controller) onNode(oldObj, obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	old, _ := oldObj.(*corev1.Node)
	if old == nil || !equality.Semantic.DeepEqual(old.Labels, n.Labels) ||
		!equality.Semantic.DeepEqual(old.Annotations, n.Annotations) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable) {
		c.queue.Add(n.Name)
		c.requeueBlocked()
		return
	}
	if old.Spec.Unschedulable != n.Spec.Unschedulable || !equality.Semantic.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		nodeReady(old) != nodeReady(n) {
		c.requeueBlocked()
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Controller) onPod(oldObj, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if old, _ := oldObj.(*corev1.Pod); pod.Spec.NodeName != "" && (old == nil || old.Spec.NodeName != pod.Spec.NodeName) {
		c.queue.Add(pod.Spec.NodeName)
	}
	c.evictor.ObservePod(pod)
}

func (c *Controller) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	delete(c.pending, pod.UID)
	c.mu.Unlock()
	c.res.forget(pod.UID)
	c.requeueBlocked() // its resources are free again
}

func (c *Controller) requeueAll() {
	for _, name := range c.nodeInf.GetIndexer().ListKeys() {
		c.queue.Add(name)
	}
}

func (c *Controller) requeueBlocked() {
	c.mu.Lock()
	var nodes []string
	for _, v := range c.pending {
		if v.blocked {
			nodes = append(nodes, v.node)
		}
	}
	c.mu.Unlock()
	for _, n := range nodes {
		c.queue.Add(n)
	}
}

// Run starts the informers, waits for their caches and syncs nodes until
// ctx ends. Every node is checked once at start (a robot that changed
// context while no detector led is handled too).
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx)
	c.factory.Start(ctx.Done())
	synced := append([]cache.InformerSynced{c.nodeInf.HasSynced, c.podInf.HasSynced}, c.opts.WaitFor...)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("contextcheck: caches did not sync: %w", ctx.Err())
	}
	c.requeueAll()
	logger.Info("Context re-check running", "evictWithoutAlternative", c.opts.EvictWithoutAlternative,
		"policyRecheck", !c.opts.NoPolicyRecheck)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	c.ready.Store(true)
	defer c.ready.Store(false)
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	node, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(node)
	after, err := c.Sync(ctx, node)
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Context re-check", "node", node)
		c.queue.AddRateLimited(node)
	} else {
		c.queue.Forget(node)
	}
	if after > 0 {
		c.queue.AddAfter(node, after)
	}
	return true
}

// podsOn lists the pods bound to node from the informer's index.
func (c *Controller) podsOn(node string) []*corev1.Pod {
	return evict.PodsOn(c.podInf.GetIndexer(), node)
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// Sync re-checks the pods bound to node and acts on the violations whose
// settle window has passed. It returns when to look again (0: only on the
// next change); an error asks for a retry with backoff. Workers call it;
// tests call it directly under a fake clock.
func (c *Controller) Sync(ctx context.Context, name string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		for uid, v := range c.pending {
			if v.node == name {
				delete(c.pending, uid)
			}
		}
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("node %s: %w", name, err)
	}
	ch := c.checker.Get().(*Checker)
	defer c.checker.Put(ch)
	verdicts := ch.Check(node, c.podsOn(name), nil)

	now := c.clock.Now()
	var after time.Duration
	var due []Verdict
	var seen map[types.UID]bool
	if len(verdicts) > 0 {
		seen = make(map[types.UID]bool, len(verdicts))
	}
	c.mu.Lock()
	for _, v := range verdicts {
		if !v.Reschedule {
			logger.V(4).Info("Policy violated but onContextChange: keep", "pod", klog.KObj(v.Pod), "node", name, "why", v.Why)
			continue
		}
		seen[v.Pod.UID] = true
		pv := c.pending[v.Pod.UID]
		if pv == nil {
			pv = &violation{node: name, since: now}
			c.pending[v.Pod.UID] = pv
			c.opts.Recorder.Eventf(v.Pod, corev1.EventTypeNormal, ReasonContextViolated,
				"Node %s no longer satisfies the pod's policies (%s): evicting after settle %v unless it satisfies them again", name, v.Why, v.Settle)
			logger.Info("Context violation: settle window started", "pod", klog.KObj(v.Pod), "node", name, "settle", v.Settle, "why", v.Why)
		}
		pv.pod, pv.settle, pv.why = v.Pod, v.Settle, v.Why
		if left := pv.since.Add(pv.settle).Sub(now); left > 0 {
			after = minPositive(after, left)
			continue
		}
		due = append(due, v)
	}
	for uid, pv := range c.pending {
		if pv.node != name || seen[uid] {
			continue
		}
		delete(c.pending, uid)
		if pv.pod.Spec.NodeName == name && pv.pod.DeletionTimestamp == nil {
			c.opts.Recorder.Eventf(pv.pod, corev1.EventTypeNormal, ReasonContextRestored,
				"Node %s satisfies the pod's policies again after %v: not evicting", name, now.Sub(pv.since).Round(time.Millisecond))
			logger.Info("Context restored within settle: not evicting", "pod", klog.KObj(pv.pod), "node", name)
		}
	}
	c.mu.Unlock()

	// The evictor removes the due pods concurrently, so a robot's last pod
	// does not wait for the others'.
	var evictions []evict.Eviction
	for _, v := range due {
		msg, wait := c.decide(ctx, v)
		after = minPositive(after, wait)
		if msg != "" {
			evictions = append(evictions, evict.Eviction{Pod: v.Pod, Message: msg})
		}
	}
	var errs []error
	for i, o := range c.evictor.EvictContext(ctx, evictions) {
		after = minPositive(after, o.Wait)
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		if o.Done {
			c.forget(evictions[i].Pod.UID)
		}
	}
	return after, errors.Join(errs...)
}

func (c *Controller) forget(uid types.UID) {
	c.mu.Lock()
	delete(c.pending, uid)
	c.mu.Unlock()
}

// decide about one pod whose settle window has passed: keep it when no
// other node would take it (then: when to look again), else the message
// its eviction carries.
func (c *Controller) decide(ctx context.Context, v Verdict) (string, time.Duration) {
	logger := klog.FromContext(ctx)
	pod := v.Pod
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return "", c.opts.NoAlternativeRecheck // a lister does not fail
	}
	ch := c.checker.Get().(*Checker)
	target, why := ch.fitsOtherNode(pod, v.Policies, nodes, c.podsOn)
	c.checker.Put(ch)
	if target == "" {
		if !c.opts.EvictWithoutAlternative {
			c.mu.Lock()
			pv := c.pending[pod.UID]
			warn := pv != nil && !pv.blocked
			if pv != nil {
				pv.blocked = true
			}
			c.mu.Unlock()
			if warn {
				c.opts.Recorder.Eventf(pod, corev1.EventTypeWarning, ReasonNoAlternative,
					"Keeping the pod on node %s although %s: no other node would satisfy its policies and fit it (%s)", pod.Spec.NodeName, v.Why, why)
				logger.Info("Context violation but no alternative node: keeping pod", "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "why", why)
			}
			return "", c.opts.NoAlternativeRecheck
		}
		logger.Info("No alternative node, evicting anyway (--context-evict-without-alternative)", "pod", klog.KObj(pod), "why", why)
	} else {
		c.mu.Lock()
		if pv := c.pending[pod.UID]; pv != nil {
			pv.blocked = false
		}
		c.mu.Unlock()
	}
	msg := fmt.Sprintf("roam-detector: node %s no longer satisfies the pod's policies (%s)", pod.Spec.NodeName, v.Why)
	if target != "" {
		msg += fmt.Sprintf("; node %s would take it", target)
	}
	return msg, 0
}
