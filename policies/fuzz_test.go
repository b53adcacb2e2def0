package policies

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// FuzzPolicy parses, compiles and evaluates arbitrary policies against a
// perturbed environment: nothing may panic, every error must be a
// positioned ParseError or an EvalError, compiled programs must respect the
// bounds, and the allocation-free path must agree with expr's VM.
func FuzzPolicy(f *testing.F) {
	ex := exampleData()
	f.Add(ex["match"], ex["require"], ex["score"], "2", "10s", "hospital", "true", 80.0, 3.0)
	f.Add(`pod.labels["app"] in ["a", "b"]`, `"x" in node.taints || node.labels["k"] startsWith "v"`, `len(node.taints) * 2 + node.battery / 0`, "0.5", "1m", "store", "v1", -1.0, math.NaN())
	f.Add("true", `all(node.taints, {any(node.taints, {# == "x"})})`, `sum(map(1..int(node.battery), #))`, "1", "0s", "", "", 100.0, 0.0)
	f.Add("pod.target.known", `node.location.x > 1 ? node.battery > 50 : node.context == "store"`, `-(node.location.x ** 2) + distance(pod.target, node.location)`, "x", "-1s", "a,b", "é", 1e308, -1e308)
	f.Add(`pod.nme == "x"`, `node.contxt`, `"s"`, "0", "soon", "\x00", "\n", math.Inf(1), 1.0)
	f.Add(`1 + 2 * 3 == 7`, `node.devices["roam.dev/camera"] >= 1 and node.capacity["nvidia.com/gpu"] == 1`, `9223372036854775807 + 1`, "1e9", "24h", "x", "y", 50.0, 2.0)
	f.Fuzz(func(t *testing.T, match, require, score, weight, settle, context, label string, battery, x float64) {
		data := map[string]string{"match": match, "require": require, "score": score, "weight": weight, "settle": settle}
		p, err := Parse(policyCM("ns", "p", data))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 || err.Error() == "" {
				t.Fatalf("error %T %v is not a ParseError with problems", err, err)
			}
			for _, pr := range pe.Problems {
				if pr.Line < 0 || pr.Column < 0 || (pr.Line > 0 && pr.Snippet == "") || pr.Message == "" {
					t.Fatalf("malformed problem %+v", pr)
				}
			}
			return
		}
		for _, prog := range []*program{p.match, p.require, p.score} {
			if prog == nil {
				continue
			}
			if n := tooDeep(prog.prog.Node(), 0); n != nil {
				t.Fatalf("%s: compiled program nests iteration deeper than %d", prog.key, MaxIterationDepth)
			}
			if len(prog.source) > MaxExpressionBytes {
				t.Fatalf("%s: source over the limit compiled", prog.key)
			}
		}
		env := benchEnv()
		env.Node.Context = context
		env.Node.Labels = map[string]string{"k": label}
		env.Node.Battery = battery
		env.Node.Location.X = x
		env.Pod.Labels = map[string]string{"app": label}
		fast := NewEvaluator()
		slow := NewEvaluator()
		slow.noFast = true

		checkBool := func(name string, eval func(*Evaluator, *Env) (bool, error), hasFast bool) {
			a, errA := eval(fast, env)
			b, errB := eval(slow, env)
			checkEvalErr(t, errA)
			checkEvalErr(t, errB)
			if hasFast && (errB != nil || a != b) {
				t.Fatalf("%s: fast path says %v, VM says %v, %v", name, a, b, errB)
			}
		}
		checkBool("match", p.Match, p.match != nil && p.match.fast.boolean != nil)
		checkBool("require", p.Require, p.require != nil && p.require.fast.boolean != nil)
		a, errA := p.Score(fast, env)
		b, errB := p.Score(slow, env)
		checkEvalErr(t, errA)
		checkEvalErr(t, errB)
		if p.score != nil && p.score.fast.num != nil && (errB != nil || !sameFloat(a, b)) {
			t.Fatalf("score: fast path says %v, VM says %v, %v", a, b, errB)
		}
		// The memoized path (node-only parts evaluated once per node)
		// agrees with the full one.
		m := p.Memoize(NewEvaluator(), &env.Node)
		r, errR := p.Require(fast, env)
		rm, errRM := p.RequireWith(fast, &m, &env.Node, &env.Pod)
		if rm != r || (errR == nil) != (errRM == nil) {
			t.Fatalf("require: memoized says %v, %v; full says %v, %v", rm, errRM, r, errR)
		}
		if known, ok := p.MemoRequire(&m); ok && (errR != nil || known != r) {
			t.Fatalf("require: memo says %v; full says %v, %v", known, r, errR)
		}
		am, errAM := p.ScoreWith(fast, &m, &env.Node, &env.Pod)
		if !sameFloat(am, a) || (errA == nil) != (errAM == nil) {
			t.Fatalf("score: memoized says %v, %v; full says %v, %v", am, errAM, a, errA)
		}
	})
}

func checkEvalErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ee *EvalError
	if !errors.As(err, &ee) || ee.Policy != "ns/p" || ee.Key == "" {
		t.Fatalf("evaluation error %T %v is not an EvalError naming the policy and key", err, err)
	}
	if strings.Contains(err.Error(), "evaluation panicked") {
		t.Logf("recovered panic (reported as an error): %v", err)
	}
}

func sameFloat(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b))
}
