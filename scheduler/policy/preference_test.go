package policy

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// cycle runs pod's scheduling cycle through RoamPolicy on nodes: PreFilter,
// Filter (unless skipped, or filter is false), PreScore, Score and
// NormalizeScore. It returns the normalized scores by node name, or nil
// when PreScore skips the pod.
func cycle(t *testing.T, pl *Plugin, pod *v1.Pod, filter bool, nodes ...*framework.NodeInfo) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	state := framework.NewCycleState()
	var infos []fwk.NodeInfo
	for _, ni := range nodes {
		infos = append(infos, ni)
	}
	_, status := pl.PreFilter(ctx, state, pod, infos)
	if !status.IsSuccess() && !status.IsSkip() {
		t.Fatalf("PreFilter: %v", status)
	}
	if status.IsSuccess() && filter {
		for _, ni := range nodes {
			if s := pl.Filter(ctx, state, pod, ni); !s.IsSuccess() {
				t.Fatalf("Filter %s: %v", ni.Node().Name, s)
			}
		}
	}
	if s := pl.PreScore(ctx, state, pod, infos); s.IsSkip() {
		return nil
	} else if !s.IsSuccess() {
		t.Fatalf("PreScore: %v", s)
	}
	var list framework.NodeScoreList
	for _, ni := range nodes {
		s, status := pl.Score(ctx, state, pod, ni)
		if !status.IsSuccess() {
			t.Fatalf("Score %s: %v", ni.Node().Name, status)
		}
		list = append(list, framework.NodeScore{Name: ni.Node().Name, Score: s})
	}
	if s := pl.NormalizeScore(ctx, state, pod, list); !s.IsSuccess() {
		t.Fatalf("NormalizeScore: %v", s)
	}
	got := map[string]int64{}
	for _, s := range list {
		if s.Score < framework.MinNodeScore || s.Score > framework.MaxNodeScore {
			t.Fatalf("%s: score %d outside 0..100", s.Name, s.Score)
		}
		got[s.Name] = s.Score
	}
	return got
}

// A pod no policy governs gets roam's built-in preferences when it opted
// in with an annotation, and nothing otherwise, even when it requests
// devices.
// capability.Combine scores on the framework's scale.
func TestCombineUsesTheFrameworkScale(t *testing.T) {
	if capability.MaxScore != framework.MaxNodeScore {
		t.Fatalf("capability.MaxScore = %d, framework.MaxNodeScore = %d", capability.MaxScore, framework.MaxNodeScore)
	}
}

func TestPreferencesOfUngovernedPods(t *testing.T) {
	pl := newTestPlugin(t)
	nodes := []*framework.NodeInfo{
		nodeInfo(robotNode("near", "store", "12,9", "1")), nodeInfo(robotNode("mid", "store", "30,-20", "1")),
		nodeInfo(robotNode("far", "store", "100,100", "1")), nodeInfo(robotNode("lost", "store", "", "1")),
	}
	targeted := st.MakePod().Namespace("ops").Name("t").Annotation(policies.TargetAnnotation, "10,10").Obj()
	got := cycle(t, pl, targeted, true, nodes...)
	if !(got["near"] == 100 && got["near"] > got["mid"] && got["mid"] > got["far"] && got["far"] == 0 && got["lost"] == 0) {
		t.Fatalf("scores %v: want near 100 > mid > far 0, unknown location 0", got)
	}
	plain := st.MakePod().Namespace("ops").Name("p").Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	if got := cycle(t, pl, plain, true, nodes...); got != nil {
		t.Fatalf("a pod that did not opt in was scored: %v", got)
	}
}

// A governed pod's score is the weighted mean of its policies' normalized
// score and the built-in preferences' (defaults: policy 8, location 2).
func TestScoreCombinesPoliciesAndPreferences(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")                           // target 0,0; requests no device
	a := nodeInfo(robotNode("a", "hospital", "3,4", "1")) // policy 2*(10-5) = 10: 0 of 100; nearest: 100
	b := nodeInfo(robotNode("b", "hospital", "6,8", "2")) // policy 2*(20-10) = 20: 100; farther: 0
	got := cycle(t, pl, pod, true, a, b)
	if got["a"] != (8*0+2*100)/10 || got["b"] != (8*100+2*0)/10 {
		t.Fatalf("scores %v, want a 20, b 80", got)
	}
}

// A cycle without Filter (a pod no policy governs) scores as one with it,
// and NormalizeScore finds each node's measure when its list is not in
// PreScore's order.
func TestScoreWithoutFilterAndOutOfOrder(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	var nodes []*framework.NodeInfo
	for i := 0; i < 600; i++ {
		nodes = append(nodes, nodeInfo(robotNode(fmt.Sprintf("r%04d", i), "hospital", fmt.Sprintf("%d,%d", i%50+1, i/50), fmt.Sprint(1+i%3))))
	}
	withFilter := cycle(t, pl, pod, true, nodes...)
	withoutFilter := cycle(t, pl, pod, false, nodes...)
	if len(withFilter) != len(nodes) {
		t.Fatalf("%d scores for %d nodes", len(withFilter), len(nodes))
	}
	best := 0
	for name, s := range withFilter {
		if withoutFilter[name] != s {
			t.Fatalf("%s: %d with Filter, %d without", name, s, withoutFilter[name])
		}
		best = max(best, int(s))
	}
	if best == 0 {
		t.Fatal("every node scored 0")
	}

	ctx := context.Background()
	state, status := preFilter(t, pl, pod)
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	var infos []fwk.NodeInfo
	for _, ni := range nodes {
		infos = append(infos, ni)
	}
	if s := pl.PreScore(ctx, state, pod, infos); !s.IsSuccess() {
		t.Fatal(s)
	}
	list := make(framework.NodeScoreList, len(nodes))
	for i := range nodes {
		list[len(nodes)-1-i] = framework.NodeScore{Name: nodes[i].Node().Name}
	}
	if s := pl.NormalizeScore(ctx, state, pod, list); !s.IsSuccess() {
		t.Fatal(s)
	}
	for _, s := range list {
		if s.Score != withFilter[s.Name] {
			t.Fatalf("%s: %d in reverse order, %d in order", s.Name, s.Score, withFilter[s.Name])
		}
	}
}

// Filter and Score run on many goroutines, as the framework runs them,
// and give the same scores as a cycle run on one goroutine (run with -race
// to check the cache's synchronization).
func TestParallelCycle(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	var nodes []*framework.NodeInfo
	for i := 0; i < 1500; i++ {
		nodes = append(nodes, nodeInfo(robotNode(fmt.Sprintf("r%04d", i), "hospital", fmt.Sprintf("%d,%d", i%40, i/40), fmt.Sprint(1+i%4))))
	}
	want := cycle(t, pl, pod, true, nodes...)

	ctx := context.Background()
	state := framework.NewCycleState()
	if _, s := pl.PreFilter(ctx, state, pod, nil); !s.IsSuccess() {
		t.Fatal(s)
	}
	parallel := func(fn func(i int)) {
		workqueue.ParallelizeUntil(ctx, 16, len(nodes), fn)
	}
	parallel(func(i int) {
		if s := pl.Filter(ctx, state, pod, nodes[i]); !s.IsSuccess() {
			t.Errorf("Filter %d: %v", i, s)
		}
	})
	infos := make([]fwk.NodeInfo, len(nodes))
	for i, ni := range nodes {
		infos[i] = ni
	}
	if s := pl.PreScore(ctx, state, pod, infos); !s.IsSuccess() {
		t.Fatal(s)
	}
	list := make(framework.NodeScoreList, len(nodes))
	parallel(func(i int) {
		v, s := pl.Score(ctx, state, pod, nodes[i])
		if !s.IsSuccess() {
			t.Errorf("Score %d: %v", i, s)
		}
		list[i] = framework.NodeScore{Name: nodes[i].Node().Name, Score: v}
	})
	if s := pl.NormalizeScore(ctx, state, pod, list); !s.IsSuccess() {
		t.Fatal(s)
	}
	for _, s := range list {
		if want[s.Name] != s.Score {
			t.Fatalf("%s: %d in parallel, %d on one goroutine", s.Name, s.Score, want[s.Name])
		}
	}
}
