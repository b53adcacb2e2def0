package policy

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/policy/nodecache"
)

// The node cache memoizes each policy's node-only require per node
// version: policies sharing a node see their own answers, and a node
// change (a new Node object) is seen at once.
func TestFilterMemoPerPolicyAndNodeVersion(t *testing.T) {
	pl := newTestPlugin(t,
		policyCM("ops", "hospital", map[string]string{"match": `pod.labels["app"] == "h"`, "require": `node.context == "hospital"`}),
		policyCM("ops", "store", map[string]string{"match": `pod.labels["app"] == "s"`, "require": `node.context == "store"`}),
		policyCM("ops", "battery", map[string]string{"match": `pod.labels["app"] == "s"`, "require": `node.battery < 0`}),
	)
	ctx := context.Background()
	hPod := st.MakePod().Namespace("ops").Name("h").Label("app", "h").Obj()
	sPod := st.MakePod().Namespace("ops").Name("s").Label("app", "s").Obj()
	ni := nodeInfo(robotNode("r", "hospital", "1,1", "1"))
	check := func(pod *v1.Pod, want bool) {
		t.Helper()
		state, status := preFilter(t, pl, pod)
		if !status.IsSuccess() {
			t.Fatal(status)
		}
		if got := pl.Filter(ctx, state, pod, ni).IsSuccess(); got != want {
			t.Fatalf("%s on a %s robot: pass %v, want %v", pod.Name, ni.Node().Labels[policies.ContextLabel], got, want)
		}
	}
	for i := 0; i < 2; i++ { // the second round answers from the memos
		check(hPod, true)
		check(sPod, false)
	}
	ni.SetNode(robotNode("r", "store", "1,1", "1")) // the robot changed context
	check(hPod, false)
	check(sPod, true)
	check(hPod, false)
}

// A pod governed by more policies than the cache memoizes per node still
// gets every require checked.
func TestFilterManyPolicies(t *testing.T) {
	var cms []*v1.ConfigMap
	for i := 0; i < nodecache.MaxMemos+3; i++ {
		req := `node.context == "hospital"`
		if i == nodecache.MaxMemos+2 {
			req = `node.battery > 90` // the last one fails
		}
		cms = append(cms, policyCM("ops", fmt.Sprintf("p%02d", i), map[string]string{"match": "true", "require": req}))
	}
	pl := newTestPlugin(t, cms...)
	pod := st.MakePod().Namespace("ops").Name("x").Obj()
	ni := nodeInfo(robotNode("r", "hospital", "1,1", "1"))
	for i := 0; i < 2; i++ {
		state, status := preFilter(t, pl, pod)
		if !status.IsSuccess() || len(governing(state)) != nodecache.MaxMemos+3 {
			t.Fatalf("PreFilter: %v, %d policies", status, len(governing(state)))
		}
		status = pl.Filter(context.Background(), state, pod, ni)
		if status.IsSuccess() || status.Message() != ReasonRequireFalse(fmt.Sprintf("ops/p%02d", nodecache.MaxMemos+2)) {
			t.Fatalf("Filter = %v, want the last policy's require false", status)
		}
	}
}

// PreScore measures the node versions it is given, whether or not
// Filter saw them: after Filter, without it, and after the node changed
// between the two.
func TestPreScoreMeasures(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	fresh := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	ctx := context.Background()
	pod := assistantPod("ma-0") // target 0,0
	ni := nodeInfo(robotNode("r", "hospital", "3,4", "2"))
	score := func(pl *Plugin, filter bool) float64 {
		t.Helper()
		state, status := preFilter(t, pl, pod)
		if !status.IsSuccess() {
			t.Fatal(status)
		}
		if filter {
			if s := pl.Filter(ctx, state, pod, ni); !s.IsSuccess() {
				t.Fatal(s)
			}
		}
		return policyScoreOf(t, pl, state, pod, ni)
	}
	if got, want := score(pl, true), score(fresh, false); got != want || got != 2*(10*2-5) {
		t.Fatalf("score after Filter %v, without %v; want both %v", got, want, 2*(10*2-5))
	}
	// The node changes between Filter and PreScore (another cycle's pod
	// took a camera): PreScore measures the new version.
	state, _ := preFilter(t, pl, pod)
	if s := pl.Filter(ctx, state, pod, ni); !s.IsSuccess() {
		t.Fatal(s)
	}
	holder := st.MakePod().Namespace("hospital-apps").Name("holder").Node("r").
		Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	ni.AddPod(holder)
	if got := policyScoreOf(t, pl, state, pod, ni); got != 2*(10*1-5) {
		t.Fatalf("score after the node changed = %v; want %v", got, 2*(10*1-5))
	}
	// A new cycle for a pod with another target does not read the old
	// cycle's score.
	pod = assistantPod("ma-1")
	pod.Annotations[policies.TargetAnnotation] = "3,4"
	if got := score(pl, false); got != 2*(10*1-0) {
		t.Fatalf("next cycle's score = %v, want %v", got, 2*(10*1-0))
	}
}

// policyScoreOf runs PreScore on ni alone and returns its policies'
// weighted score.
func policyScoreOf(t *testing.T, pl *Plugin, state fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) float64 {
	t.Helper()
	if s := pl.PreScore(context.Background(), state, pod, []fwk.NodeInfo{ni}); !s.IsSuccess() {
		t.Fatal(s)
	}
	s, err := readState[*preScoreState](state, preScoreStateKey)
	if err != nil || len(s.policy) != 1 || s.names[0] != ni.Node().Name {
		t.Fatalf("PreScore left no measure of the node in the cycle state (%v)", err)
	}
	return s.policy[0]
}
