package detector

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/policies"
)

// Names roam-detector writes; alerts, dashboards and users rely on them
// (docs/design.md).
const (
	// ConditionReachable is the node condition roam-detector maintains.
	ConditionReachable corev1.NodeConditionType = "RoamReachable"
	// ReasonNodeUnreachable is the DisruptionTarget reason, the False
	// condition reason and the Event reason for a lost robot.
	ReasonNodeUnreachable = "RoamNodeUnreachable"
	// ReasonNodeReachable is the True condition reason and the Event reason
	// when a robot is back.
	ReasonNodeReachable = "RoamNodeReachable"
	// ReasonEvictionBrake is the Unknown condition reason and the Event
	// reason while the partition brake holds a node's evictions.
	ReasonEvictionBrake = "RoamEvictionBrake"
	// podNodeIndex indexes pods by spec.nodeName.
	podNodeIndex = "roam.dev/node"
)

// PolicyResolver answers which policies govern a pod; *policies.Store
// implements it.
type PolicyResolver interface {
	ForPod(ev *policies.Evaluator, pod *corev1.Pod) policies.Resolution
}

// PodsByNodeIndexers index a pod informer by spec.nodeName; the Actuator
// needs them on its pod informer.
func PodsByNodeIndexers() cache.Indexers {
	return cache.Indexers{podNodeIndex: func(obj interface{}) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return nil, nil
		}
		return []string{p.Spec.NodeName}, nil
	}}
}

// Actuator carries out the Core's intents against the API: the only part of
// roam-detector that writes. Every operation is idempotent and retried on
// conflicts, so intents may be replayed.
type Actuator struct {
	client   kubernetes.Interface
	pods     cache.Indexer // indexed with PodsByNodeIndexers
	policies PolicyResolver
	recorder record.EventRecorder
	metrics  *Metrics
	clock    clock.PassiveClock

	mu   sync.Mutex // guards eval
	eval *policies.Evaluator

	redeploy *RedeployTracker
}

// NewActuator returns an Actuator. pods must carry PodsByNodeIndexers;
// resolver, recorder and metrics may be nil (no pod is then governed, no
// events, no metrics).
func NewActuator(client kubernetes.Interface, pods cache.Indexer, resolver PolicyResolver,
	recorder record.EventRecorder, metrics *Metrics, clk clock.PassiveClock) *Actuator {
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	return &Actuator{client: client, pods: pods, policies: resolver, recorder: recorder, metrics: metrics,
		clock: clk, eval: policies.NewEvaluator(), redeploy: NewRedeployTracker()}
}

// NodeWant is the state roam-detector wants a node in.
type NodeWant struct {
	Suspected bool
	// Braked: suspected but evictions held by the brake (condition Unknown).
	Braked        bool
	Phi           float64
	Threshold     float64
	LastHeartbeat time.Time
}

func hasTaint(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == policies.UnreachableTaint {
			return true
		}
	}
	return false
}

func condition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ConditionReachable {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// SyncNode brings node's taint and RoamReachable condition to want. A node
// that roam never marked and is not suspected is left untouched (no write).
func (a *Actuator) SyncNode(ctx context.Context, name string, want NodeWant) error {
	logger := klog.FromContext(ctx)
	var node *corev1.Node
	taintChanged := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node = n
		if hasTaint(n) == want.Suspected {
			return nil
		}
		n = n.DeepCopy()
		if want.Suspected {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: policies.UnreachableTaint,
				Effect: corev1.TaintEffectNoSchedule, TimeAdded: &metav1.Time{Time: a.clock.Now()}})
		} else {
			kept := n.Spec.Taints[:0]
			for _, t := range n.Spec.Taints {
				if t.Key != policies.UnreachableTaint {
					kept = append(kept, t)
				}
			}
			n.Spec.Taints = kept
		}
		updated, err := a.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		node, taintChanged = updated, true
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil // deleted: nothing to mark
	}
	if err != nil {
		return fmt.Errorf("%s taint on node %s: %w", policies.UnreachableTaint, name, err)
	}

	cur := condition(node)
	var status corev1.ConditionStatus
	var reason, msg string
	ago := a.clock.Since(want.LastHeartbeat).Round(100 * time.Millisecond)
	switch {
	case want.Suspected && want.Braked:
		status, reason = corev1.ConditionUnknown, ReasonEvictionBrake
		msg = fmt.Sprintf("phi %.1f ≥ threshold %.1f (last heartbeat %v ago), but too many robots are suspected at once: evictions held (partition brake)", want.Phi, want.Threshold, ago)
	case want.Suspected:
		status, reason = corev1.ConditionFalse, ReasonNodeUnreachable
		msg = fmt.Sprintf("phi %.1f ≥ threshold %.1f (last heartbeat %v ago)", want.Phi, want.Threshold, ago)
	default:
		if cur == nil || cur.Status == corev1.ConditionTrue {
			if taintChanged {
				a.recorder.Eventf(node, corev1.EventTypeNormal, ReasonNodeReachable, "Heartbeats resumed: removed taint %s", policies.UnreachableTaint)
			}
			return nil // never marked, or already True
		}
		status, reason = corev1.ConditionTrue, ReasonNodeReachable
		msg = fmt.Sprintf("heartbeats resumed (phi %.1f < threshold %.1f)", want.Phi, want.Threshold)
	}
	if cur != nil && cur.Status == status && cur.Reason == reason {
		return nil
	}
	now := metav1.NewTime(a.clock.Now())
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: ConditionReachable, Status: status, Reason: reason, Message: msg,
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}}})
	if err != nil {
		return fmt.Errorf("condition patch: %w", err)
	}
	if _, err := a.client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s condition on node %s: %w", ConditionReachable, name, err)
	}
	evType := corev1.EventTypeWarning
	if status == corev1.ConditionTrue {
		evType = corev1.EventTypeNormal
	}
	a.recorder.Eventf(node, evType, reason, "%s", msg)
	logger.Info("Node marked", "node", name, "condition", ConditionReachable, "status", status, "reason", reason, "phi", want.Phi)
	return nil
}

// EvictionChoice is what to do with one pod of a lost node.
type EvictionChoice struct {
	Evict bool
	Force bool
	// Why explains a skip.
	Why string
}

// Choose decides about pod: only pods governed by a policy, all of whose
// governing policies say onNodeFailure: reschedule, are evicted; never
// DaemonSet or mirror pods, never finished pods; force deletion (grace 0)
// when a governing policy says forceDelete: "true". A pod already being
// deleted is only touched again to force it.
func (a *Actuator) Choose(pod *corev1.Pod) EvictionChoice {
	if why := Unmovable(pod); why != "" {
		return EvictionChoice{Why: why}
	}
	if a.policies == nil {
		return EvictionChoice{Why: "no policies"}
	}
	a.mu.Lock()
	res := a.policies.ForPod(a.eval, pod)
	a.mu.Unlock()
	if len(res.Policies) == 0 {
		return EvictionChoice{Why: "not governed by a policy"}
	}
	force := false
	for _, p := range res.Policies {
		if p.OnNodeFailure == policies.Keep {
			return EvictionChoice{Why: "policy " + p.Key() + " says onNodeFailure: keep"}
		}
		force = force || p.ForceDelete
	}
	if pod.DeletionTimestamp != nil && !force {
		return EvictionChoice{Why: "already terminating"}
	}
	return EvictionChoice{Evict: true, Force: force}
}

// EvictPods reschedules the governed pods of a lost node: each gets the
// DisruptionTarget condition (reason RoamNodeUnreachable) and is deleted
// with its own grace period, or force-deleted when its policy allows. The
// pods' API calls run concurrently (up to PodWorkers at once), so a robot's
// last pod does not wait for the others'. It returns how many pods it
// deleted; the error joins the pods that failed.
func (a *Actuator) EvictPods(ctx context.Context, node string, phiValue float64) (int, error) {
	logger := klog.FromContext(ctx)
	objs, err := a.pods.ByIndex(podNodeIndex, node)
	if err != nil {
		return 0, fmt.Errorf("pods of node %s: %w", node, err)
	}
	type victim struct {
		pod   *corev1.Pod
		force bool
	}
	var evict []victim
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		ch := a.Choose(pod)
		if !ch.Evict {
			logger.V(4).Info("Not evicting pod", "pod", klog.KObj(pod), "node", node, "why", ch.Why)
			continue
		}
		evict = append(evict, victim{pod, ch.Force})
	}
	var mu sync.Mutex
	deleted := 0
	var errs []error
	workqueue.ParallelizeUntil(ctx, PodWorkers, len(evict), func(i int) {
		err := a.evictPod(ctx, evict[i].pod, evict[i].force, phiValue)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		deleted++
	})
	if len(errs) > 0 {
		return deleted, fmt.Errorf("evicting pods of node %s: %v", node, errs)
	}
	return deleted, nil
}

// PodWorkers bounds the concurrent API calls for the pods of one node.
const PodWorkers = 8

func (a *Actuator) evictPod(ctx context.Context, pod *corev1.Pod, force bool, phiValue float64) error {
	logger := klog.FromContext(ctx)
	msg := fmt.Sprintf("roam-detector: node %s unreachable (phi %.1f)", pod.Spec.NodeName, phiValue)
	now := metav1.NewTime(a.clock.Now())
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: ReasonNodeUnreachable,
		Message: msg, LastTransitionTime: now,
	}}}})
	if err != nil {
		return fmt.Errorf("condition patch: %w", err)
	}
	pods := a.client.CoreV1().Pods(pod.Namespace)
	if _, err := pods.Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("DisruptionTarget on pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	opts := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))}
	if force {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	a.redeploy.Evicted(pod, ReasonUnreachable, a.clock.Now())
	if err := pods.Delete(ctx, pod.Name, opts); err != nil {
		a.redeploy.Cancel(pod)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) { // gone, or a new pod of the same name
			return nil
		}
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	verb := "Deleted"
	if force {
		verb = "Force-deleted"
	}
	a.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonNodeUnreachable, "%s: %s", verb, msg)
	if a.metrics != nil {
		a.metrics.Evictions.WithLabelValues(ReasonUnreachable).Inc()
	}
	logger.Info("Evicted pod of unreachable node", "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "force", force, "phi", phiValue)
	return nil
}

// Actuator returns the controller's actuator (shared by other controllers
// of roam-detector that evict pods).
func (c *Controller) Actuator() *Actuator { return c.actuator }

// ObservePod feeds roam_redeploy_seconds: the first pod of an evicted pod's
// owner to run after the eviction ends the measurement. Register it as the
// pod informer's add/update handler.
func (a *Actuator) ObservePod(pod *corev1.Pod) {
	if pod.Status.Phase != corev1.PodRunning {
		return
	}
	if reason, d, ok := a.redeploy.Running(pod, a.clock.Now()); ok && a.metrics != nil {
		a.metrics.Redeploy.WithLabelValues(reason).Observe(d.Seconds())
	}
}
