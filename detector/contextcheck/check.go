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
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

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
	if pod.DeletionTimestamp != nil {
		return "terminating"
	}
	return evict.Unmovable(pod)
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
	res  *resolutions
	eval *policies.Evaluator
	env  policies.Env
}

// NewChecker returns a Checker resolving policies through resolver (no
// caching: every Check resolves every pod).
// PolicyResolver answers which policies govern a pod; *policies.Store
// implements it.
type PolicyResolver interface {
	ForPod(ev *policies.Evaluator, pod *corev1.Pod) policies.Resolution
}

func NewChecker(resolver PolicyResolver) *Checker {
	return &Checker{res: newResolutions(resolver, false), eval: policies.NewEvaluator()}
}

// resolutions caches, per pod, the policies governing it and its own
// extended-resource requests. An entry is valid for the exact pod object
// (informer objects are immutable: a new version is a new pointer) and
// the policy generation it was resolved at; the generation moves on every
// policy change, so a cached answer is never stale.
type resolutions struct {
	resolver PolicyResolver
	tracked  bool // resolver reports changes: caching is safe
	gen      atomic.Uint64
	mu       sync.RWMutex
	m        map[types.UID]*resolved
}

type resolved struct {
	pod  *corev1.Pod
	gen  uint64
	pols []*policies.Policy
	own  map[corev1.ResourceName]int64 // nil: no extended requests
}

func newResolutions(resolver PolicyResolver, tracked bool) *resolutions {
	return &resolutions{resolver: resolver, tracked: tracked, m: map[types.UID]*resolved{}}
}

func (r *resolutions) get(ev *policies.Evaluator, pod *corev1.Pod) *resolved {
	g := r.gen.Load()
	if r.tracked {
		r.mu.RLock()
		e := r.m[pod.UID]
		r.mu.RUnlock()
		if e != nil && e.pod == pod && e.gen == g {
			return e
		}
	}
	e := &resolved{pod: pod, gen: g, pols: r.resolver.ForPod(ev, pod).Policies}
	if hasExtendedRequests(pod) {
		e.own = policies.RequestedBy([]*corev1.Pod{pod})
	}
	if r.tracked {
		r.mu.Lock()
		r.m[pod.UID] = e
		r.mu.Unlock()
	}
	return e
}

func (r *resolutions) forget(uid types.UID) {
	r.mu.Lock()
	delete(r.m, uid)
	r.mu.Unlock()
}

// Check re-checks every candidate pod of pods (the pods bound to node) and
// returns the violations; pods whose policies all hold are not returned.
// When re-checking a pod, its own device requests do not count against the
// node's free devices: it already runs there, so a policy requiring
// `node.devices["roam.dev/camera"] >= 1` keeps holding for the pod using
// the robot's only camera.
func (c *Checker) Check(node *corev1.Node, pods []*corev1.Pod, out []Verdict) []Verdict {
	var total map[corev1.ResourceName]int64
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || !hasExtendedRequests(p) {
			continue
		}
		for k, v := range c.res.get(c.eval, p).own {
			if total == nil {
				total = make(map[corev1.ResourceName]int64)
			}
			total[k] += v
		}
	}
	base := policies.NodeEnvFor(node, total)
	for _, pod := range pods {
		if skipReason(pod) != "" {
			continue
		}
		r := c.res.get(c.eval, pod)
		if len(r.pols) == 0 {
			continue
		}
		c.env.Node = base
		if r.own != nil {
			// Free devices as if this pod did not run here.
			devices := make(map[string]float64, len(base.Devices))
			for name, alloc := range base.Capacity {
				free := alloc - float64(total[corev1.ResourceName(name)]-r.own[corev1.ResourceName(name)])
				if free < 0 {
					free = 0
				}
				devices[name] = free
			}
			c.env.Node.Devices = devices
		}
		c.env.Pod = policies.PodEnvFor(pod)
		var v Verdict
		var why []string
		for _, p := range r.pols {
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
		v.Policies = r.pols
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
