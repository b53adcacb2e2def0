package policies

import (
	"math"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// fastExpr is an allocation-free evaluator of a checked expr syntax tree for
// the common subset of policy expressions: field and map access on the
// environment, literals, arithmetic, comparisons, logic, string operators,
// `in`, len() and distance(). expr's VM boxes every intermediate value into
// an interface (an allocation per float64), which the scheduler would pay on
// every pod × node. Expressions outside the subset (iteration builtins,
// other functions, optional chaining…) leave both fields nil and run in the
// VM. The fuzz and table tests check both paths give the same answers.
type fastExpr struct {
	boolean func(*Env) bool
	num     func(*Env) float64
}

// buildFast returns the fast evaluator of a checked tree, or a zero
// fastExpr when the tree is outside the supported subset.
func buildFast(n ast.Node, k kind) fastExpr {
	v, ok := (&fastCompiler{}).compile(n)
	if !ok {
		return fastExpr{}
	}
	switch {
	case k == kindBool && v.t == tBool:
		return fastExpr{boolean: v.b}
	case k == kindNumber && v.t == tFloat:
		return fastExpr{num: v.f}
	case k == kindNumber && v.t == tInt:
		i := v.i
		return fastExpr{num: func(e *Env) float64 { return float64(i(e)) }}
	}
	return fastExpr{}
}

type vtype int

const (
	tInvalid vtype = iota
	tBool
	tInt
	tFloat
	tString
	tPoint
	tStrings
	tStringMap
	tFloatMap
	tNode
	tPod
	tStringSet // constant set built by expr's optimizer for `x in ["a", "b"]`
)

// fv is one compiled subexpression: the function matching t is set.
type fv struct {
	t   vtype
	b   func(*Env) bool
	i   func(*Env) int
	f   func(*Env) float64
	s   func(*Env) string
	p   func(*Env) Point
	ss  func(*Env) []string
	sm  func(*Env) map[string]string
	fm  func(*Env) map[string]float64
	nd  func(*Env) *NodeEnv
	pd  func(*Env) *PodEnv
	set map[string]struct{}
}

func (v fv) num() func(*Env) float64 {
	switch v.t {
	case tFloat:
		return v.f
	case tInt:
		i := v.i
		return func(e *Env) float64 { return float64(i(e)) }
	}
	return nil
}

func isNum(v fv) bool { return v.t == tInt || v.t == tFloat }

func (c *fastCompiler) compile(n ast.Node) (fv, bool) {
	if c.memo {
		if v, ok := c.slot(n); ok {
			return v, true
		}
	}
	switch n := n.(type) {
	case *ast.BoolNode:
		c := n.Value
		return fv{t: tBool, b: func(*Env) bool { return c }}, true
	case *ast.IntegerNode:
		c := n.Value
		return fv{t: tInt, i: func(*Env) int { return c }}, true
	case *ast.FloatNode:
		c := n.Value
		return fv{t: tFloat, f: func(*Env) float64 { return c }}, true
	case *ast.StringNode:
		c := n.Value
		return fv{t: tString, s: func(*Env) string { return c }}, true
	case *ast.ConstantNode:
		switch c := n.Value.(type) {
		case bool:
			return fv{t: tBool, b: func(*Env) bool { return c }}, true
		case int:
			return fv{t: tInt, i: func(*Env) int { return c }}, true
		case float64:
			return fv{t: tFloat, f: func(*Env) float64 { return c }}, true
		case string:
			return fv{t: tString, s: func(*Env) string { return c }}, true
		case map[string]struct{}:
			return fv{t: tStringSet, set: c}, true
		}
	case *ast.IdentifierNode:
		switch n.Value {
		case "node":
			c.readsNode = true
			return fv{t: tNode, nd: func(e *Env) *NodeEnv { return &e.Node }}, true
		case "pod":
			return fv{t: tPod, pd: func(e *Env) *PodEnv { return &e.Pod }}, true
		}
	case *ast.MemberNode:
		if n.Optional || n.Method {
			return fv{}, false
		}
		return c.member(n)
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ConditionalNode:
		return c.conditional(n)
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != "distance" || len(n.Arguments) != 2 {
			return fv{}, false
		}
		a, ok1 := c.compile(n.Arguments[0])
		b, ok2 := c.compile(n.Arguments[1])
		if !ok1 || !ok2 || a.t != tPoint || b.t != tPoint {
			return fv{}, false
		}
		pa, pb := a.p, b.p
		return fv{t: tFloat, f: func(e *Env) float64 { return Distance(pa(e), pb(e)) }}, true
	case *ast.BuiltinNode:
		if n.Name != "len" || len(n.Arguments) != 1 || n.Map != nil {
			return fv{}, false
		}
		a, ok := c.compile(n.Arguments[0])
		if !ok {
			return fv{}, false
		}
		switch a.t {
		case tStrings:
			ss := a.ss
			return fv{t: tInt, i: func(e *Env) int { return len(ss(e)) }}, true
		case tStringMap:
			sm := a.sm
			return fv{t: tInt, i: func(e *Env) int { return len(sm(e)) }}, true
		case tFloatMap:
			fm := a.fm
			return fv{t: tInt, i: func(e *Env) int { return len(fm(e)) }}, true
		}
	}
	return fv{}, false
}

func (c *fastCompiler) member(n *ast.MemberNode) (fv, bool) {
	obj, ok := c.compile(n.Node)
	if !ok {
		return fv{}, false
	}
	if obj.t == tStringMap || obj.t == tFloatMap {
		key, ok := c.compile(n.Property)
		if !ok || key.t != tString {
			return fv{}, false
		}
		ks := key.s
		if obj.t == tStringMap {
			sm := obj.sm
			return fv{t: tString, s: func(e *Env) string { return sm(e)[ks(e)] }}, true
		}
		fm := obj.fm
		return fv{t: tFloat, f: func(e *Env) float64 { return fm(e)[ks(e)] }}, true
	}
	prop, ok := n.Property.(*ast.StringNode)
	if !ok {
		return fv{}, false
	}
	switch obj.t {
	case tNode:
		nd := obj.nd
		switch prop.Value {
		case "name":
			return fv{t: tString, s: func(e *Env) string { return nd(e).Name }}, true
		case "labels":
			return fv{t: tStringMap, sm: func(e *Env) map[string]string { return nd(e).Labels }}, true
		case "annotations":
			return fv{t: tStringMap, sm: func(e *Env) map[string]string { return nd(e).Annotations }}, true
		case "context":
			return fv{t: tString, s: func(e *Env) string { return nd(e).Context }}, true
		case "zone":
			return fv{t: tString, s: func(e *Env) string { return nd(e).Zone }}, true
		case "location":
			return fv{t: tPoint, p: func(e *Env) Point { return nd(e).Location }}, true
		case "devices":
			return fv{t: tFloatMap, fm: func(e *Env) map[string]float64 { return nd(e).Devices }}, true
		case "capacity":
			return fv{t: tFloatMap, fm: func(e *Env) map[string]float64 { return nd(e).Capacity }}, true
		case "battery":
			return fv{t: tFloat, f: func(e *Env) float64 { return nd(e).Battery }}, true
		case "taints":
			return fv{t: tStrings, ss: func(e *Env) []string { return nd(e).Taints }}, true
		}
	case tPod:
		pd := obj.pd
		switch prop.Value {
		case "name":
			return fv{t: tString, s: func(e *Env) string { return pd(e).Name }}, true
		case "namespace":
			return fv{t: tString, s: func(e *Env) string { return pd(e).Namespace }}, true
		case "labels":
			return fv{t: tStringMap, sm: func(e *Env) map[string]string { return pd(e).Labels }}, true
		case "annotations":
			return fv{t: tStringMap, sm: func(e *Env) map[string]string { return pd(e).Annotations }}, true
		case "target":
			return fv{t: tPoint, p: func(e *Env) Point { return pd(e).Target }}, true
		}
	case tPoint:
		p := obj.p
		switch prop.Value {
		case "x":
			return fv{t: tFloat, f: func(e *Env) float64 { return p(e).X }}, true
		case "y":
			return fv{t: tFloat, f: func(e *Env) float64 { return p(e).Y }}, true
		case "known":
			return fv{t: tBool, b: func(e *Env) bool { return p(e).Known }}, true
		}
	}
	return fv{}, false
}

func (c *fastCompiler) unary(n *ast.UnaryNode) (fv, bool) {
	a, ok := c.compile(n.Node)
	if !ok {
		return fv{}, false
	}
	switch {
	case (n.Operator == "not" || n.Operator == "!") && a.t == tBool:
		b := a.b
		return fv{t: tBool, b: func(e *Env) bool { return !b(e) }}, true
	case n.Operator == "-" && a.t == tFloat:
		f := a.f
		return fv{t: tFloat, f: func(e *Env) float64 { return -f(e) }}, true
	case n.Operator == "-" && a.t == tInt:
		i := a.i
		return fv{t: tInt, i: func(e *Env) int { return -i(e) }}, true
	case n.Operator == "+" && isNum(a):
		return a, true
	}
	return fv{}, false
}

func (c *fastCompiler) conditional(n *ast.ConditionalNode) (fv, bool) {
	cv, ok1 := c.compile(n.Cond)
	a, ok2 := c.compile(n.Exp1)
	b, ok3 := c.compile(n.Exp2)
	if !ok1 || !ok2 || !ok3 || cv.t != tBool || a.t != b.t {
		return fv{}, false
	}
	cond := cv.b
	switch a.t {
	case tBool:
		x, y := a.b, b.b
		return fv{t: tBool, b: func(e *Env) bool {
			if cond(e) {
				return x(e)
			}
			return y(e)
		}}, true
	case tFloat:
		x, y := a.f, b.f
		return fv{t: tFloat, f: func(e *Env) float64 {
			if cond(e) {
				return x(e)
			}
			return y(e)
		}}, true
	case tString:
		x, y := a.s, b.s
		return fv{t: tString, s: func(e *Env) string {
			if cond(e) {
				return x(e)
			}
			return y(e)
		}}, true
	}
	return fv{}, false
}

func (c *fastCompiler) binary(n *ast.BinaryNode) (fv, bool) {
	l, ok1 := c.compile(n.Left)
	r, ok2 := c.compile(n.Right)
	if !ok1 || !ok2 {
		return fv{}, false
	}
	op := n.Operator
	switch op {
	case "and", "&&", "or", "||":
		if l.t != tBool || r.t != tBool {
			return fv{}, false
		}
		a, b := l.b, r.b
		if op == "and" || op == "&&" {
			return fv{t: tBool, b: func(e *Env) bool { return a(e) && b(e) }}, true
		}
		return fv{t: tBool, b: func(e *Env) bool { return a(e) || b(e) }}, true
	case "in":
		if l.t != tString {
			return fv{}, false
		}
		s := l.s
		switch r.t {
		case tStrings:
			ss := r.ss
			return fv{t: tBool, b: func(e *Env) bool {
				x := s(e)
				for _, y := range ss(e) {
					if x == y {
						return true
					}
				}
				return false
			}}, true
		case tStringMap:
			sm := r.sm
			return fv{t: tBool, b: func(e *Env) bool { _, ok := sm(e)[s(e)]; return ok }}, true
		case tFloatMap:
			fm := r.fm
			return fv{t: tBool, b: func(e *Env) bool { _, ok := fm(e)[s(e)]; return ok }}, true
		case tStringSet:
			set := r.set
			return fv{t: tBool, b: func(e *Env) bool { _, ok := set[s(e)]; return ok }}, true
		}
		return fv{}, false
	case "startsWith", "endsWith", "contains":
		if l.t != tString || r.t != tString {
			return fv{}, false
		}
		a, b := l.s, r.s
		switch op {
		case "startsWith":
			return fv{t: tBool, b: func(e *Env) bool { return strings.HasPrefix(a(e), b(e)) }}, true
		case "endsWith":
			return fv{t: tBool, b: func(e *Env) bool { return strings.HasSuffix(a(e), b(e)) }}, true
		}
		return fv{t: tBool, b: func(e *Env) bool { return strings.Contains(a(e), b(e)) }}, true
	}

	if l.t == tString && r.t == tString {
		a, b := l.s, r.s
		var f func(e *Env) bool
		switch op {
		case "==":
			f = func(e *Env) bool { return a(e) == b(e) }
		case "!=":
			f = func(e *Env) bool { return a(e) != b(e) }
		case "<":
			f = func(e *Env) bool { return a(e) < b(e) }
		case ">":
			f = func(e *Env) bool { return a(e) > b(e) }
		case "<=":
			f = func(e *Env) bool { return a(e) <= b(e) }
		case ">=":
			f = func(e *Env) bool { return a(e) >= b(e) }
		default:
			return fv{}, false
		}
		return fv{t: tBool, b: f}, true
	}
	if l.t == tBool && r.t == tBool && (op == "==" || op == "!=") {
		a, b := l.b, r.b
		if op == "==" {
			return fv{t: tBool, b: func(e *Env) bool { return a(e) == b(e) }}, true
		}
		return fv{t: tBool, b: func(e *Env) bool { return a(e) != b(e) }}, true
	}
	if !isNum(l) || !isNum(r) {
		return fv{}, false
	}
	if l.t == tInt && r.t == tInt {
		return fastIntBinary(op, l.i, r.i)
	}
	a, b := l.num(), r.num()
	var cmp func(e *Env) bool
	switch op {
	case "==":
		cmp = func(e *Env) bool { return a(e) == b(e) }
	case "!=":
		cmp = func(e *Env) bool { return a(e) != b(e) }
	case "<":
		cmp = func(e *Env) bool { return a(e) < b(e) }
	case ">":
		cmp = func(e *Env) bool { return a(e) > b(e) }
	case "<=":
		cmp = func(e *Env) bool { return a(e) <= b(e) }
	case ">=":
		cmp = func(e *Env) bool { return a(e) >= b(e) }
	}
	if cmp != nil {
		return fv{t: tBool, b: cmp}, true
	}
	var f func(e *Env) float64
	switch op {
	case "+":
		f = func(e *Env) float64 { return a(e) + b(e) }
	case "-":
		f = func(e *Env) float64 { return a(e) - b(e) }
	case "*":
		f = func(e *Env) float64 { return a(e) * b(e) }
	case "/":
		f = func(e *Env) float64 { return a(e) / b(e) }
	case "**", "^":
		f = func(e *Env) float64 { return math.Pow(a(e), b(e)) }
	default:
		return fv{}, false
	}
	return fv{t: tFloat, f: f}, true
}

// fastIntBinary mirrors expr's int arithmetic: wrapping + - *, float / and
// **; % is left to the VM (it panics on zero).
func fastIntBinary(op string, a, b func(*Env) int) (fv, bool) {
	var cmp func(e *Env) bool
	switch op {
	case "==":
		cmp = func(e *Env) bool { return a(e) == b(e) }
	case "!=":
		cmp = func(e *Env) bool { return a(e) != b(e) }
	case "<":
		cmp = func(e *Env) bool { return a(e) < b(e) }
	case ">":
		cmp = func(e *Env) bool { return a(e) > b(e) }
	case "<=":
		cmp = func(e *Env) bool { return a(e) <= b(e) }
	case ">=":
		cmp = func(e *Env) bool { return a(e) >= b(e) }
	}
	if cmp != nil {
		return fv{t: tBool, b: cmp}, true
	}
	switch op {
	case "+":
		return fv{t: tInt, i: func(e *Env) int { return a(e) + b(e) }}, true
	case "-":
		return fv{t: tInt, i: func(e *Env) int { return a(e) - b(e) }}, true
	case "*":
		return fv{t: tInt, i: func(e *Env) int { return a(e) * b(e) }}, true
	case "/":
		return fv{t: tFloat, f: func(e *Env) float64 { return float64(a(e)) / float64(b(e)) }}, true
	case "**", "^":
		return fv{t: tFloat, f: func(e *Env) float64 { return math.Pow(float64(a(e)), float64(b(e))) }}, true
	}
	return fv{}, false
}
