package policy

import (
	"context"
	"fmt"
	"math"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
	"github.com/roam-dev/roam/scheduler/policy/nodecache"
)

// preScoreStateKey is where PreScore leaves its preScoreState.
const preScoreStateKey fwk.StateKey = "PreScore" + Name

// preScoreState is PreScore's measure of every feasible node, in the
// order PreScore got them (the order of NormalizeScore's list). It is
// read-only once written, so Clone shares it.
type preScoreState struct {
	want     *capability.Want // nil: no built-in preference applies
	scoring  int              // policies with a score (0: policies do not score the pod)
	names    []string
	policy   []float64 // the policies' weighted score of names[i] (NaN: failed to evaluate)
	measures []capability.Raw
}

// Clone implements fwk.StateData.
func (s *preScoreState) Clone() fwk.StateData { return s }

// PreScore decides what scores the pod, its policies' scores and roam's
// built-in preferences, and measures every feasible node. A pod no policy
// governs gets the built-in preferences when it opted in (roam.dev/target
// or roam.dev/prefer-features); with nothing to score, Score is skipped.
// A node's measure is a node-cache lookup and a few arithmetic operations
// (the node-only parts are cached), less than what handing nodes to the
// Parallelizer's goroutines costs, so PreScore measures on the
// scheduling goroutine.
func (pl *Plugin) PreScore(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	pf, err := readState[*preFilterState](state, preFilterStateKey)
	if err != nil { // PreFilter skipped the pod: no policy governs it
		pf = &preFilterState{want: capability.WantOf(pod, pl.weights, false)}
	}
	if pf.scoring == 0 && pf.want == nil {
		return fwk.NewStatus(fwk.Skip)
	}
	s := &preScoreState{want: pf.want, scoring: pf.scoring, names: make([]string, len(nodes)),
		policy: make([]float64, len(nodes)), measures: make([]capability.Raw, len(nodes))}
	ev := pl.evaluator()
	defer pl.release(ev)
	scored := 0
	for i, ni := range nodes {
		node := ni.Node()
		if node == nil {
			return fwk.AsStatus(fmt.Errorf("%s: node not found", Name))
		}
		s.names[i] = node.Name
		e := pl.nodes.Get(ni, pf.policies)
		if s.scoring > 0 {
			if s.policy[i] = pl.policyScore(ev, pf, e); !math.IsNaN(s.policy[i]) {
				scored++
			}
		}
		if s.want != nil {
			s.measures[i] = s.want.Measure(e.Location(), e.Labels, e)
		}
	}
	pl.metrics.scored.Add(float64(scored * s.scoring))
	state.Write(preScoreStateKey, s)
	return nil
}

// policyScore is the weighted sum of the policies' scores on a node, or
// NaN when one fails to evaluate.
func (pl *Plugin) policyScore(ev *policies.Evaluator, pf *preFilterState, e *nodecache.Entry) float64 {
	total := 0.0
	for _, p := range pf.policies {
		if !p.HasScore {
			continue
		}
		v, err := p.ScoreWith(ev, e.Memo(p), e.Env(), &pf.pod)
		if err != nil {
			pl.metrics.err.Inc()
			pl.logger.V(4).Info("Policy score failed", "node", e.Env().Name, "err", err)
			return math.NaN()
		}
		total += p.Weight * v
	}
	return total
}

// Score does nothing: PreScore measured every feasible node, and
// NormalizeScore turns the measures into scores, since a node's score
// depends on the range of all the others'.
func (pl *Plugin) Score(context.Context, fwk.CycleState, *v1.Pod, fwk.NodeInfo) (int64, *fwk.Status) {
	return 0, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (pl *Plugin) ScoreExtensions() framework.ScoreExtensions { return pl }

// NormalizeScore turns PreScore's measures into 0..100 with
// capability.Combine: the policies' weighted sums and roam's built-in
// preferences, combined by policyWeight and the built-in components'
// weights (roamctl why explains a placement with the same function).
func (pl *Plugin) NormalizeScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, scores framework.NodeScoreList) *fwk.Status {
	s, err := readState[*preScoreState](state, preScoreStateKey)
	if err != nil {
		return fwk.AsStatus(err)
	}
	n := len(scores)
	pol, raws, out := make([]float64, n), make([]capability.Raw, n), make([]int64, n)
	var index map[string]int // built only when the list is not in PreScore's order
	for i := range scores {
		j := i
		if i >= len(s.names) || s.names[i] != scores[i].Name {
			if index == nil {
				index = make(map[string]int, len(s.names))
				for k, name := range s.names {
					index[name] = k
				}
			}
			var ok bool
			if j, ok = index[scores[i].Name]; !ok {
				return fwk.AsStatus(fmt.Errorf("%s: node %s has no measure in this cycle", Name, scores[i].Name))
			}
		}
		pol[i], raws[i] = s.policy[j], s.measures[j]
	}
	var policyW int64
	if s.scoring > 0 {
		policyW = *pl.args.PolicyWeight
	}
	capability.Combine(policyW, pol, s.want, raws, out)
	for i := range scores {
		scores[i].Score = out[i]
	}
	return nil
}
