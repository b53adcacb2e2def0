package policies

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func mustParse(t testing.TB, data map[string]string) *Policy {
	t.Helper()
	p, err := Parse(policyCM("ns", "p", data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func benchEnv() *Env {
	return &Env{Node: NodeEnvFor(benchNode(), nil), Pod: PodEnvFor(benchPod())}
}

// evaluators returns an Evaluator using the fast path where it applies and
// one forced through expr's VM: both must agree.
func evaluators() map[string]*Evaluator {
	slow := NewEvaluator()
	slow.noFast = true
	return map[string]*Evaluator{"fast": NewEvaluator(), "vm": slow}
}

func TestExamplePolicy(t *testing.T) {
	p := mustParse(t, exampleData())
	if !p.HasMatch || !p.HasScore || p.Weight != 2 || p.PhiThreshold != 8 || p.ForceDelete || p.Settle.Seconds() != 10 ||
		p.OnContextChange != Reschedule || p.OnNodeFailure != Reschedule || p.Key() != "ns/p" {
		t.Fatalf("policy = %+v", p)
	}
	for name, ev := range evaluators() {
		t.Run(name, func(t *testing.T) {
			env := benchEnv()
			if ok, err := p.Match(ev, env); !ok || err != nil {
				t.Errorf("Match = %v, %v; want true", ok, err)
			}
			if ok, err := p.Require(ev, env); !ok || err != nil {
				t.Errorf("Require = %v, %v; want true", ok, err)
			}
			// 10*2 - distance((3,4),(0,0)) = 15
			if s, err := p.Score(ev, env); s != 15 || err != nil {
				t.Errorf("Score = %v, %v; want 15", s, err)
			}
			env.Node.Context = "store"
			if ok, err := p.Require(ev, env); ok || err != nil {
				t.Errorf("Require in store = %v, %v; want false", ok, err)
			}
			env.Node.Context = "hospital"
			env.Node.Devices = nil // missing key reads 0
			if ok, err := p.Require(ev, env); ok || err != nil {
				t.Errorf("Require without cameras = %v, %v; want false", ok, err)
			}
			env.Pod.Target = Point{}
			if s, err := p.Score(ev, env); s != -UnknownDistance || err != nil {
				t.Errorf("Score with unknown target = %v, %v; want %v", s, err, -UnknownDistance)
			}
			env.Pod.Labels = map[string]string{"app": "other"}
			if ok, err := p.Match(ev, env); ok || err != nil {
				t.Errorf("Match other app = %v, %v; want false", ok, err)
			}
		})
	}
}

func TestDefaultsAndAbsentExpressions(t *testing.T) {
	p := mustParse(t, map[string]string{})
	ev := NewEvaluator()
	env := benchEnv()
	if p.HasMatch || p.HasScore || p.Weight != 1 || p.Settle != DefaultSettle || p.OnContextChange != Reschedule || p.OnNodeFailure != Reschedule || p.PhiThreshold != 0 {
		t.Fatalf("defaults = %+v", p)
	}
	if ok, err := p.Match(ev, env); ok || err != nil {
		t.Errorf("Match without expression = %v, %v; want false", ok, err)
	}
	if ok, err := p.Require(ev, env); !ok || err != nil {
		t.Errorf("Require without expression = %v, %v; want true", ok, err)
	}
	if s, err := p.Score(ev, env); s != 0 || err != nil {
		t.Errorf("Score without expression = %v, %v; want 0", s, err)
	}
}

func TestEvalExpressions(t *testing.T) {
	cases := []struct {
		key, expr string
		want      any // bool, float64, or error substring (string)
	}{
		{"require", `node.battery > 50`, true},
		{"require", `node.location.known && pod.target.known`, true},
		{"require", `"example.com/dirty" in node.taints`, true},
		{"require", `"roam.dev/unreachable" in node.taints`, false},
		{"require", `not ("roam.dev/unreachable" in node.taints)`, true},
		{"require", `node.labels["feature.node.kubernetes.io/f01"] == "true"`, true},
		{"require", `node.labels["missing"] == ""`, true},
		{"require", `node.capacity["roam.dev/camera"] == 2 and node.devices["roam.dev/none"] == 0`, true},
		{"require", `node.zone in ["ward-3", "ward-4"]`, true},
		{"require", `node.name startsWith "robot-"`, true},
		{"require", `any(node.taints, # == "example.com/dirty")`, true},
		{"require", `node.context == "hospital" ? node.battery >= 80 : false`, true},
		{"require", `node.devices["roam.dev/camera"] / 0 > 1`, true}, // +Inf
		{"require", `pod.annotations["roam.dev/target"] == "0,0"`, true},
		{"require", `pod.namespace == "hospital-apps" || pod.name == "x"`, true},
		{"score", `node.battery`, 80.0},
		{"score", `1`, 1.0},
		{"score", `-node.location.x + node.location.y * 2`, 5.0},
		{"score", `distance(node.location, pod.target)`, 5.0},
		{"score", `len(node.taints) + len(node.labels)`, 31.0},
		{"score", `node.battery ** 0.5`, 8.94427190999916},
		{"score", `max(node.battery, 90)`, 90.0},
		{"score", `int(node.labels["x"])`, "invalid operation: int()"}, // runtime error, not a panic
		{"score", `sum(map(1..int(node.battery) * 100000, #))`, "memory budget exceeded"},
		{"require", `all(1..400, {all(1..400, {true})})`, "memory budget exceeded"},
		{"require", `node.taints[5] == "x"`, "index out of range"},
	}
	for _, tc := range cases {
		for name, ev := range evaluators() {
			t.Run(name+"/"+tc.expr, func(t *testing.T) {
				p := mustParse(t, map[string]string{tc.key: tc.expr})
				env := benchEnv()
				var got any
				var err error
				if tc.key == "score" {
					got, err = p.Score(ev, env)
				} else {
					got, err = p.Require(ev, env)
				}
				if want, ok := tc.want.(string); ok {
					var ee *EvalError
					if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &ee) || ee.Key != tc.key {
						t.Fatalf("got %v, %v; want EvalError containing %q", got, err, want)
					}
					return
				}
				if err != nil || got != tc.want {
					t.Fatalf("got %v, %v; want %v", got, err, tc.want)
				}
			})
		}
	}
}

func TestExamplePolicyFastAndAllocationFree(t *testing.T) {
	p := mustParse(t, exampleData())
	if p.match.fast.boolean == nil || p.require.fast.boolean == nil || p.score.fast.num == nil {
		t.Fatal("the design's example policy must take the allocation-free path")
	}
	ev := NewEvaluator()
	env := benchEnv()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = p.Match(ev, env)
		_, _ = p.Require(ev, env)
		_, _ = p.Score(ev, env)
	})
	if allocs != 0 {
		t.Errorf("allocations per Match+Require+Score = %v, want 0", allocs)
	}
	// Through the VM, a boolean policy allocates only for boxing map reads.
	mp := mustParse(t, map[string]string{"require": `any(node.taints, # == "example.com/dirty")`})
	if mp.require.fast.boolean != nil {
		t.Fatal("iteration builtins run in the VM")
	}
	if ok, err := mp.Require(ev, env); !ok || err != nil {
		t.Fatalf("VM require = %v, %v", ok, err)
	}
}

func TestNilEnv(t *testing.T) {
	p := mustParse(t, exampleData())
	ev := NewEvaluator()
	if _, err := p.Require(ev, nil); err == nil {
		t.Error("Require with nil env: want error")
	}
	if _, err := p.Score(ev, nil); err == nil {
		t.Error("Score with nil env: want error")
	}
}

// A policy change concerns the pods of its namespace (any namespace for a
// global policy) that name it, or that name none and match its old or new
// version; a pod naming another policy is not concerned by a match.
func TestChangeConcerns(t *testing.T) {
	old := mustParse(t, map[string]string{"match": `pod.labels["app"] == "old"`, "require": "true"})
	updated := mustParse(t, map[string]string{"match": `pod.labels["app"] == "new"`, "require": "true"})
	ev := NewEvaluator()
	for _, c := range []struct {
		name   string
		change Change
		pod    *corev1.Pod
		want   bool
	}{
		{"matched the old version", Change{Key: "ns/p", Old: old, New: updated}, pod("ns", "a", map[string]string{"app": "old"}, nil), true},
		{"matches the new version", Change{Key: "ns/p", Old: old, New: updated}, pod("ns", "a", map[string]string{"app": "new"}, nil), true},
		{"matches neither", Change{Key: "ns/p", Old: old, New: updated}, pod("ns", "a", map[string]string{"app": "other"}, nil), false},
		{"deleted, matched", Change{Key: "ns/p", Old: old}, pod("ns", "a", map[string]string{"app": "old"}, nil), true},
		{"another namespace", Change{Key: "ns/p", New: updated}, pod("other", "a", map[string]string{"app": "new"}, nil), false},
		{"global policy", Change{Key: "roam-system/p", New: updated}, pod("other", "a", map[string]string{"app": "new"}, nil), true},
		{"names it", Change{Key: "ns/p", New: updated}, pod("ns", "a", nil, map[string]string{PolicyAnnotation: " p "}), true},
		{"names another", Change{Key: "ns/p", New: updated}, pod("ns", "a", map[string]string{"app": "new"}, map[string]string{PolicyAnnotation: "q"}), false},
	} {
		if got := c.change.Concerns(ev, c.pod, DefaultGlobalNamespace); got != c.want {
			t.Errorf("%s: Concerns = %v, want %v", c.name, got, c.want)
		}
	}
}
