// Package evict is roam-detector's one evictor: the only part of roam that
// removes pods. Two controllers decide which pods go — the lost-robot
// controller (package detector) and the context controller (package
// detector/contextcheck) — and hand them here. The evictor owns what both
// share: the rate limits (lost robots in nodes per second, context changes
// in pods per second), the DisruptionTarget condition that says why a pod
// goes, the two ways to remove one (delete with the pod's grace, or force,
// for a lost robot whose kubelet cannot answer; the Eviction API, which
// respects PodDisruptionBudgets, for a robot that is there but no longer
// fits), concurrency per node, Events, roam_evictions_total and the
// measurement of roam_redeploy_seconds.
//
// It has the shape of the descheduler's PodEvictor: callers ask, the
// evictor limits and acts.
package evict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// DisruptionTarget reasons and Event reasons.
const (
	// ReasonNodeUnreachable: the pod's robot is lost.
	ReasonNodeUnreachable = "RoamNodeUnreachable"
	// ReasonContextChanged: the pod's robot no longer satisfies its
	// policies.
	ReasonContextChanged = "RoamContextChanged"
	// ReasonEvictionRefused (Warning Event): the Eviction API refused
	// (usually a PodDisruptionBudget, HTTP 429).
	ReasonEvictionRefused = "RoamEvictionRefused"
)

// Metric label values of roam_evictions_total{reason} and
// roam_redeploy_seconds{reason}.
const (
	MetricUnreachable = "unreachable"
	MetricContext     = "context"
)

// Defaults of Limits, each with its reason.
const (
	// DefaultNodeRate (nodes per second) and DefaultNodeBurst bound how fast
	// lost robots are emptied: the burst covers a few robots lost at once,
	// the rate stops a runaway (stock kube-controller-manager evicts 0.1
	// nodes/s per zone after its 5-minute timeout; roam acts in seconds).
	DefaultNodeRate  = 1.0
	DefaultNodeBurst = 10
	// DefaultPodRate (pods per second) and DefaultPodBurst bound context
	// evictions: a robot carries a handful of pods, so a few robots
	// changing context at once pass within the burst, while a policy edit
	// that suddenly excludes half the fleet is drained at 5 pods a second.
	DefaultPodRate  = 5.0
	DefaultPodBurst = 20
	// DefaultWorkers bounds the concurrent API calls for the pods of one
	// node, so a robot's last pod does not wait for the others'.
	DefaultWorkers = 8
)

// ErrRefused wraps an eviction the API refused (a PodDisruptionBudget:
// HTTP 429); the caller retries with backoff.
var ErrRefused = errors.New("eviction refused")

// Limits are the evictor's rate limits.
type Limits struct {
	// NodesPerSecond and NodeBurst: lost robots emptied (one token per
	// robot, whatever its pod count).
	NodesPerSecond float64
	NodeBurst      int
	// PodsPerSecond and PodBurst: pods evicted after context changes.
	PodsPerSecond float64
	PodBurst      int
}

// DefaultLimits are roam-detector's defaults.
func DefaultLimits() Limits {
	return Limits{NodesPerSecond: DefaultNodeRate, NodeBurst: DefaultNodeBurst, PodsPerSecond: DefaultPodRate, PodBurst: DefaultPodBurst}
}

// Validate reports the first invalid limit.
func (l Limits) Validate() error {
	switch {
	case !(l.NodesPerSecond > 0):
		return fmt.Errorf("node eviction rate %v must be positive", l.NodesPerSecond)
	case l.NodeBurst < 1:
		return fmt.Errorf("node eviction burst %d must be at least 1", l.NodeBurst)
	case !(l.PodsPerSecond > 0):
		return fmt.Errorf("pod eviction rate %v must be positive", l.PodsPerSecond)
	case l.PodBurst < 1:
		return fmt.Errorf("pod eviction burst %d must be at least 1", l.PodBurst)
	}
	return nil
}

// Metrics the evictor feeds; any field may be nil.
type Metrics struct {
	// Evictions is roam_evictions_total{reason}.
	Evictions *prometheus.CounterVec
	// Redeploy is roam_redeploy_seconds{reason}.
	Redeploy *prometheus.HistogramVec
}

// Options configure an Evictor.
type Options struct {
	Limits Limits
	// Workers: concurrent API calls per batch of pods (DefaultWorkers).
	Workers int
	// Clock (default: the real clock).
	Clock clock.PassiveClock
	// Recorder emits Events on pods (optional).
	Recorder record.EventRecorder
	Metrics  Metrics
}

// Evictor removes pods. Safe for concurrent use.
type Evictor struct {
	client   kubernetes.Interface
	clock    clock.PassiveClock
	recorder record.EventRecorder
	metrics  Metrics
	workers  int
	nodes    *rate.Limiter
	pods     *rate.Limiter
	redeploy *RedeployTracker

	mu       sync.Mutex
	admitted map[string]bool // lost robots holding a node token
}

// New returns an Evictor.
func New(client kubernetes.Interface, opts Options) (*Evictor, error) {
	if err := opts.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("evictor: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Recorder == nil {
		opts.Recorder = &record.FakeRecorder{}
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	return &Evictor{
		client: client, clock: opts.Clock, recorder: opts.Recorder, metrics: opts.Metrics, workers: opts.Workers,
		nodes:    rate.NewLimiter(rate.Limit(opts.Limits.NodesPerSecond), opts.Limits.NodeBurst),
		pods:     rate.NewLimiter(rate.Limit(opts.Limits.PodsPerSecond), opts.Limits.PodBurst),
		redeploy: NewRedeployTracker(),
		admitted: map[string]bool{},
	}, nil
}

// AdmitNode takes a token of the node rate limit for emptying the lost
// robot node, once per loss. It returns 0 when the robot may be emptied
// now (also when it already holds its token), else how long to wait
// before asking again (no token is taken then).
func (e *Evictor) AdmitNode(node string) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.admitted[node] {
		return 0
	}
	now := e.clock.Now()
	r := e.nodes.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	e.admitted[node] = true
	return 0
}

// ReleaseNode ends node's loss (it recovered or was deleted): a later loss
// needs a new token.
func (e *Evictor) ReleaseNode(node string) {
	e.mu.Lock()
	delete(e.admitted, node)
	e.mu.Unlock()
}

// Removal is one pod of a lost robot to delete.
type Removal struct {
	Pod *corev1.Pod
	// Force deletes with grace 0 (the pod's policy allows it).
	Force bool
}

// DeleteLost removes the pods of the lost robot node (admitted with
// AdmitNode): each gets the DisruptionTarget condition (reason
// RoamNodeUnreachable, message msg) and is deleted with its own grace
// period, or at once when forced. Up to Workers pods are handled at once.
// It returns how many pods it deleted; the error joins the pods that
// failed.
func (e *Evictor) DeleteLost(ctx context.Context, node string, pods []Removal, msg string) (int, error) {
	var mu sync.Mutex
	deleted := 0
	var errs []error
	workqueue.ParallelizeUntil(ctx, e.workers, len(pods), func(i int) {
		err := e.deleteLost(ctx, pods[i], msg)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		deleted++
	})
	if err := errors.Join(errs...); err != nil {
		return deleted, fmt.Errorf("removing pods of node %s: %w", node, err)
	}
	return deleted, nil
}

func (e *Evictor) deleteLost(ctx context.Context, r Removal, msg string) error {
	pod := r.Pod
	if err := e.setCondition(ctx, pod, ReasonNodeUnreachable, msg); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	opts := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))}
	if r.Force {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	e.redeploy.Evicted(pod, MetricUnreachable, e.clock.Now())
	if err := e.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opts); err != nil {
		e.redeploy.Cancel(pod)
		if gone(err) {
			return nil
		}
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	verb := "Deleted"
	if r.Force {
		verb = "Force-deleted"
	}
	e.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonNodeUnreachable, "%s: %s", verb, msg)
	e.count(MetricUnreachable)
	klog.FromContext(ctx).Info("Removed pod of unreachable node", "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "force", r.Force)
	return nil
}

// gone: the pod is gone, or a new pod of the same name replaced it.
func gone(err error) bool { return apierrors.IsNotFound(err) || apierrors.IsConflict(err) }

func (e *Evictor) count(reason string) {
	if e.metrics.Evictions != nil {
		e.metrics.Evictions.WithLabelValues(reason).Inc()
	}
}

// Eviction is one pod to evict after a context change.
type Eviction struct {
	Pod *corev1.Pod
	// Message is the DisruptionTarget message: why the pod goes.
	Message string
}

// Outcome is what became of one pod handed to EvictContext.
type Outcome struct {
	// Done: the pod was evicted or is gone.
	Done bool
	// Wait: rate-limited, ask again after this long.
	Wait time.Duration
	// Err: the eviction failed (a PodDisruptionBudget refusal wraps
	// ErrRefused).
	Err error
}

// EvictContext evicts pods through the Eviction API (policy/v1), up to
// Workers at once, and reports each pod's outcome (same order). For each:
// a dry run first, so a PodDisruptionBudget refusal leaves the pod
// untouched; then a token of the pod rate limit; then the DisruptionTarget
// condition (reason RoamContextChanged) and the eviction. The API server
// replaces the condition's reason with EvictionByEvictionAPI when it
// evicts, so the condition is set again afterwards: the terminating pod
// says why it goes.
func (e *Evictor) EvictContext(ctx context.Context, pods []Eviction) []Outcome {
	out := make([]Outcome, len(pods))
	workqueue.ParallelizeUntil(ctx, e.workers, len(pods), func(i int) {
		d, err := e.evictContext(ctx, pods[i])
		out[i] = Outcome{Done: d == 0 && err == nil, Wait: d, Err: err}
	})
	return out
}

func (e *Evictor) evictContext(ctx context.Context, ev Eviction) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	pod := ev.Pod
	evictions := e.client.PolicyV1().Evictions(pod.Namespace)
	eviction := func(dryRun bool) *policyv1.Eviction {
		x := &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))},
		}
		if dryRun {
			x.DeleteOptions.DryRun = []string{metav1.DryRunAll}
		}
		return x
	}
	refused := func(err error) (time.Duration, error) {
		e.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonEvictionRefused,
			"Eviction after a context change refused, retrying with backoff: %v", err)
		logger.Info("Context eviction refused, retrying", "pod", klog.KObj(pod), "err", err)
		return 0, fmt.Errorf("evicting pod %s/%s: %w: %w", pod.Namespace, pod.Name, ErrRefused, err)
	}
	if err := evictions.Evict(ctx, eviction(true)); err != nil {
		if gone(err) {
			return 0, nil
		}
		if apierrors.IsTooManyRequests(err) {
			return refused(err)
		}
		return 0, fmt.Errorf("evicting pod %s/%s (dry run): %w", pod.Namespace, pod.Name, err)
	}
	now := e.clock.Now()
	if r := e.pods.ReserveN(now, 1); !r.OK() {
		return time.Second, nil
	} else if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		logger.V(2).Info("Context eviction rate-limited", "pod", klog.KObj(pod), "wait", d)
		return d, nil
	}
	if err := e.setCondition(ctx, pod, ReasonContextChanged, ev.Message); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, err
	}
	e.redeploy.Evicted(pod, MetricContext, e.clock.Now())
	if err := evictions.Evict(ctx, eviction(false)); err != nil {
		e.redeploy.Cancel(pod)
		if gone(err) {
			return 0, nil
		}
		if apierrors.IsTooManyRequests(err) {
			return refused(err)
		}
		return 0, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := e.setCondition(ctx, pod, ReasonContextChanged, ev.Message); err != nil && !apierrors.IsNotFound(err) {
		logger.V(2).Info("Could not restore the DisruptionTarget reason after eviction", "pod", klog.KObj(pod), "err", err)
	}
	e.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonContextChanged, "Evicted: %s", ev.Message)
	e.count(MetricContext)
	logger.Info("Evicted pod after context change", "pod", klog.KObj(pod), "node", pod.Spec.NodeName)
	return 0, nil
}

// setCondition patches the pod's DisruptionTarget condition through
// pods/status.
func (e *Evictor) setCondition(ctx context.Context, pod *corev1.Pod, reason, msg string) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: reason,
		Message: msg, LastTransitionTime: metav1.NewTime(e.clock.Now()),
	}}}})
	if err != nil {
		return fmt.Errorf("condition patch: %w", err)
	}
	if _, err := e.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("DisruptionTarget on pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// ObservePod feeds roam_redeploy_seconds: the first pod of an evicted
// pod's owner to run after the eviction ends the measurement. Call it for
// every pod add and update.
func (e *Evictor) ObservePod(pod *corev1.Pod) {
	if pod.Status.Phase != corev1.PodRunning {
		return
	}
	if reason, d, ok := e.redeploy.Running(pod, e.clock.Now()); ok && e.metrics.Redeploy != nil {
		e.metrics.Redeploy.WithLabelValues(reason).Observe(d.Seconds())
	}
}

// PodNodeIndex is the name of the pods-by-node index PodsByNodeIndexers
// adds to a pod informer; both controllers share it.
const PodNodeIndex = "roam.dev/node"

// PodsByNodeIndexers index a pod informer by spec.nodeName.
func PodsByNodeIndexers() cache.Indexers {
	return cache.Indexers{PodNodeIndex: func(obj interface{}) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return nil, nil
		}
		return []string{p.Spec.NodeName}, nil
	}}
}

// AddPodIndex adds PodsByNodeIndexers to inf unless it has them already.
func AddPodIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[PodNodeIndex]; ok {
		return nil
	}
	if err := inf.AddIndexers(PodsByNodeIndexers()); err != nil {
		return fmt.Errorf("pod index %s: %w", PodNodeIndex, err)
	}
	return nil
}

// PodsOn lists the pods bound to node from an informer indexed with
// PodsByNodeIndexers.
func PodsOn(pods cache.Indexer, node string) []*corev1.Pod {
	objs, err := pods.ByIndex(PodNodeIndex, node)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}
