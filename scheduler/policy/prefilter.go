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
// is evaluated again, and only such nodes are: the last narrowing of the
// same policies is reused for NodeInfos that hold the same Node objects.
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
	next := &narrowing{policies: s.policies, infos: slices.Clone(nodes), objs: make([]*v1.Node, len(nodes)), keep: make([]bool, len(nodes))}
	pl.parallelizer.Until(ctx, len(nodes), func(i int) {
		ni := nodes[i]
		next.objs[i] = ni.Node()
		if j, ok := last.index(i, ni); ok && last.objs[j] == next.objs[i] {
			next.keep[i] = last.keep[j] // the same Node object: the same answer
			return
		}
		next.keep[i] = pl.passesStatic(s, ni)
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

// narrowing is one policy set's narrowing of the nodes of a cycle. The
// node-object parts read only the Node objects, so a later cycle whose
// NodeInfos hold the same Node objects has the same answer: the
// scheduler's snapshot keeps its NodeInfos from cycle to cycle, and a
// Node update is a new object. It is read-only once stored.
type narrowing struct {
	policies []*policies.Policy
	infos    []fwk.NodeInfo
	objs     []*v1.Node // infos[i]'s Node object when judged
	keep     []bool
	byInfo   map[fwk.NodeInfo]int // built on the first index call
	once     sync.Once
	result   *framework.PreFilterResult // nil: all nodes
}

// sameNodes reports whether nodes are n's NodeInfos, in order, holding the
// same Node objects.
func (n *narrowing) sameNodes(nodes []fwk.NodeInfo) bool {
	if n == nil || len(nodes) != len(n.infos) {
		return false
	}
	for i, ni := range nodes {
		if ni != n.infos[i] || ni.Node() != n.objs[i] {
			return false
		}
	}
	return true
}

// index returns the position of ni among n's NodeInfos, trying i first.
func (n *narrowing) index(i int, ni fwk.NodeInfo) (int, bool) {
	switch {
	case n == nil:
		return 0, false
	case i < len(n.infos) && n.infos[i] == ni:
		return i, true
	}
	n.once.Do(func() {
		n.byInfo = make(map[fwk.NodeInfo]int, len(n.infos))
		for i, x := range n.infos {
			n.byInfo[x] = i
		}
	})
	j, ok := n.byInfo[ni]
	return j, ok
}

// narrowings keep the last narrowing of each of a few policy sets.
type narrowings struct {
	mu   sync.Mutex
	last map[string]*narrowing
	lru  []string // keys, least recently stored first
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
	n := ns.last[key]
	if n == nil || !slices.Equal(n.policies, ps) {
		return nil
	}
	return n
}

func (ns *narrowings) put(key string, n *narrowing) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.last == nil {
		ns.last = map[string]*narrowing{}
	}
	if _, ok := ns.last[key]; !ok {
		if len(ns.lru) == maxNarrowings {
			delete(ns.last, ns.lru[0])
			ns.lru = ns.lru[1:]
		}
		ns.lru = append(ns.lru, key)
	}
	ns.last[key] = n
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
