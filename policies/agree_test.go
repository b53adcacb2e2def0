package policies

import (
	"fmt"
	"math"
	"testing"
)

// TestFastPathAgreesOnArithmetic crosses every arithmetic and comparison
// operator, the unary operators and the conditional with int and float
// operands that are known only at run time (so expr cannot fold them),
// including zero, negative and huge values: the allocation-free evaluator
// and its memoized form must give what expr's VM gives, errors included.
func TestFastPathAgreesOnArithmetic(t *testing.T) {
	operands := []string{
		"len(node.taints)",       // int, set per case below
		"(len(node.taints) - 3)", // int, may be negative or zero
		"node.battery",           // float
		"(node.battery - 50)",    // float, may be zero
		"9223372036854775807",    // max int: wraps on overflow
		"node.location.x",        // float
		"int(node.location.x)",   // int from a float
	}
	ops := []string{"+", "-", "*", "/", "%", "**", "==", "!=", "<", ">", "<=", ">="}
	envs := []struct {
		taints  []string
		battery float64
		x       float64
	}{
		{nil, 50, 0},
		{[]string{"a", "b", "c"}, 0, -2.5},
		{[]string{"a"}, 100, 1e18},
		{[]string{"a", "b", "c", "d", "e"}, -1, math.Inf(1)},
	}
	fast, slow := NewEvaluator(), NewEvaluator()
	slow.noFast = true
	compared, onFastPath := 0, 0
	type expression struct {
		src     string
		boolean bool
	}
	var grid []expression
	for _, a := range operands {
		for _, op := range ops {
			for _, b := range operands {
				grid = append(grid, expression{fmt.Sprintf("%s %s %s", a, op, b), op == "==" || op == "!=" || op[0] == '<' || op[0] == '>'})
			}
		}
		grid = append(grid, expression{"-" + a, false}, expression{"+" + a, false},
			expression{fmt.Sprintf("not (%s > 1)", a), true}, expression{fmt.Sprintf("!(%s <= 0)", a), true})
		for _, b := range operands {
			grid = append(grid, expression{fmt.Sprintf("%s > %s ? %s : %s", a, b, a, b), false},
				expression{fmt.Sprintf("%s > 0 ? %s < 1 : %s == %s", a, b, a, b), true},
				expression{fmt.Sprintf(`(%s > %s ? node.context : node.name) == "hospital"`, a, b), true})
		}
	}
	for _, ex := range grid {
		src, boolean := ex.src, ex.boolean
		key, data := "score", map[string]string{"score": src}
		if boolean {
			key, data = "require", map[string]string{"require": src}
		}
		p, err := Parse(policyCM("ns", "p", data))
		if err != nil {
			continue // a type error expr rejects (e.g. % on floats): nothing to compare
		}
		compared++
		if (boolean && p.require.fast.boolean != nil) || (!boolean && p.score.fast.num != nil) {
			onFastPath++
		}
		for i, e := range envs {
			env := benchEnv()
			env.Node.Taints, env.Node.Battery, env.Node.Location.X = e.taints, e.battery, e.x
			// What the scheduler runs: the node-only parts memoized.
			m := p.Memoize(NewEvaluator(), &env.Node)
			if boolean {
				x, errX := p.Require(fast, env)
				y, errY := p.Require(slow, env)
				z, errZ := p.RequireWith(fast, &m, &env.Node, &env.Pod)
				if x != y || z != y || (errX == nil) != (errY == nil) || (errZ == nil) != (errY == nil) {
					t.Errorf("%s %q env %d: fast %v, %v; memoized %v, %v; VM %v, %v", key, src, i, x, errX, z, errZ, y, errY)
				}
				continue
			}
			x, errX := p.Score(fast, env)
			y, errY := p.Score(slow, env)
			z, errZ := p.ScoreWith(fast, &m, &env.Node, &env.Pod)
			if !sameFloat(x, y) || !sameFloat(z, y) || (errX == nil) != (errY == nil) || (errZ == nil) != (errY == nil) {
				t.Errorf("%s %q env %d: fast %v, %v; memoized %v, %v; VM %v, %v", key, src, i, x, errX, z, errZ, y, errY)
			}
		}
	}
	// Most of the grid must compile, and most of that onto the fast path,
	// or this test compares the VM with itself.
	if compared < 400 || onFastPath < compared/2 {
		t.Errorf("compared %d expressions, %d on the fast path: the grid no longer exercises it", compared, onFastPath)
	}
	t.Logf("compared %d expressions (%d on the fast path) on %d environments", compared, onFastPath, len(envs))
}
