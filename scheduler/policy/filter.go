package policy

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/policy/nodecache"
)

// ReasonUnreachable is the Filter reason for a robot roam-detector suspects.
const ReasonUnreachable = "node(s) had taint " + policies.UnreachableTaint

// Filter requires every governing policy's require on nodeInfo's node and
// rejects a robot tainted roam.dev/unreachable (UnschedulableAndUnresolvable:
// preemption cannot help there).
func (pl *Plugin) Filter(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, err := readState[*preFilterState](state, preFilterStateKey)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := nodeInfo.Node()
	if node == nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "node not found")
	}
	if *pl.args.RejectUnreachable && hasUnreachableTaint(node) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ReasonUnreachable)
	}
	if !state.ShouldRecordPluginMetrics() {
		return pl.require(s, nodeInfo)
	}
	start := time.Now()
	status := pl.require(s, nodeInfo)
	evaluationDuration.Observe(time.Since(start).Seconds())
	return status
}

// require checks every policy's require on ni: a require that reads only
// the node is answered by the node cache (evaluated, and counted, once per
// node version), any other is evaluated with the cached node-only parts.
// A node where some require's node-object part is false is
// UnschedulableAndUnresolvable, naming that policy: removing pods
// (preemption) cannot make it pass.
func (pl *Plugin) require(s *preFilterState, ni fwk.NodeInfo) *fwk.Status {
	e := pl.nodes.Get(ni, s.policies)
	var failed *fwk.Status
	for i, p := range s.policies {
		m := e.Memo(p)
		ok, known := p.MemoRequire(m)
		if !known {
			var err error
			if ok, err = pl.requireWith(p, m, e, &s.pod); err != nil {
				return fwk.NewStatus(fwk.Unschedulable, err.Error())
			}
		}
		switch {
		case ok:
		case !pl.staticHolds(p, e):
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, s.reasons[i])
		case failed == nil:
			failed = fwk.NewStatus(fwk.Unschedulable, s.reasons[i])
		}
	}
	return failed
}

// requireWith evaluates p's require for pod on e's node version, reading
// the node-only parts from m, and counts the result.
func (pl *Plugin) requireWith(p *policies.Policy, m *policies.NodeMemo, e *nodecache.Entry, pod *policies.PodEnv) (bool, error) {
	ev := pl.evaluator()
	ok, err := p.RequireWith(ev, m, e.Env(), pod)
	pl.release(ev)
	switch {
	case err != nil:
		pl.metrics.err.Inc()
	case ok:
		pl.metrics.pass.Inc()
	default:
		pl.metrics.fail.Inc()
	}
	return ok, err
}

// staticHolds reports whether p's node-object require part holds on e's
// node version: from p's memo, or evaluated when p is not memoized.
func (pl *Plugin) staticHolds(p *policies.Policy, e *nodecache.Entry) bool {
	if ok, known := p.MemoStaticRequire(e.Memo(p)); known {
		return ok
	}
	ev := pl.evaluator()
	defer pl.release(ev)
	return p.StaticRequire(ev, e.Env())
}
