package policy

import (
	"context"
	"fmt"
	"maps"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/roam-dev/roam/policies"
)

// EventsToRegister returns the cluster events after which a pod RoamPolicy
// rejected may fit, each with a QueueingHint that requeues only the pods
// that could now pass:
//   - Node add and label/annotation/allocatable/taint updates: the pod's
//     requires hold on the new node and did not on the old one;
//   - the pod's own label/annotation updates (they decide which policies
//     govern it, and its target);
//   - deletion (or request scale-down) of an assigned pod holding extended
//     resources: devices became free.
//
// Policy changes are not cluster events the scheduler watches: the Store's
// change hook (onPolicyChange) moves the pods a changed policy governs to
// the active queue through the framework's PodActivator (handle.Activate),
// which also covers a pod that is in flight at that moment.
func (pl *Plugin) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{
			Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeLabel |
				fwk.UpdateNodeAnnotation | fwk.UpdateNodeAllocatable | fwk.UpdateNodeTaint},
			QueueingHintFn: pl.isSchedulableAfterNodeChange,
		},
		{
			Event:          fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Update | fwk.Delete},
			QueueingHintFn: pl.isSchedulableAfterPodChange,
		},
	}, nil
}

func (pl *Plugin) isSchedulableAfterNodeChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	newNode, ok := newObj.(*v1.Node)
	if !ok {
		return fwk.Queue, fmt.Errorf("%s: want *v1.Node, got %T", Name, newObj)
	}
	oldNode, _ := oldObj.(*v1.Node)
	ev := pl.evaluator()
	defer pl.release(ev)
	res := pl.store.ForPod(ev, pod)
	switch {
	case res.Blocked != "":
		return fwk.QueueSkip, nil // only a policy change helps
	case len(res.Policies) == 0:
		return fwk.Queue, nil // no longer governed
	}
	if !pl.couldPass(ev, res.Policies, pod, newNode) {
		logger.V(5).Info("Node change does not make the pod pass its policies", "pod", klog.KObj(pod), "node", klog.KObj(newNode))
		return fwk.QueueSkip, nil
	}
	if oldNode != nil && pl.couldPass(ev, res.Policies, pod, oldNode) {
		return fwk.QueueSkip, nil // it passed before: this change is not what RoamPolicy rejected
	}
	logger.V(5).Info("Node change may make the pod pass its policies", "pod", klog.KObj(pod), "node", klog.KObj(newNode))
	return fwk.Queue, nil
}

// couldPass reports whether node could pass Filter for pod, counting every
// allocatable device as free (the hint sees no pods); an evaluation error
// counts as passing so the pod is retried rather than stuck.
func (pl *Plugin) couldPass(ev *policies.Evaluator, ps []*policies.Policy, pod *v1.Pod, node *v1.Node) bool {
	if *pl.args.RejectUnreachable && hasUnreachableTaint(node) {
		return false
	}
	env := policies.Env{Node: policies.NodeEnvFor(node, nil), Pod: policies.PodEnvFor(pod)}
	for _, p := range ps {
		if ok, err := p.Require(ev, &env); err == nil && !ok {
			return false
		}
	}
	return true
}

func (pl *Plugin) isSchedulableAfterPodChange(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldPod, _ := oldObj.(*v1.Pod)
	newPod, _ := newObj.(*v1.Pod)
	switch {
	case newPod != nil && newPod.UID == pod.UID: // the pod itself
		if oldPod == nil || !maps.Equal(oldPod.Labels, newPod.Labels) || !maps.Equal(oldPod.Annotations, newPod.Annotations) {
			return fwk.Queue, nil
		}
		return fwk.QueueSkip, nil
	case newPod == nil && oldPod != nil: // deleted
		if oldPod.Spec.NodeName != "" && len(policies.RequestedBy([]*v1.Pod{oldPod})) > 0 {
			return fwk.Queue, nil
		}
		return fwk.QueueSkip, nil
	case newPod != nil && oldPod != nil && newPod.Spec.NodeName != "": // another assigned pod
		before, after := policies.RequestedBy([]*v1.Pod{oldPod}), policies.RequestedBy([]*v1.Pod{newPod})
		for name, q := range before {
			if after[name] < q {
				return fwk.Queue, nil
			}
		}
	}
	return fwk.QueueSkip, nil
}

// onPolicyChange requeues the pending pods a changed policy governed
// before or governs now (by name or by match). It runs in the policy
// informer's goroutine after the Store serves the new version, so the
// requeued pods see it.
func (pl *Plugin) onPolicyChange(c policies.Change) {
	if pl.podLister == nil || pl.podsSync == nil || !pl.podsSync() {
		return // the scheduler is not running yet: its queue is empty
	}
	pods, err := pl.podLister.List(labels.Everything())
	if err != nil {
		pl.logger.Error(err, "Listing pods to requeue after a policy change", "policy", c.Key)
		return
	}
	ev := pl.evaluator()
	defer pl.release(ev)
	activate := make(map[string]*v1.Pod)
	for _, pod := range pods {
		if pod.Spec.NodeName == "" && c.Concerns(ev, pod, pl.store.GlobalNamespace()) {
			activate[pod.Namespace+"/"+pod.Name] = pod
		}
	}
	if len(activate) > 0 {
		pl.logger.V(3).Info("Policy changed: requeueing the pending pods it governs", "policy", c.Key, "pods", len(activate))
		pl.handle.Activate(pl.logger, activate)
	}
}
