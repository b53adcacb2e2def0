// Package contextcheck is roam-detector's context-change redeployment: when
// a robot's labels, annotations or allocatable devices change (it drove
// from the hospital into the store, lost a camera), it re-checks the
// `require` of every policy governing each pod bound to that robot, and
// after the policy's `settle` window evicts the pods whose robot no longer
// qualifies, through the Eviction API, when another robot would take them.
//
// Data flows one way, as in the descheduler ("plugins decide, one evictor
// acts"): node or policy change → re-check (Checker, pure) → pending
// violation on an injected clock → decision after settle (alternative node,
// rate limit) → eviction (the only writes).
package contextcheck

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/policies"
)

// mirrorPodAnnotation marks static (mirror) pods (same as the detector's).
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// Verdict is the outcome of re-checking one pod on its node.
type Verdict struct {
	Pod *corev1.Pod
	// Policies are all the policies governing the pod.
	Policies []*policies.Policy
	// Violated lists the governing policies whose require no longer holds
	// on the pod's node (or failed to evaluate).
	Violated []*policies.Policy
	// Why explains the violation (policy keys and errors).
	Why string
	// Reschedule is true when every violated policy says
	// onContextChange: reschedule.
	Reschedule bool
	// Settle is the longest settle window of the violated policies.
	Settle time.Duration
}

// skipReason says why a pod is never a context-change candidate, or "".
func skipReason(pod *corev1.Pod) string {
	switch {
	case pod.DeletionTimestamp != nil:
		return "terminating"
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return "finished"
	}
	if _, ok := pod.Annotations[mirrorPodAnnotation]; ok {
		return "mirror pod"
	}
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == "DaemonSet" {
		return "DaemonSet pod"
	}
	return ""
}

// hasExtendedRequests reports, without allocating, whether any container
// of pod requests an extended resource (a device).
func hasExtendedRequests(pod *corev1.Pod) bool {
	for i := range pod.Spec.Containers {
		for name := range pod.Spec.Containers[i].Resources.Requests {
			if policies.IsExtendedResourceName(name) {
				return true
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		for name := range pod.Spec.InitContainers[i].Resources.Requests {
			if policies.IsExtendedResourceName(name) {
				return true
			}
		}
	}
	return false
}

// Checker re-checks policies of the pods on a node. It is not safe for
// concurrent use (it owns an Evaluator); the Controller keeps a pool.
type Checker struct {
	resolver detector.PolicyResolver
	eval     *policies.Evaluator
	env      policies.Env
}

// NewChecker returns a Checker resolving policies through resolver.
func NewChecker(resolver detector.PolicyResolver) *Checker {
	return &Checker{resolver: resolver, eval: policies.NewEvaluator()}
}

// Check re-checks every candidate pod of pods (the pods bound to node) and
// returns the violations; pods whose policies all hold are not returned.
// When re-checking a pod, its own device requests do not count against the
// node's free devices: it already runs there, so a policy requiring
// `node.devices["roam.dev/camera"] >= 1` keeps holding for the pod using
// the robot's only camera.
func (c *Checker) Check(node *corev1.Node, pods []*corev1.Pod, out []Verdict) []Verdict {
	var total map[corev1.ResourceName]int64
	var own map[*corev1.Pod]map[corev1.ResourceName]int64
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || !hasExtendedRequests(p) {
			continue
		}
		req := policies.RequestedBy([]*corev1.Pod{p})
		if own == nil {
			own = make(map[*corev1.Pod]map[corev1.ResourceName]int64)
			total = make(map[corev1.ResourceName]int64, len(req))
		}
		own[p] = req
		for k, v := range req {
			total[k] += v
		}
	}
	base := policies.NodeEnvFor(node, total)
	for _, pod := range pods {
		if skipReason(pod) != "" {
			continue
		}
		res := c.resolver.ForPod(c.eval, pod)
		if len(res.Policies) == 0 {
			continue
		}
		c.env.Node = base
		if req := own[pod]; req != nil {
			minus := make(map[corev1.ResourceName]int64, len(total))
			for k, v := range total {
				minus[k] = v - req[k]
			}
			c.env.Node = policies.NodeEnvFor(node, minus)
		}
		c.env.Pod = policies.PodEnvFor(pod)
		var v Verdict
		var why []string
		for _, p := range res.Policies {
			ok, err := p.Require(c.eval, &c.env)
			if ok && err == nil {
				continue
			}
			v.Violated = append(v.Violated, p)
			if err != nil {
				why = append(why, fmt.Sprintf("policy %s: require failed to evaluate: %v", p.Key(), err))
			} else {
				why = append(why, fmt.Sprintf("policy %s: require no longer holds", p.Key()))
			}
		}
		if len(v.Violated) == 0 {
			continue
		}
		v.Pod = pod
		v.Policies = res.Policies
		v.Why = strings.Join(why, "; ")
		v.Reschedule = true
		for _, p := range v.Violated {
			if p.OnContextChange == policies.Keep {
				v.Reschedule = false
			}
			if p.Settle > v.Settle {
				v.Settle = p.Settle
			}
		}
		out = append(out, v)
	}
	c.env = policies.Env{}
	return out
}
