package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
)

// benchNode is a robot with 30 labels and 4 device types.
func benchNode() *v1.Node {
	w := st.MakeNode().Name("robot-1").Label(policies.ContextLabel, "hospital").Label(policies.ZoneLabel, "ward-3").
		Annotation(policies.LocationAnnotation, "3,4").Annotation(policies.BatteryAnnotation, "80").
		Capacity(map[v1.ResourceName]string{
			v1.ResourceCPU: "4", v1.ResourceMemory: "8Gi", v1.ResourcePods: "110",
			"roam.dev/camera": "2", "roam.dev/lidar": "1", "roam.dev/arm": "1", "nvidia.com/gpu": "1",
		})
	for i := 0; i < 28; i++ {
		w = w.Label(fmt.Sprintf("feature.node.kubernetes.io/f%02d", i), "true")
	}
	return w.Obj()
}

// BenchmarkFilterScore is one pod × one node through RoamPolicy's Filter,
// PreScore and Score with the example policy of docs/policies.md (goal ≤ 2 µs/op),
// in cycles of 128 nodes with PreFilter and NormalizeScore shared by them
// (their per-cycle allocations are spread over the cycle's nodes). The
// node's version is cached, as in a scheduling cycle.
func BenchmarkFilterScore(b *testing.B) {
	benchmarkFilterScore(b, false)
}

// BenchmarkFilterScoreNodeChanged rebuilds the node's environment in every
// Filter (a new Node object each time): the worst case.
func BenchmarkFilterScoreNodeChanged(b *testing.B) {
	benchmarkFilterScore(b, true)
}

func benchmarkFilterScore(b *testing.B, changed bool) {
	pl := newTestPlugin(b, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	ctx := context.Background()
	node := benchNode()
	versions := []*v1.Node{node, node.DeepCopy()}
	ni := nodeInfo(node)
	const perCycle = 128
	infos := make([]fwk.NodeInfo, perCycle)
	for i := range infos {
		infos[i] = ni
	}
	scores := make(framework.NodeScoreList, perCycle)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += perCycle {
		state := framework.NewCycleState()
		if _, s := pl.PreFilter(ctx, state, pod, nil); !s.IsSuccess() {
			b.Fatal(s)
		}
		for j := range perCycle {
			if changed {
				ni.SetNode(versions[j%2])
			}
			if s := pl.Filter(ctx, state, pod, ni); !s.IsSuccess() {
				b.Fatal(s)
			}
		}
		if s := pl.PreScore(ctx, state, pod, infos); !s.IsSuccess() {
			b.Fatal(s)
		}
		for j := range scores {
			v, s := pl.Score(ctx, state, pod, ni)
			if !s.IsSuccess() {
				b.Fatal(s)
			}
			scores[j] = framework.NodeScore{Name: node.Name, Score: v}
		}
		if s := pl.NormalizeScore(ctx, state, pod, scores); !s.IsSuccess() {
			b.Fatal(s)
		}
	}
}

// BenchmarkFilterScoreFleet is Filter, PreScore and Score of one pod
// against 500 of 5,000 robots per cycle (what percentageOfNodesToScore
// picks at 5,000 nodes), each robot with its own objects; as in a
// scheduling cycle, all Filters run before PreScore, then all Scores, then
// NormalizeScore, and other work (the default plugins, the
// API server) evicts the CPU caches between cycles, so memory latency
// counts as it does in a scheduler whose caches hold a whole fleet. One op
// is one pod × one node.
func BenchmarkFilterScoreFleet(b *testing.B) { benchmarkFleet(b, 0) }

// BenchmarkFilterScoreFleetChurn is BenchmarkFilterScoreFleet with nodes
// changing as they do while a scheduler binds pods: after each cycle two
// robots get a new version (a new Node object; bench-scheduler sees about
// 1.6 new NodeInfo versions per pod).
func BenchmarkFilterScoreFleetChurn(b *testing.B) { benchmarkFleet(b, 2) }

func benchmarkFleet(b *testing.B, changesPerCycle int) {
	pl := newTestPlugin(b, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	const fleet, perCycle = 5000, 500
	nis := make([]*framework.NodeInfo, fleet)
	versions := make([][2]*v1.Node, fleet) // two objects per robot, swapped on a change
	for i := range nis {
		n := benchNode()
		n.Name = fmt.Sprintf("robot-%05d", i)
		n.Annotations[policies.LocationAnnotation] = fmt.Sprintf("%d,%d", i%100, i/100)
		nis[i] = nodeInfo(n)
		versions[i] = [2]*v1.Node{n, n.DeepCopy()}
	}
	thrash := make([]byte, 8<<20) // bigger than the L2 and a share of the L3
	scores := make(framework.NodeScoreList, perCycle)
	feasible := make([]fwk.NodeInfo, perCycle)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	cycle := func(start int) {
		state := framework.NewCycleState()
		if _, s := pl.PreFilter(ctx, state, pod, nil); !s.IsSuccess() {
			b.Fatal(s)
		}
		for j := 0; j < perCycle; j++ {
			if s := pl.Filter(ctx, state, pod, nis[(start+j)%fleet]); !s.IsSuccess() {
				b.Fatal(s)
			}
		}
		for j := range feasible {
			feasible[j] = nis[(start+j)%fleet]
		}
		if s := pl.PreScore(ctx, state, pod, feasible); !s.IsSuccess() {
			b.Fatal(s)
		}
		for j := 0; j < perCycle; j++ {
			v, s := pl.Score(ctx, state, pod, nis[(start+j)%fleet])
			if !s.IsSuccess() {
				b.Fatal(s)
			}
			scores[j] = framework.NodeScore{Name: nis[(start+j)%fleet].Node().Name, Score: v}
		}
		if s := pl.NormalizeScore(ctx, state, pod, scores); !s.IsSuccess() {
			b.Fatal(s)
		}
	}
	change := func() {
		for range changesPerCycle {
			i := rng.IntN(fleet)
			next := versions[i][0]
			if nis[i].Node() == next {
				next = versions[i][1]
			}
			nis[i].SetNode(next) // a new version (the robot moved, say)
		}
	}
	// Warm the node cache: every robot once.
	for start := 0; start < fleet; start += perCycle {
		cycle(start)
		change()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for c := 0; c*perCycle < b.N; c++ {
		b.StopTimer()
		change()
		for i := 0; i < len(thrash); i += 64 {
			thrash[i]++
		}
		b.StartTimer()
		cycle((c * 7919) % fleet) // the scheduler starts where the last cycle stopped
	}
}
