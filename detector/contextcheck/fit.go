package contextcheck

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/roam-dev/roam/policies"
)

// maxReasons bounds how many per-node reasons an explanation lists.
const maxReasons = 4

// fitsOtherNode reports whether some node other than pod's own would take
// pod, like the descheduler's PodFitsAnyOtherNode: Ready and schedulable,
// not tainted roam.dev/unreachable, every NoSchedule/NoExecute taint
// tolerated, the pod's required node affinity/selector matched, every
// governing policy's require holding, and cpu, memory, pods and extended
// resources fitting allocatable minus the requests of the pods there.
// podsOn lists the pods bound to a node. When no node fits, why explains
// it node by node.
func (c *Checker) fitsOtherNode(pod *corev1.Pod, pols []*policies.Policy, nodes []*corev1.Node,
	podsOn func(node string) []*corev1.Pod) (string, string) {

	var reasons []string
	req := podRequests(pod)
	affinity := nodeaffinity.GetRequiredNodeAffinity(pod)
	c.env.Pod = policies.PodEnvFor(pod)
	defer func() { c.env = policies.Env{} }()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		if n.Name == pod.Spec.NodeName {
			continue
		}
		why := c.nodeRejects(pod, req, affinity, pols, n, podsOn(n.Name))
		if why == "" {
			return n.Name, ""
		}
		reasons = append(reasons, n.Name+": "+why)
	}
	if len(reasons) == 0 {
		return "", "no other node exists"
	}
	more := ""
	if len(reasons) > maxReasons {
		more = fmt.Sprintf(" (and %d more nodes)", len(reasons)-maxReasons)
		reasons = reasons[:maxReasons]
	}
	return "", strings.Join(reasons, "; ") + more
}

// nodeRejects says why n would not take pod, or "".
func (c *Checker) nodeRejects(pod *corev1.Pod, req corev1.ResourceList, affinity nodeaffinity.RequiredNodeAffinity,
	pols []*policies.Policy, n *corev1.Node, there []*corev1.Pod) string {

	if n.Spec.Unschedulable {
		return "unschedulable"
	}
	ready := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return "not Ready"
	}
	for _, t := range n.Spec.Taints {
		if t.Key == policies.UnreachableTaint {
			return "tainted " + policies.UnreachableTaint
		}
	}
	if t, bad := corev1helpers.FindMatchingUntoleratedTaint(n.Spec.Taints, pod.Spec.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}); bad {
		return fmt.Sprintf("taint %s:%s not tolerated", t.Key, t.Effect)
	}
	if ok, err := affinity.Match(n); err != nil || !ok {
		return "node selector/affinity does not match"
	}
	c.env.Node = policies.NodeEnvFor(n, policies.RequestedBy(there))
	for _, p := range pols {
		ok, err := p.Require(c.eval, &c.env)
		if err != nil {
			return fmt.Sprintf("policy %s: require failed: %v", p.Key(), err)
		}
		if !ok {
			return fmt.Sprintf("policy %s: require false", p.Key())
		}
	}
	used := corev1.ResourceList{}
	count := int64(0)
	for _, o := range there {
		if o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			continue
		}
		count++
		for name, q := range resourcehelper.PodRequests(o, resourcehelper.PodResourcesOptions{}) {
			cur := used[name]
			cur.Add(q)
			used[name] = cur
		}
	}
	if limit, ok := n.Status.Allocatable[corev1.ResourcePods]; ok && count+1 > limit.Value() {
		return "too many pods"
	}
	for name, q := range req {
		if q.IsZero() {
			continue
		}
		alloc, ok := n.Status.Allocatable[name]
		if !ok {
			return fmt.Sprintf("no %s", name)
		}
		free := alloc.DeepCopy()
		free.Sub(used[name])
		if free.Cmp(q) < 0 {
			return fmt.Sprintf("insufficient %s", name)
		}
	}
	return ""
}

// podRequests is the pod's effective request as the scheduler computes it.
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}
