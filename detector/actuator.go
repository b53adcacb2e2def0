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
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// Names roam-detector writes; alerts, dashboards and users rely on them
// (docs/design.md).
const (
	// ConditionReachable is the node condition roam-detector maintains.
	ConditionReachable corev1.NodeConditionType = "RoamReachable"
	// ReasonNodeUnreachable is the DisruptionTarget reason, the False
	// condition reason and the Event reason for a lost robot.
	ReasonNodeUnreachable = evict.ReasonNodeUnreachable
	// ReasonNodeReachable is the True condition reason and the Event reason
	// when a robot is reachable.
	ReasonNodeReachable = "RoamNodeReachable"
	// ReasonEvictionBrake is the Unknown condition reason and the Event
	// reason while the partition brake holds a node's evictions.
	ReasonEvictionBrake = "RoamEvictionBrake"
)

// PolicyResolver answers which policies govern a pod; *policies.Store
// implements it.
type PolicyResolver interface {
	ForPod(ev *policies.Evaluator, pod *corev1.Pod) policies.Resolution
}

// Actuator marks nodes (roam's taint and the RoamReachable condition) and
// decides which pods of a lost robot go; the evictor removes them. Every
// operation is idempotent and retried on conflicts, so it may be replayed.
type Actuator struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister // nil: read nodes from the API
	pods     cache.Indexer          // indexed with evict.PodsByNodeIndexers
	policies PolicyResolver
	recorder record.EventRecorder
	clock    clock.PassiveClock
	evictor  *evict.Evictor

	mu   sync.Mutex // guards eval
	eval *policies.Evaluator
}

// NewActuator returns an Actuator. pods must carry evict.PodsByNodeIndexers;
// resolver and recorder may be nil (no pod is then governed, no events).
func NewActuator(client kubernetes.Interface, nodes corelisters.NodeLister, pods cache.Indexer, resolver PolicyResolver,
	recorder record.EventRecorder, evictor *evict.Evictor, clk clock.PassiveClock) *Actuator {
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	return &Actuator{client: client, nodes: nodes, pods: pods, policies: resolver, recorder: recorder, evictor: evictor,
		clock: clk, eval: policies.NewEvaluator()}
}

// NodeWant is the state roam-detector wants a node in: suspected (tainted,
// RoamReachable False, or Unknown when braked) or reachable (untainted,
// RoamReachable True).
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

// SyncNode brings node's taint and RoamReachable condition to want. Every
// node the detector judges carries the condition (True when reachable);
// nothing is written when both are already right.
func (a *Actuator) SyncNode(ctx context.Context, name string, want NodeWant) error {
	logger := klog.FromContext(ctx)
	if a.nodes != nil {
		// The informer's copy answers the common case without a request:
		// nothing to change.
		n, err := a.nodes.Get(name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil && marked(n, want) {
			return nil
		}
	}
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
		if taintChanged {
			a.recorder.Eventf(node, corev1.EventTypeNormal, ReasonNodeReachable, "Heartbeats resumed: removed taint %s", policies.UnreachableTaint)
		}
		status, reason = corev1.ConditionTrue, ReasonNodeReachable
		msg = fmt.Sprintf("heartbeating (phi %.1f < threshold %.1f)", want.Phi, want.Threshold)
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
	switch {
	case status != corev1.ConditionTrue:
		a.recorder.Eventf(node, corev1.EventTypeWarning, reason, "%s", msg)
	case cur != nil:
		a.recorder.Eventf(node, corev1.EventTypeNormal, reason, "%s", msg) // back from False or Unknown
	}
	logger.Info("Node marked", "node", name, "condition", ConditionReachable, "status", status, "reason", reason, "phi", want.Phi)
	return nil
}

// wantCondition is the RoamReachable status and reason for want.
func wantCondition(want NodeWant) (corev1.ConditionStatus, string) {
	switch {
	case want.Suspected && want.Braked:
		return corev1.ConditionUnknown, ReasonEvictionBrake
	case want.Suspected:
		return corev1.ConditionFalse, ReasonNodeUnreachable
	}
	return corev1.ConditionTrue, ReasonNodeReachable
}

// marked reports whether n already carries want's taint and condition.
func marked(n *corev1.Node, want NodeWant) bool {
	status, reason := wantCondition(want)
	c := condition(n)
	return hasTaint(n) == want.Suspected && c != nil && c.Status == status && c.Reason == reason
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
	if why := evict.Unmovable(pod); why != "" {
		return EvictionChoice{Why: why}
	}
	f := a.Failure(pod)
	if !f.Move {
		return EvictionChoice{Why: f.Why}
	}
	force := f.Force
	if pod.DeletionTimestamp != nil && !force {
		return EvictionChoice{Why: "already terminating"}
	}
	return EvictionChoice{Evict: true, Force: force}
}

// Failure is what the policies governing pod say about it on node failure.
func (a *Actuator) Failure(pod *corev1.Pod) policies.Failure {
	if a.policies == nil {
		return policies.Failure{Why: "no policies"}
	}
	a.mu.Lock()
	res := a.policies.ForPod(a.eval, pod)
	a.mu.Unlock()
	return policies.OnNodeFailure(res)
}

// EvictPods hands the governed pods of the lost robot node to the evictor
// (see Choose), once the evictor's node rate limit admits the robot. It
// returns how many pods were deleted, or how long to wait for the rate
// limit; the error joins the pods that failed.
func (a *Actuator) EvictPods(ctx context.Context, node string, phiValue float64) (int, time.Duration, error) {
	if wait := a.evictor.AdmitNode(node); wait > 0 {
		klog.FromContext(ctx).V(2).Info("Eviction rate-limited", "node", node, "wait", wait)
		return 0, wait, nil
	}
	logger := klog.FromContext(ctx)
	var victims []evict.Removal
	for _, pod := range evict.PodsOn(a.pods, node) {
		ch := a.Choose(pod)
		if !ch.Evict {
			logger.V(4).Info("Not evicting pod", "pod", klog.KObj(pod), "node", node, "why", ch.Why)
			continue
		}
		victims = append(victims, evict.Removal{Pod: pod, Force: ch.Force})
	}
	msg := fmt.Sprintf("roam-detector: node %s unreachable (phi %.1f)", node, phiValue)
	n, err := a.evictor.DeleteLost(ctx, node, victims, msg)
	return n, 0, err
}
