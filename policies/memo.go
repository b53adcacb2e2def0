package policies

import (
	"math"

	"github.com/expr-lang/expr/ast"
)

// Memoizing the node-only parts of a policy.
//
// A scheduler evaluates a policy's require and score for one pod against
// hundreds of nodes per cycle, and the same nodes again for the next pod.
// Whatever part of an expression reads `node` but not `pod` has the same
// value for every pod, as long as the node does not change. A memo plan,
// built at compile time from the checked syntax tree, replaces each maximal
// node-only subexpression of the fast subset with a slot; Memoize fills the
// slots of one node version once, and RequireWith / ScoreWith evaluate the
// rest for each pod. The example policy's require is node-only as a whole
// (MemoRequire answers without evaluating anything); its score keeps only
// `distance(<slot>, pod.target)` for each pod.

// fastCompiler compiles a checked tree into the fast evaluator's closures;
// with memo set it also cuts out node-only subtrees as slots.
type fastCompiler struct {
	memo bool
	// slots are the node-only subtrees cut out (memo only).
	slots []fv
	// readsNode is set when a node read remains outside the slots.
	readsNode bool
}

// slot is one memoized value, kept small so a node's memo fits in few
// cache lines: a point in p, a float in p.X, an int's bits in p.X, a
// boolean in p.Known. (Strings are not memoized.)
type slot struct {
	p Point
}

// memoPlan is a program's fast evaluator with its node-only subtrees read
// from slots.
type memoPlan struct {
	slots     []fv     // evaluate each against the node alone
	expr      fastExpr // the program, reading the slots
	readsNode bool     // expr still reads the node itself
	whole     bool     // the whole program is slot 0
}

// buildMemo returns the memo plan of a checked tree, or nil when the tree
// is outside the fast subset or has no node-only part worth memoizing.
func buildMemo(n ast.Node, k kind) *memoPlan {
	c := &fastCompiler{memo: true}
	v, ok := c.compile(n)
	if !ok || len(c.slots) == 0 {
		return nil
	}
	var e fastExpr
	switch {
	case k == kindBool && v.t == tBool:
		e = fastExpr{boolean: v.b}
	case k == kindNumber && v.t == tFloat:
		e = fastExpr{num: v.f}
	case k == kindNumber && v.t == tInt:
		i := v.i
		e = fastExpr{num: func(e *Env) float64 { return float64(i(e)) }}
	default:
		return nil
	}
	// A node-only tree is cut out at its root: the whole program is slot 0.
	whole := k == kindBool && sameRoots(n) && len(c.slots) == 1 && c.slots[0].t == tBool
	return &memoPlan{slots: c.slots, expr: e, readsNode: c.readsNode, whole: whole}
}

// sameRoots reports whether n reads the node and not the pod: then the
// whole tree became one slot.
func sameRoots(n ast.Node) bool {
	node, pod := roots(n)
	return node && !pod
}

// roots reports which of the environment's roots n reads.
func roots(n ast.Node) (node, pod bool) {
	if id, ok := n.(*ast.IdentifierNode); ok {
		switch id.Value {
		case "node":
			return true, false
		case "pod":
			return false, true
		}
	}
	for _, ch := range children(n) {
		a, b := roots(ch)
		node, pod = node || a, pod || b
	}
	return node, pod
}

// slot cuts n out as a slot when it reads the node and not the pod and
// its value is a scalar, a string or a point.
func (c *fastCompiler) slot(n ast.Node) (fv, bool) {
	if _, ok := n.(*ast.IdentifierNode); ok {
		return fv{}, false
	}
	if node, pod := roots(n); !node || pod {
		return fv{}, false
	}
	v, ok := (&fastCompiler{}).compile(n)
	if !ok {
		return fv{}, false
	}
	k := len(c.slots)
	var out fv
	switch v.t {
	case tBool:
		out = fv{t: tBool, b: func(e *Env) bool { return e.slots[k].p.Known }}
	case tInt:
		out = fv{t: tInt, i: func(e *Env) int { return int(math.Float64bits(e.slots[k].p.X)) }}
	case tFloat:
		out = fv{t: tFloat, f: func(e *Env) float64 { return e.slots[k].p.X }}
	case tPoint:
		out = fv{t: tPoint, p: func(e *Env) Point { return e.slots[k].p }}
	default:
		return fv{}, false
	}
	c.slots = append(c.slots, v)
	return out, true
}

// fill evaluates the plan's slots in env (the node alone) into out.
func (m *memoPlan) fill(env *Env, out []slot) {
	if m == nil {
		return
	}
	for i, v := range m.slots {
		switch v.t {
		case tBool:
			out[i].p.Known = v.b(env)
		case tInt:
			out[i].p.X = math.Float64frombits(uint64(v.i(env)))
		case tFloat:
			out[i].p.X = v.f(env)
		case tPoint:
			out[i].p = v.p(env)
		}
	}
}

func (m *memoPlan) size() int {
	if m == nil {
		return 0
	}
	return len(m.slots)
}

// NodeMemo holds a policy's node-only subexpressions evaluated for one
// version of one node (see Memoize). It is immutable; the zero NodeMemo is
// valid and memoizes nothing.
type NodeMemo struct {
	policy *Policy
	// required is the result of a require that reads only the node:
	// 0 not memoized, 1 true, 2 false.
	required int8
	// static is the result of the require's node-object part (true when
	// it has none; see HasStaticRequire).
	static bool
	// nreq of the n slots are the require's, the rest the score's: in
	// inline when they fit (no pointer to chase), else in more.
	nreq, n uint8
	inline  [memoInline]slot
	more    *[]slot
}

// memoInline slots live in the NodeMemo itself (the example policy's
// score has two).
const memoInline = 2

func (m *NodeMemo) slots() []slot {
	if int(m.n) <= memoInline {
		return m.inline[:m.n]
	}
	return *m.more
}

// Memoize evaluates the node-only parts of p's require and score for node
// (ev is scratch space). The memo stays valid as long as the node's
// environment does not change: a scheduler keeps it per NodeInfo
// generation.
func (p *Policy) Memoize(ev *Evaluator, node *NodeEnv) NodeMemo {
	m := NodeMemo{policy: p, static: p.StaticRequire(ev, node)}
	rp, sp := p.require.plan(), p.score.plan()
	if rp == nil && sp == nil {
		return m
	}
	if rp.size()+sp.size() > 255 {
		return m // cannot happen within MaxNodes; memoize nothing
	}
	ev.env.Node = *node
	if rp != nil && rp.whole {
		// A node-only require is kept as its result alone (MemoRequire),
		// not as a slot: the fewer slots, the likelier they fit inline.
		m.required = 2
		if rp.slots[0].b(&ev.env) {
			m.required = 1
		}
		rp = nil
	}
	m.nreq, m.n = uint8(rp.size()), uint8(rp.size()+sp.size())
	if int(m.n) > memoInline {
		more := make([]slot, m.n)
		m.more = &more
	}
	all := m.slots()
	rp.fill(&ev.env, all[:m.nreq])
	sp.fill(&ev.env, all[m.nreq:])
	ev.env = Env{}
	return m
}

func (m *NodeMemo) requireSlots() []slot { return m.slots()[:m.nreq] }
func (m *NodeMemo) scoreSlots() []slot   { return m.slots()[m.nreq:] }

func (p *program) plan() *memoPlan {
	if p == nil {
		return nil
	}
	return p.memo
}

// valid reports whether m holds plan's slots of p's prog.
func (m *NodeMemo) valid(p *Policy, plan *memoPlan, slots []slot) bool {
	return m.policy == p && plan != nil && len(slots) == len(plan.slots)
}

// MemoRequire returns the result of p's require from m without evaluating
// anything when the require reads only the node (known is false
// otherwise: use RequireWith). A policy without require holds.
func (p *Policy) MemoRequire(m *NodeMemo) (ok, known bool) {
	if p.require == nil {
		return true, true
	}
	if m == nil || m.policy != p || m.required == 0 {
		return false, false
	}
	return m.required == 1, true
}

// RequireWith is Require for node and pod, reading the node-only parts
// from m, the memo of node (any NodeMemo works; one of another policy or
// the zero one just memoizes nothing).
func (p *Policy) RequireWith(ev *Evaluator, m *NodeMemo, node *NodeEnv, pod *PodEnv) (bool, error) {
	if p.require == nil {
		return true, nil
	}
	if ok, known := p.MemoRequire(m); known && !ev.noFast {
		return ok, nil
	}
	plan := p.require.memo
	if m != nil && !ev.noFast {
		if slots := m.requireSlots(); m.valid(p, plan, slots) {
			ev.setMemo(plan, slots, node, pod)
			ok := plan.expr.boolean(&ev.env)
			ev.clearMemo(plan)
			return ok, nil
		}
	}
	ev.env.Node, ev.env.Pod = *node, *pod
	ok, err := p.Require(ev, &ev.env)
	ev.env = Env{}
	return ok, err
}

// ScoreWith is Score for node and pod, reading the node-only parts from
// m, the memo of node (as RequireWith).
func (p *Policy) ScoreWith(ev *Evaluator, m *NodeMemo, node *NodeEnv, pod *PodEnv) (float64, error) {
	if p.score == nil {
		return 0, nil
	}
	plan := p.score.memo
	if m != nil && !ev.noFast {
		if slots := m.scoreSlots(); m.valid(p, plan, slots) {
			ev.setMemo(plan, slots, node, pod)
			v := plan.expr.num(&ev.env)
			ev.clearMemo(plan)
			return v, nil
		}
	}
	ev.env.Node, ev.env.Pod = *node, *pod
	v, err := p.Score(ev, &ev.env)
	ev.env = Env{}
	return v, err
}

// Policy returns the policy m memoizes (nil for the zero NodeMemo).
func (m *NodeMemo) Policy() *Policy {
	if m == nil {
		return nil
	}
	return m.policy
}

// HasRequire reports whether the policy has a require expression.
func (p *Policy) HasRequire() bool { return p.require != nil }

// NodeOnlyRequire reports whether the policy's require reads the node and
// nothing of the pod, so its result on a node version is the same for
// every pod (MemoRequire answers it from any memo of that version).
func (p *Policy) NodeOnlyRequire() bool {
	return p.require != nil && p.require.memo != nil && p.require.memo.whole
}

// setMemo prepares ev's scratch environment for plan: the slots, the pod,
// and the node only when plan still reads it.
func (ev *Evaluator) setMemo(plan *memoPlan, slots []slot, node *NodeEnv, pod *PodEnv) {
	ev.env.slots, ev.env.Pod = slots, *pod
	if plan.readsNode {
		ev.env.Node = *node
	}
}

// clearMemo drops what setMemo referenced.
func (ev *Evaluator) clearMemo(plan *memoPlan) {
	ev.env.slots, ev.env.Pod = nil, PodEnv{}
	if plan.readsNode {
		ev.env.Node = NodeEnv{}
	}
}
