package policies

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The node-object part of a require is the conjunction of its top-level
// operands that read the Node object alone: not the pod, not the free
// devices.
func TestStaticRequireParts(t *testing.T) {
	env := benchEnv() // a hospital robot in ward-3, battery 80, 2 free cameras
	for _, tc := range []struct {
		require string
		has     bool
		want    bool // on env
	}{
		{`node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`, true, true},
		{`node.context == "store" && node.devices["roam.dev/camera"] >= 1`, true, false},
		{`node.devices["roam.dev/camera"] >= 1 && node.zone == "ward-3" && node.battery > 90`, true, false},
		{`node.capacity["roam.dev/camera"] >= 2 and node.zone == "ward-3"`, true, true},
		{`node.context == "hospital"`, true, true},
		{`node.devices["roam.dev/camera"] >= 1`, false, true},
		{`node.context == "hospital" || node.battery > 50`, true, true}, // one operand, node-object only
		{`node.context == "store" || node.devices["roam.dev/camera"] >= 1`, false, true},
		{`node.zone == pod.labels["zone"] && node.devices["roam.dev/camera"] >= 1`, false, true},
		{`any(node.taints, # == "x") && node.battery > 10`, true, true}, // the VM-only operand is left out
		{`pod.namespace == "x"`, false, true},
		{`true`, false, true},
	} {
		t.Run(tc.require, func(t *testing.T) {
			p := mustParse(t, map[string]string{"require": tc.require})
			if p.HasStaticRequire() != tc.has {
				t.Fatalf("HasStaticRequire = %v, want %v", p.HasStaticRequire(), tc.has)
			}
			if got := p.StaticRequire(NewEvaluator(), &env.Node); got != tc.want {
				t.Fatalf("StaticRequire = %v, want %v", got, tc.want)
			}
			m := p.Memoize(NewEvaluator(), &env.Node)
			if got, known := p.MemoStaticRequire(&m); !known || got != tc.want {
				t.Fatalf("MemoStaticRequire = %v, %v; want %v, true", got, known, tc.want)
			}
			if _, known := p.MemoStaticRequire(nil); known && tc.has {
				t.Fatal("MemoStaticRequire knows the answer without a memo")
			}
		})
	}
}

// Where the node-object part is false, the require is false for every pod
// and every number of free devices (evaluated in the VM), and the part's
// answer does not change when only the free devices do: the property a
// scheduler relies on to leave such nodes out before filtering. Seeded
// random nodes and pods.
func TestStaticRequireImpliesRequire(t *testing.T) {
	requires := []string{
		`node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`,
		`node.devices["roam.dev/camera"] < 2 && node.zone in ["ward-1", "ward-2"] && node.battery >= 30`,
		`node.labels["tier"] == pod.labels["tier"] && !("roam.dev/lidar" in node.taints) && node.capacity["roam.dev/arm"] > 0`,
		`(node.context == "store" || node.location.x > 50) && distance(node.location, pod.target) < 40`,
		`node.name != "robot-3" && !(node.battery < 20) && node.devices["roam.dev/camera"] + node.devices["roam.dev/arm"] >= 2`,
	}
	rng := rand.New(rand.NewPCG(23, 1))
	vm := NewEvaluator()
	vm.noFast = true
	ev := NewEvaluator()
	for _, src := range requires {
		p := mustParse(t, map[string]string{"require": src})
		if !p.HasStaticRequire() {
			t.Fatalf("%s: no node-object part", src)
		}
		excluded := 0
		for range 400 {
			node := randomNodeEnv(rng)
			static := p.StaticRequire(ev, &node)
			if !static {
				excluded++
			}
			for range 8 {
				node.Devices = randomDevices(rng)
				if p.StaticRequire(ev, &node) != static {
					t.Fatalf("%s: the node-object part changed with the free devices on %+v", src, node)
				}
				env := Env{Node: node, Pod: randomPodEnv(rng)}
				ok, err := p.Require(vm, &env)
				if err == nil && ok && !static {
					t.Fatalf("%s: require holds on %+v for %+v, but the node-object part is false", src, env.Node, env.Pod)
				}
			}
		}
		if excluded == 0 || excluded == 400 {
			t.Fatalf("%s: %d of 400 random nodes excluded; the test needs both outcomes", src, excluded)
		}
	}
}

func randomNodeEnv(rng *rand.Rand) NodeEnv {
	contexts := []string{"hospital", "store", "warehouse", ""}
	n := NodeEnv{
		Name:     fmt.Sprintf("robot-%d", rng.IntN(6)),
		Context:  contexts[rng.IntN(len(contexts))],
		Zone:     fmt.Sprintf("ward-%d", rng.IntN(4)),
		Location: Point{X: rng.Float64() * 100, Y: rng.Float64() * 100, Known: rng.IntN(4) > 0},
		Battery:  float64(rng.IntN(101)),
		Labels:   map[string]string{"tier": fmt.Sprint(rng.IntN(2))},
		Capacity: map[string]float64{"roam.dev/camera": float64(rng.IntN(3)), "roam.dev/arm": float64(rng.IntN(2))},
		Devices:  randomDevices(rng),
	}
	if rng.IntN(3) == 0 {
		n.Taints = []string{"roam.dev/lidar"}
	}
	return n
}

func randomDevices(rng *rand.Rand) map[string]float64 {
	return map[string]float64{"roam.dev/camera": float64(rng.IntN(3)), "roam.dev/arm": float64(rng.IntN(2))}
}

func randomPodEnv(rng *rand.Rand) PodEnv {
	return PodEnv{Name: "p", Namespace: "ns", Labels: map[string]string{"tier": fmt.Sprint(rng.IntN(2))},
		Target: Point{X: rng.Float64() * 100, Y: rng.Float64() * 100, Known: true}}
}
