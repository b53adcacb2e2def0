package policy

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"
)

// A clone of the cycle state (preemption and nominated pods make them) is
// independent of the original: running PreScore on one leaves the other's
// scores as they were, in either order.
func TestCycleStateClonesAreIndependent(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	ctx := context.Background()
	pod := assistantPod("ma-0") // target 0,0
	a := []fwk.NodeInfo{nodeInfo(robotNode("near", "hospital", "3,4", "1")), nodeInfo(robotNode("far", "hospital", "30,40", "1"))}
	b := []fwk.NodeInfo{nodeInfo(robotNode("one", "hospital", "3,4", "1")), nodeInfo(robotNode("three", "hospital", "3,4", "3"))}
	normalize := func(state fwk.CycleState, nodes []fwk.NodeInfo) map[string]int64 {
		t.Helper()
		list := make(framework.NodeScoreList, len(nodes))
		for i, ni := range nodes {
			list[i].Name = ni.Node().Name
		}
		if s := pl.NormalizeScore(ctx, state, pod, list); !s.IsSuccess() {
			t.Fatal(s)
		}
		out := map[string]int64{}
		for _, s := range list {
			out[s.Name] = s.Score
		}
		return out
	}
	preScore := func(state fwk.CycleState, nodes []fwk.NodeInfo) {
		t.Helper()
		if s := pl.PreScore(ctx, state, pod, nodes); !s.IsSuccess() {
			t.Fatal(s)
		}
	}
	state, status := preFilter(t, pl, pod)
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	preScore(state, a)
	wantA := normalize(state, a)
	if wantA["near"] <= wantA["far"] {
		t.Fatalf("scores %v: want near above far", wantA)
	}
	clone := state.Clone()
	preScore(clone, b) // the clone scores other nodes
	wantB := normalize(clone, b)
	if wantB["three"] <= wantB["one"] {
		t.Fatalf("scores %v: want three (more free cameras) above one", wantB)
	}
	if got := normalize(state, a); got["near"] != wantA["near"] || got["far"] != wantA["far"] {
		t.Fatalf("the original's scores changed after its clone's PreScore: %v, want %v", got, wantA)
	}
	preScore(state, a[1:]) // the original scores again
	if got := normalize(clone, b); got["one"] != wantB["one"] || got["three"] != wantB["three"] {
		t.Fatalf("the clone's scores changed after the original's PreScore: %v, want %v", got, wantB)
	}
	if got := governing(clone); len(got) != 1 || got[0] != governing(state)[0] {
		t.Fatalf("the clone is governed by %v", got)
	}
}

// Preemption's dry runs filter copies of the snapshot's NodeInfos with
// victims removed (new generations, other free devices). Through the
// framework: the copy gets its own correct answer, and the real node's
// cached version is neither replaced nor evaluated again.
func TestPreemptionCopiesDoNotCorruptTheNodeCache(t *testing.T) {
	schedmetrics.Register()
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := fake.NewClientset(policyCM("hospital-apps", "medical-assistant", exampleData()))
	holder := st.MakePod().Namespace("hospital-apps").Name("holder").UID("holder").Node("busy").
		Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	snapshot := internalcache.NewSnapshot([]*v1.Pod{holder}, []*v1.Node{robotNode("busy", "hospital", "1,1", "1")})
	fw, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
		tf.RegisterPluginAsExtensions(Name, New, "PreFilter", "Filter"),
	}, "roam-scheduler", frameworkruntime.WithClientSet(cs), frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(cs, 0)),
		frameworkruntime.WithSnapshotSharedLister(snapshot))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fw.Close() }()
	real, err := snapshot.NodeInfos().Get("busy")
	if err != nil {
		t.Fatal(err)
	}
	pod := assistantPod("ma-0")
	state := framework.NewCycleState()
	if _, status, _ := fw.RunPreFilterPlugins(ctx, state, pod); !status.IsSuccess() {
		t.Fatalf("PreFilter: %v", status)
	}
	evaluations := func() float64 { return counterValue(t, ResultPass) + counterValue(t, ResultFail) }
	filter := func(state fwk.CycleState, ni fwk.NodeInfo) bool {
		return fw.RunFilterPlugins(ctx, state, pod, ni).IsSuccess()
	}
	if filter(state, real) {
		t.Fatal("the robot whose only camera is taken passed")
	}
	before := evaluations()
	for range 2 {
		victimless := real.Snapshot()
		if err := victimless.RemovePod(logger, holder); err != nil {
			t.Fatal(err)
		}
		if !filter(state.Clone(), victimless) {
			t.Fatal("the copy without the victim did not pass")
		}
		if filter(state, real) {
			t.Fatal("the real robot passed after its copy was filtered")
		}
	}
	if got := evaluations() - before; got != 2 {
		t.Fatalf("%v evaluations, want 2 (each copy once, the real robot's cached version never again)", got)
	}
}
