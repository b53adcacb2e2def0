package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// preFilterStateKey is where PreFilter leaves the pod's preFilterState.
const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// preFilterState is what PreFilter resolved for the pod. It is read-only
// once written, so Clone (preemption's and nominated pods' copies of the
// cycle state) shares it.
type preFilterState struct {
	policies []*policies.Policy // govern the pod (sorted by key); all requires must hold
	reasons  []string           // Filter's reason when policies[i]'s require is false
	static   bool               // some policy's require has a node-object part
	pod      policies.PodEnv
	scoring  int              // how many of policies have a score (0 when policyWeight is 0)
	want     *capability.Want // roam's built-in preferences (nil: none apply)
}

// Clone implements fwk.StateData.
func (s *preFilterState) Clone() fwk.StateData { return s }

// readState returns the state of type T that key holds in state.
func readState[T fwk.StateData](state fwk.CycleState, key fwk.StateKey) (T, error) {
	v, err := state.Read(key)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: reading %q from the cycle state: %w", Name, key, err)
	}
	s, ok := v.(T)
	if !ok {
		return s, fmt.Errorf("%s: %q holds %T, not %T", Name, key, v, s)
	}
	return s, nil
}

// ReasonRequireFalse is the Filter reason when policy key's require does not
// hold on a node; the scheduler counts identical reasons across nodes, so
// `kubectl describe pod` reads e.g. "9 policy ns/name: require false".
func ReasonRequireFalse(key string) string { return "policy " + key + ": require false" }

// PreFilter resolves the policies governing pod. A pod that names a
// missing or never-valid policy is UnschedulableAndUnresolvable with the
// reason; a pod no policy governs is skipped (Filter does not run; PreScore
// decides whether roam's built-in preferences score it). When a governing
// require has a node-object part, PreFilter narrows the nodes (narrow).
func (pl *Plugin) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	ev := pl.evaluator()
	res := pl.store.ForPod(ev, pod)
	pl.release(ev)
	if res.Blocked != "" {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, res.Blocked)
	}
	if len(res.Policies) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	s := &preFilterState{policies: res.Policies, pod: policies.PodEnvFor(pod), want: capability.WantOf(pod, pl.weights, true)}
	for _, p := range res.Policies {
		s.reasons = append(s.reasons, ReasonRequireFalse(p.Key()))
		s.static = s.static || p.HasStaticRequire()
		if p.HasScore && *pl.args.PolicyWeight > 0 {
			s.scoring++
		}
	}
	state.Write(preFilterStateKey, s)
	return pl.narrow(ctx, s, nodes)
}

// PreFilterExtensions implements framework.PreFilterPlugin: the state does
// not depend on other pods (Filter reads the free devices from the
// NodeInfo it is given, which includes added or removed pods).
func (pl *Plugin) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// narrow returns the nodes where every governing require's node-object
// part holds (policies.HasStaticRequire), or nil (all nodes) when no
// require has such a part, or when every node or none passes. On the
// nodes it leaves out Filter would fail whatever pods run there, so
// leaving them out is exactly as correct as filtering them, and no
// preemption could make them pass (the framework marks them
// UnschedulableAndUnresolvable, as it marks the nodes NodeAffinity's
// narrowing by node name leaves out).
//
// The node-object parts read only the Node object, and a Node update is a
// new object, so the last narrowing of the same policies answers for every
// node whose object it judged; only the other nodes are judged, each on
// its current version through the node cache.
//
// The pod's status then counts the nodes left out as "didn't satisfy
// plugin(s) [RoamPolicy]" rather than by policy. When no node passes,
// nothing is left out, so Filter's reasons name the policy on every node;
// robots tainted roam.dev/unreachable are left to Filter for the same
// reason.
func (pl *Plugin) narrow(ctx context.Context, s *preFilterState, nodes []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	if !s.static || len(nodes) == 0 {
		return nil, nil
	}
	key := policySetKey(s.policies)
	last := pl.narrowings.get(key, s.policies)
	if last.sameNodes(nodes) {
		return last.result, nil
	}
	next := &narrowing{policies: s.policies, objs: make([]*v1.Node, len(nodes)), keep: make([]bool, len(nodes))}
	var judge []int
	for i, ni := range nodes {
		next.objs[i] = ni.Node()
		var known bool
		if next.keep[i], known = last.verdict(i, next.objs[i]); !known {
			judge = append(judge, i)
		}
	}
	pl.parallelizer.Until(ctx, len(judge), func(k int) {
		i := judge[k]
		next.keep[i] = pl.passesStatic(s, nodes[i])
	}, Name)
	names := sets.New[string]()
	for i, ok := range next.keep {
		if ok {
			names.Insert(next.objs[i].Name)
		}
	}
	if len(names) > 0 && len(names) < len(nodes) {
		next.result = &framework.PreFilterResult{NodeNames: names}
	}
	pl.narrowings.put(key, next)
	return next.result, nil
}

// narrowing is one policy set's verdicts on the Node objects of a cycle.
// It is read-only once stored.
type narrowing struct {
	policies []*policies.Policy
	objs     []*v1.Node
	keep     []bool                     // objs[i] passes the node-object parts
	result   *framework.PreFilterResult // nil: all nodes
	byObj    map[*v1.Node]bool          // keep by object, built on the first verdict out of place
	once     sync.Once
}

// sameNodes reports whether nodes hold n's Node objects, in order.
func (n *narrowing) sameNodes(nodes []fwk.NodeInfo) bool {
	if n == nil || len(nodes) != len(n.objs) {
		return false
	}
	for i, ni := range nodes {
		if ni.Node() != n.objs[i] {
			return false
		}
	}
	return true
}

// verdict returns n's verdict on node, trying position i first (known is
// false when n did not judge node).
func (n *narrowing) verdict(i int, node *v1.Node) (keep, known bool) {
	switch {
	case n == nil:
		return false, false
	case i < len(n.objs) && n.objs[i] == node:
		return n.keep[i], true
	}
	n.once.Do(func() {
		n.byObj = make(map[*v1.Node]bool, len(n.objs))
		for i, obj := range n.objs {
			n.byObj[obj] = n.keep[i]
		}
	})
	keep, known = n.byObj[node]
	return keep, known
}

// narrowings keep the last narrowing of each of a few policy sets.
type narrowings struct {
	mu   sync.Mutex
	last map[string]*narrowing // by policySetKey; emptied when full
}

const maxNarrowings = 8

func policySetKey(ps []*policies.Policy) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Key())
		b.WriteByte(',')
	}
	return b.String()
}

// get returns the policy set's last narrowing, if it was made with these
// very policies (a changed policy is a new *Policy).
func (ns *narrowings) get(key string, ps []*policies.Policy) *narrowing {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if n := ns.last[key]; n != nil && slices.Equal(n.policies, ps) {
		return n
	}
	return nil
}

func (ns *narrowings) put(key string, n *narrowing) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if _, ok := ns.last[key]; !ok && len(ns.last) >= maxNarrowings || ns.last == nil {
		ns.last = make(map[string]*narrowing, maxNarrowings)
	}
	ns.last[key] = n
}

// passesStatic reports whether ni's node passes every policy's
// node-object require part.
func (pl *Plugin) passesStatic(s *preFilterState, ni fwk.NodeInfo) bool {
	if ni.Node() == nil {
		return false
	}
	e := pl.nodes.Get(ni, s.policies)
	for _, p := range s.policies {
		if !pl.staticHolds(p, e) {
			return false
		}
	}
	return true
}
