package policy

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"unique"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// The node cache memoizes each policy's node-only require per node
// version: policies sharing a node see their own answers, and a node
// change (a new NodeInfo generation) is seen at once.
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

// A cache entry holds the node version's environment; its free devices
// (FreeUnits, what the built-in device preference reads) are the same units
// as the environment's, and its location the environment's.
func TestCacheEntry(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	state, status := preFilter(t, pl, assistantPod("ma-0"))
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	holder := st.MakePod().Namespace("hospital-apps").Name("holder").Node("r").
		Req(map[v1.ResourceName]string{"roam.dev/camera": "2", "roam.dev/arm": "1"}).Obj()
	n := robotNode("r", "hospital", "3,4", "5")
	n.Status.Allocatable["roam.dev/arm"] = n.Status.Allocatable["roam.dev/camera"] // 5 arms
	ni := nodeInfo(n, holder)
	e := pl.envs.get(ni, governing(state))
	if e.env.Name != "r" || e.env.Location != (policies.Point{X: 3, Y: 4, Known: true}) || e.location() != e.env.Location {
		t.Fatalf("entry: env %+v, location %v", e.env, e.location())
	}
	for name, want := range map[string]int64{"roam.dev/camera": 3, "roam.dev/arm": 4, "roam.dev/lidar": 0} {
		if got := e.FreeUnits(&capability.Request{Name: v1.ResourceName(name), Handle: unique.Make(name)}); got != want || int64(e.env.Devices[name]) != want {
			t.Errorf("free %s = %v (env %v), want %v", name, got, e.env.Devices[name], want)
		}
	}
	if lost := pl.envs.get(nodeInfo(robotNode("lost", "hospital", "", "1")), nil); lost.location().Known {
		t.Errorf("a node without a location: %v", lost.location())
	}
}

// A pod governed by more policies than the cache memoizes per node still
// gets every require checked.
func TestFilterManyPolicies(t *testing.T) {
	var cms []*v1.ConfigMap
	for i := 0; i < maxMemos+3; i++ {
		req := `node.context == "hospital"`
		if i == maxMemos+2 {
			req = `node.battery > 90` // the last one fails
		}
		cms = append(cms, policyCM("ops", fmt.Sprintf("p%02d", i), map[string]string{"match": "true", "require": req}))
	}
	pl := newTestPlugin(t, cms...)
	pod := st.MakePod().Namespace("ops").Name("x").Obj()
	ni := nodeInfo(robotNode("r", "hospital", "1,1", "1"))
	for i := 0; i < 2; i++ {
		state, status := preFilter(t, pl, pod)
		if !status.IsSuccess() || len(governing(state)) != maxMemos+3 {
			t.Fatalf("PreFilter: %v, %d policies", status, len(governing(state)))
		}
		status = pl.Filter(context.Background(), state, pod, ni)
		if status.IsSuccess() || status.Message() != ReasonRequireFalse(fmt.Sprintf("ops/p%02d", maxMemos+2)) {
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
		return measureOf(t, pl, state, pod, ni).policy
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
	if got := measureOf(t, pl, state, pod, ni).policy; got != 2*(10*1-5) {
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

// measureOf runs PreScore on ni alone and returns its measure.
func measureOf(t *testing.T, pl *Plugin, state fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) measure {
	t.Helper()
	if s := pl.PreScore(context.Background(), state, pod, []fwk.NodeInfo{ni}); !s.IsSuccess() {
		t.Fatal(s)
	}
	s, ok := readState(state)
	if !ok || s.measures == nil || len(s.measures.ms) != 1 || s.measures.nodes[0] != ni.Node() {
		t.Fatal("PreScore left no measure of the node in the cycle state")
	}
	return s.measures.ms[0]
}

// The front cache holds at most the current version of each node: a node
// that changed many times leaves no stale entry (nor node object) behind.
func TestFrontCacheKeepsOnlyCurrentVersions(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	ctx := context.Background()
	ni := nodeInfo(robotNode("r", "hospital", "1,1", "1"))
	for i := range 50 {
		ni.SetNode(robotNode("r", "hospital", fmt.Sprintf("%d,1", i), "1")) // a new version each time
		state, status := preFilter(t, pl, pod)
		if !status.IsSuccess() {
			t.Fatal(status)
		}
		if !pl.Filter(ctx, state, pod, ni).IsSuccess() {
			t.Fatalf("version %d rejected", i)
		}
	}
	held := 0
	for i := range pl.envs.front {
		if e := pl.envs.front[i].e.Load(); e != nil {
			held++
			if e.gen != ni.GetGeneration() {
				t.Errorf("front slot %d holds generation %d, current is %d", i, e.gen, ni.GetGeneration())
			}
		}
	}
	if held != 1 {
		t.Errorf("front cache holds %d entries for one node, want 1", held)
	}
}

// Node versions whose generations fall in the same set of the front
// cache all stay in it up to its four ways; a fifth takes the way of the
// oldest version (the smallest generation), a version replaced by a newer
// one frees its way, and a lookup of an evicted version still answers
// (from the map).
func TestFrontCacheWays(t *testing.T) {
	if frontWays != 4 {
		t.Fatalf("the test expects four ways, the front has %d", frontWays)
	}
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	state, status := preFilter(t, pl, assistantPod("ma-0"))
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	ps := governing(state)
	// Six generations in one set.
	var gens []int64
	for g := int64(1); len(gens) < 6; g++ {
		if setIndex(g, frontBits, frontWays) == setIndex(1, frontBits, frontWays) {
			gens = append(gens, g)
		}
	}
	nis := make([]*framework.NodeInfo, len(gens))
	for i := range nis {
		nis[i] = nodeInfo(robotNode(fmt.Sprintf("r%d", i), "hospital", "1,1", "1"))
		nis[i].Generation = gens[i]
	}
	held := func() []string {
		var names []string
		set := pl.envs.frontSetOf(gens[0])
		for i := range set {
			if e := set[i].e.Load(); e != nil {
				names = append(names, e.node.Name)
			}
		}
		return names
	}
	entries := make([]*envEntry, 4)
	for i := range entries {
		entries[i] = pl.envs.get(nis[i], ps)
	}
	if got := held(); !slices.Equal(got, []string{"r0", "r1", "r2", "r3"}) {
		t.Fatalf("set holds %v, want [r0 r1 r2 r3]", got)
	}
	for i, e := range entries {
		if pl.envs.get(nis[i], ps) != e || pl.envs.lookup(gens[i]) != e {
			t.Fatalf("a second lookup of r%d did not find its entry in the front", i)
		}
	}
	pl.envs.get(nis[4], ps)
	if got := held(); !slices.Equal(got, []string{"r4", "r1", "r2", "r3"}) {
		t.Fatalf("after a fifth node the set holds %v, want [r4 r1 r2 r3]", got)
	}
	if pl.envs.get(nis[0], ps) != entries[0] {
		t.Fatal("the evicted node's entry was rebuilt instead of found in the map")
	}
	// r0 is back, in the way of the oldest (r1). r2's next version (gens[5]
	// is in the same set) frees r2's way, which the new version takes.
	if got := held(); !slices.Equal(got, []string{"r4", "r0", "r2", "r3"}) {
		t.Fatalf("after r0's lookup the set holds %v, want [r4 r0 r2 r3]", got)
	}
	next := nodeInfo(robotNode("r2", "hospital", "2,2", "1"))
	next.Generation = gens[5]
	if e := pl.envs.get(next, ps); e.gen != gens[5] || e.replaced != gens[2] {
		t.Fatalf("r2's new version: generation %d replacing %d, want %d replacing %d", e.gen, e.replaced, gens[5], gens[2])
	}
	if got := held(); !slices.Equal(got, []string{"r4", "r0", "r2", "r3"}) {
		t.Fatalf("after r2's new version the set holds %v, want [r4 r0 r2 r3]", got)
	}
	if pl.envs.lookup(gens[2]) != nil {
		t.Fatal("r2's replaced version is still in the front")
	}
}
