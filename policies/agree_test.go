package policies

import (
	"fmt"
	"math"
	"testing"
)

// TestFastPathAgreesOnArithmetic crosses every arithmetic and comparison
// operator with int and float operands that are known only at run time
// (so expr cannot fold them), including zero, negative and huge values:
// the allocation-free evaluator must give what expr's VM gives, errors
// included.
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
	for _, a := range operands {
		for _, op := range ops {
			for _, b := range operands {
				src := fmt.Sprintf("%s %s %s", a, op, b)
				key, data := "score", map[string]string{"score": src}
				boolean := op == "==" || op == "!=" || op[0] == '<' || op[0] == '>'
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
					if boolean {
						x, errX := p.Require(fast, env)
						y, errY := p.Require(slow, env)
						if x != y || (errX == nil) != (errY == nil) {
							t.Errorf("%s %q env %d: fast %v, %v; VM %v, %v", key, src, i, x, errX, y, errY)
						}
						continue
					}
					x, errX := p.Score(fast, env)
					y, errY := p.Score(slow, env)
					if !sameFloat(x, y) || (errX == nil) != (errY == nil) {
						t.Errorf("%s %q env %d: fast %v, %v; VM %v, %v", key, src, i, x, errX, y, errY)
					}
				}
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
