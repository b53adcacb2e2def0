package policies

import (
	"testing"
)

// Memoized evaluation agrees with full evaluation, for expressions that
// read only the node, only the pod, both, and none, on the fast path and
// in the VM; a require that reads only the node is answered from the memo.
func TestMemoAgreesWithFullEvaluation(t *testing.T) {
	cases := []struct {
		key, expr string
		nodeOnly  bool // MemoRequire knows the answer
	}{
		{"require", `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`, true},
		{"require", `node.context == "store"`, true},
		{"require", `node.battery > 50 && pod.target.known`, false},
		{"require", `node.zone in ["ward-3", "ward-4"] || pod.labels["app"] == "x"`, false},
		{"require", `pod.namespace == "hospital-apps"`, false},
		{"require", `node.name startsWith pod.labels["app"]`, false},
		{"require", `node.labels[pod.labels["app"]] == ""`, false}, // a map slot is not cut out
		{"require", `node.location.x > 1 ? node.battery > pod.target.x : node.context == "store"`, false},
		{"require", `true`, false},
		{"require", `any(node.taints, # == "example.com/dirty")`, false}, // VM only
		{"score", `10 * node.devices["roam.dev/camera"] - distance(node.location, pod.target)`, false},
		{"score", `node.battery`, false},
		{"score", `len(node.taints) + len(pod.labels) * node.capacity["roam.dev/camera"]`, false},
		{"score", `distance(pod.target, node.location) + (node.context == "hospital" ? 1 : 0)`, false},
		{"score", `2 + pod.target.x`, false},
		{"score", `9223372036854775807 + len(node.taints)`, false}, // int wraps as in the VM
		{"score", `sum(map(1..3, #)) + node.battery`, false},
	}
	env := benchEnv()
	for _, tc := range cases {
		for name, ev := range evaluators() {
			t.Run(name+"/"+tc.expr, func(t *testing.T) {
				p := mustParse(t, map[string]string{tc.key: tc.expr})
				m := p.Memoize(NewEvaluator(), &env.Node)
				if m.Policy() != p {
					t.Fatalf("memo of %v, want %v", m.Policy(), p)
				}
				if tc.key == "require" {
					want, err := p.Require(ev, env)
					if err != nil {
						t.Fatal(err)
					}
					got, err := p.RequireWith(ev, &m, &env.Node, &env.Pod)
					if err != nil || got != want {
						t.Fatalf("RequireWith = %v, %v; Require = %v", got, err, want)
					}
					memo, known := p.MemoRequire(&m)
					if known != tc.nodeOnly || (known && memo != want) {
						t.Fatalf("MemoRequire = %v, %v; want known %v and %v", memo, known, tc.nodeOnly, want)
					}
					if p.NodeOnlyRequire() != tc.nodeOnly {
						t.Fatalf("NodeOnlyRequire = %v, want %v", p.NodeOnlyRequire(), tc.nodeOnly)
					}
					return
				}
				want, err := p.Score(ev, env)
				if err != nil {
					t.Fatal(err)
				}
				got, err := p.ScoreWith(ev, &m, &env.Node, &env.Pod)
				if err != nil || !sameFloat(got, want) {
					t.Fatalf("ScoreWith = %v, %v; Score = %v", got, err, want)
				}
			})
		}
	}
}

// A memo answers only for its own policy and node version: another
// policy's memo, or none, means full evaluation.
func TestMemoOfAnotherPolicy(t *testing.T) {
	env := benchEnv()
	yes := mustParse(t, map[string]string{"require": `node.context == "hospital"`})
	no := mustParse(t, map[string]string{"require": `node.context == "store"`})
	ev := NewEvaluator()
	m := yes.Memoize(ev, &env.Node)
	if ok, known := no.MemoRequire(&m); known {
		t.Fatalf("MemoRequire with another policy's memo = %v, known", ok)
	}
	if ok, known := no.MemoRequire(nil); known {
		t.Fatalf("MemoRequire without a memo = %v, known", ok)
	}
	for _, mm := range []*NodeMemo{&m, nil, {}} {
		if ok, err := no.RequireWith(ev, mm, &env.Node, &env.Pod); ok || err != nil {
			t.Fatalf("RequireWith(%v) = %v, %v; want false", mm, ok, err)
		}
	}
	// The memo is of the node version it was made for.
	other := env.Node
	other.Context = "store"
	if ok, _ := no.MemoRequire(ptr(no.Memoize(ev, &other))); !ok {
		t.Fatal("memo of the changed node must hold")
	}
}

func ptr[T any](v T) *T { return &v }

// Memoized Filter and Score of the example policy of docs/policies.md allocate
// nothing, and memoizing a node allocates nothing either: the node-only
// require is kept as its result, so the score's two slots fit inline (no
// pointer for the scheduler's Filter to chase).
func TestMemoAllocationFree(t *testing.T) {
	p := mustParse(t, exampleData())
	env := benchEnv()
	ev := NewEvaluator()
	m := p.Memoize(ev, &env.Node)
	if _, known := p.MemoRequire(&m); !known {
		t.Fatal("the example require reads only the node: it must be memoized")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = p.MemoRequire(&m)
		_, _ = p.ScoreWith(ev, &m, &env.Node, &env.Pod)
	})
	if allocs != 0 {
		t.Errorf("allocations per memoized require + score = %v, want 0", allocs)
	}
	if m.more != nil || m.n > memoInline {
		t.Errorf("example memo has %d slots (out of line: %v), want them inline", m.n, m.more != nil)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = p.Memoize(ev, &env.Node) }); allocs != 0 {
		t.Errorf("allocations per Memoize = %v, want 0", allocs)
	}
	if ok, err := p.RequireWith(ev, &m, &env.Node, &env.Pod); err != nil || !ok {
		t.Errorf("RequireWith on the memo = %v, %v; want true (the memoized result)", ok, err)
	}
}
