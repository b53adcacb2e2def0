package policy

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
	"github.com/roam-dev/roam/scheduler/policy/nodecache"
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

func getPreFilterState(state fwk.CycleState) (*preFilterState, error) {
	v, err := state.Read(preFilterStateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %q from the cycle state: %w", Name, preFilterStateKey, err)
	}
	s, ok := v.(*preFilterState)
	if !ok {
		return nil, fmt.Errorf("%s: %+v is not a RoamPolicy PreFilter state", Name, v)
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
// narrowing by node name leaves out). Each node is judged on its current
// version through the node cache: a node changed since it was last judged
// is evaluated again.
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
	keep := make([]bool, len(nodes))
	pl.parallelizer.Until(ctx, len(nodes), func(i int) {
		keep[i] = pl.passesStatic(s, nodes[i])
	}, Name)
	names := sets.New[string]()
	for i, ok := range keep {
		if ok {
			names.Insert(nodes[i].Node().Name)
		}
	}
	if len(names) == 0 || len(names) == len(nodes) {
		return nil, nil
	}
	return &framework.PreFilterResult{NodeNames: names}, nil
}

// passesStatic reports whether ni's node passes every policy's
// node-object require part.
func (pl *Plugin) passesStatic(s *preFilterState, ni fwk.NodeInfo) bool {
	if ni.Node() == nil {
		return false
	}
	ev := pl.evaluator()
	defer pl.release(ev)
	e := pl.nodes.Get(ev, ni, s.policies)
	for _, p := range s.policies {
		if !staticHolds(ev, p, e) {
			return false
		}
	}
	return true
}

// staticHolds reports whether p's node-object require part holds on e's
// node version.
func staticHolds(ev *policies.Evaluator, p *policies.Policy, e *nodecache.Entry) bool {
	ok, known := p.MemoStaticRequire(e.Memo(p))
	if !known {
		ok = p.StaticRequire(ev, e.Env())
	}
	return ok
}
