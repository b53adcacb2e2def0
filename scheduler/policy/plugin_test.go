package policy

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

func preFilter(t *testing.T, pl *Plugin, pod *v1.Pod) (*framework.CycleState, *fwk.Status) {
	t.Helper()
	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, pod, nil)
	return state, status
}

// governing returns the policies PreFilter resolved for this cycle's pod.
func governing(state fwk.CycleState) []*policies.Policy {
	if s, err := readState[*preFilterState](state, preFilterStateKey); err == nil {
		return s.policies
	}
	return nil
}

func TestPreFilter(t *testing.T) {
	pl := newTestPlugin(t,
		policyCM("hospital-apps", "medical-assistant", exampleData()),
		policyCM("hospital-apps", "broken", map[string]string{"require": "node.context =="}),
	)
	tests := []struct {
		name       string
		pod        *v1.Pod
		code       fwk.Code
		reason     string
		governedBy []string
	}{
		{name: "matched", pod: assistantPod("ma-0"), code: fwk.Success, governedBy: []string{"hospital-apps/medical-assistant"}},
		{name: "ungoverned pod is skipped", pod: st.MakePod().Namespace("hospital-apps").Name("plain").Obj(), code: fwk.Skip},
		{name: "other namespace is out of scope", pod: st.MakePod().Namespace("store").Name("x").Label("app", "medical-assistant").Obj(), code: fwk.Skip},
		{name: "names a missing policy", code: fwk.UnschedulableAndUnresolvable,
			pod:    st.MakePod().Namespace("hospital-apps").Name("m").Annotation(policies.PolicyAnnotation, "nowhere").Obj(),
			reason: `pod names policy "nowhere" (annotation roam.dev/policy): no policy hospital-apps/nowhere exists`},
		{name: "names a never-valid policy", code: fwk.UnschedulableAndUnresolvable,
			pod:    st.MakePod().Namespace("hospital-apps").Name("b").Annotation(policies.PolicyAnnotation, "broken").Obj(),
			reason: `policy hospital-apps/broken has never been valid: require: 1:15`},
		{name: "names a valid policy", code: fwk.Success, governedBy: []string{"hospital-apps/medical-assistant"},
			pod: st.MakePod().Namespace("hospital-apps").Name("n").Annotation(policies.PolicyAnnotation, "medical-assistant").Obj()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, status := preFilter(t, pl, tc.pod)
			if status.Code() != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(), status.Message(), tc.code)
			}
			if tc.reason != "" && !strings.Contains(status.Message(), tc.reason) {
				t.Fatalf("message %q, want it to contain %q", status.Message(), tc.reason)
			}
			var got []string
			for _, p := range governing(state) {
				got = append(got, p.Key())
			}
			if strings.Join(got, ",") != strings.Join(tc.governedBy, ",") {
				t.Fatalf("governed by %v, want %v", got, tc.governedBy)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	cameraPod := st.MakePod().Namespace("hospital-apps").Name("holder").Node("n").
		Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	unreachable := robotNode("hospital-unreachable", "hospital", "1,1", "2")
	unreachable.Spec.Taints = []v1.Taint{{Key: policies.UnreachableTaint, Effect: v1.TaintEffectNoSchedule}}
	tests := []struct {
		name   string
		ni     *framework.NodeInfo
		code   fwk.Code
		reason string
	}{
		{name: "hospital robot with a camera", ni: nodeInfo(robotNode("h", "hospital", "1,1", "2")), code: fwk.Success},
		{name: "store robot", ni: nodeInfo(robotNode("s", "store", "1,1", "2")), code: fwk.UnschedulableAndUnresolvable,
			reason: "policy hospital-apps/medical-assistant: require false"}, // no preemption can change its context
		{name: "no camera", ni: nodeInfo(robotNode("h0", "hospital", "1,1", "0")), code: fwk.Unschedulable,
			reason: "policy hospital-apps/medical-assistant: require false"},
		{name: "its only camera is taken", ni: nodeInfo(robotNode("h1", "hospital", "1,1", "1"), cameraPod), code: fwk.Unschedulable,
			reason: "policy hospital-apps/medical-assistant: require false"},
		{name: "one of two cameras is taken", ni: nodeInfo(robotNode("h2", "hospital", "1,1", "2"), cameraPod), code: fwk.Success},
		{name: "unreachable", ni: nodeInfo(unreachable), code: fwk.UnschedulableAndUnresolvable, reason: "node(s) had taint roam.dev/unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, status := preFilter(t, pl, assistantPod("ma-0"))
			if !status.IsSuccess() {
				t.Fatal(status)
			}
			status = pl.Filter(context.Background(), state, assistantPod("ma-0"), tc.ni)
			if status.Code() != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(), status.Message(), tc.code)
			}
			if tc.reason != "" && status.Message() != tc.reason {
				t.Fatalf("reason %q, want %q", status.Message(), tc.reason)
			}
		})
	}
}

// A require that fails at run time rejects that node with a reason and
// never panics; other nodes are unaffected.
func TestFilterRuntimeError(t *testing.T) {
	pl := newTestPlugin(t, policyCM("ops", "battery", map[string]string{
		"match":   `pod.labels["app"] == "x"`,
		"require": `int(node.labels["slots"]) >= 2`,
	}))
	before := counterValue(t, ResultError)
	pod := st.MakePod().Namespace("ops").Name("x").Label("app", "x").Obj()
	state, status := preFilter(t, pl, pod)
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	bad := st.MakeNode().Name("bad").Label("slots", "many").Obj()
	status = pl.Filter(context.Background(), state, pod, nodeInfo(bad))
	if status.Code() != fwk.Unschedulable || !strings.Contains(status.Message(), "policy ops/battery: require") {
		t.Fatalf("got %v %q, want Unschedulable naming the policy", status.Code(), status.Message())
	}
	if got := counterValue(t, ResultError) - before; got != 1 {
		t.Fatalf("error evaluations +%v, want +1", got)
	}
	good := st.MakeNode().Name("good").Label("slots", "3").Obj()
	if status := pl.Filter(context.Background(), state, pod, nodeInfo(good)); !status.IsSuccess() {
		t.Fatalf("good node: %v", status)
	}
}

func counterValue(t *testing.T, result string) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(evaluations.WithLabelValues(result))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestScore(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pl.weights = capability.Weights{} // the policy's score alone
	pod := assistantPod("ma-0")       // target 0,0
	state, status := preFilter(t, pl, pod)
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	nodes := []*v1.Node{
		robotNode("near", "hospital", "3,4", "1"),   // 2*(10*1 - 5)   = 10
		robotNode("far", "hospital", "30,40", "2"),  // 2*(10*2 - 50)  = -60
		robotNode("mid", "hospital", "6,8", "2"),    // 2*(10*2 - 10)  = 20
		robotNode("lost", "hospital", "", "2"),      // 2*(20 - 1e6): unknown location
		robotNode("near2", "hospital", "0,-5", "1"), // 10
	}
	var infos []fwk.NodeInfo
	for _, n := range nodes {
		infos = append(infos, nodeInfo(n))
	}
	if s := pl.PreScore(context.Background(), state, pod, infos); !s.IsSuccess() {
		t.Fatal(s)
	}
	if s, err := readState[*preScoreState](state, preScoreStateKey); err != nil || s.policy[0] != 10 {
		t.Fatalf("PreScore's measures %+v (%v); want near's policy score 10 first", s, err)
	}
	var scores framework.NodeScoreList
	for _, ni := range infos {
		s, status := pl.Score(context.Background(), state, pod, ni)
		if !status.IsSuccess() {
			t.Fatal(status)
		}
		scores = append(scores, framework.NodeScore{Name: ni.Node().Name, Score: s})
	}
	if s := pl.NormalizeScore(context.Background(), state, pod, scores); !s.IsSuccess() {
		t.Fatal(s)
	}
	got := map[string]int64{}
	for _, s := range scores {
		if s.Score < framework.MinNodeScore || s.Score > framework.MaxNodeScore {
			t.Fatalf("%s: score %d outside 0..100", s.Name, s.Score)
		}
		got[s.Name] = s.Score
	}
	if !(got["mid"] == 100 && got["near"] == got["near2"] && got["near"] > got["far"] && got["far"] > got["lost"] && got["lost"] == 0) {
		t.Fatalf("normalized scores %v: want mid 100 > near = near2 > far > lost = 0", got)
	}
}

func TestScoreSkippedWithoutScoreExpression(t *testing.T) {
	pl := newTestPlugin(t, policyCM("ops", "plain", map[string]string{"match": `pod.labels["app"] == "x"`, "require": "true"}))
	pod := st.MakePod().Namespace("ops").Name("x").Label("app", "x").Obj()
	state, _ := preFilter(t, pl, pod)
	if s := pl.PreScore(context.Background(), state, pod, nil); !s.IsSkip() {
		t.Fatalf("PreScore = %v, want Skip", s)
	}
}

func TestNormalizeScoreErrorsAndTies(t *testing.T) {
	pl := newTestPlugin(t)
	s := &preScoreState{scoring: 1}
	state := framework.NewCycleState()
	state.Write(preScoreStateKey, s)
	var scores framework.NodeScoreList
	for i, v := range []float64{5, math.NaN(), 5} {
		s.names = append(s.names, fmt.Sprint(i))
		s.policy = append(s.policy, v)
		s.measures = append(s.measures, 0)
		scores = append(scores, framework.NodeScore{Name: fmt.Sprint(i)})
	}
	for range 2 { // NormalizeScore leaves PreScore's state as it found it
		if st := pl.NormalizeScore(context.Background(), state, nil, scores); !st.IsSuccess() {
			t.Fatal(st)
		}
		if scores[0].Score != 100 || scores[1].Score != 0 || scores[2].Score != 100 {
			t.Fatalf("scores %v: want ties 100, errors 0", scores)
		}
	}
	// A node PreScore did not measure is an error.
	if st := pl.NormalizeScore(context.Background(), state, nil, framework.NodeScoreList{{Name: "x"}}); st.IsSuccess() {
		t.Fatal("NormalizeScore of a node PreScore did not measure succeeded")
	}
	// So is a cycle without PreScore.
	if st := pl.NormalizeScore(context.Background(), framework.NewCycleState(), nil, scores); st.IsSuccess() {
		t.Fatal("NormalizeScore without PreScore succeeded")
	}
}

func TestQueueingHints(t *testing.T) {
	pl := newTestPlugin(t,
		policyCM("hospital-apps", "medical-assistant", exampleData()),
	)
	logger := pl.logger
	pod := assistantPod("ma-0")
	storeNode := robotNode("r", "store", "1,1", "1")
	hospitalNode := robotNode("r", "hospital", "1,1", "1")
	hospitalNoCam := robotNode("r", "hospital", "1,1", "0")
	unreachable := hospitalNode.DeepCopy()
	unreachable.Spec.Taints = []v1.Taint{{Key: policies.UnreachableTaint, Effect: v1.TaintEffectNoSchedule}}
	blocked := st.MakePod().Namespace("hospital-apps").Name("b").Annotation(policies.PolicyAnnotation, "nowhere").Obj()
	nodeTests := []struct {
		name     string
		pod      *v1.Pod
		old, new *v1.Node
		want     fwk.QueueingHint
	}{
		{"node added that passes", pod, nil, hospitalNode, fwk.Queue},
		{"node added that does not pass", pod, nil, storeNode, fwk.QueueSkip},
		{"context changes to hospital", pod, storeNode, hospitalNode, fwk.Queue},
		{"camera appears", pod, hospitalNoCam, hospitalNode, fwk.Queue},
		{"context changes away", pod, hospitalNode, storeNode, fwk.QueueSkip},
		{"passed before and after", pod, hospitalNode, hospitalNode.DeepCopy(), fwk.QueueSkip},
		{"unreachable taint removed", pod, unreachable, hospitalNode, fwk.Queue},
		{"unreachable taint added", pod, hospitalNode, unreachable, fwk.QueueSkip},
		{"blocked pod waits for a policy", blocked, storeNode, hospitalNode, fwk.QueueSkip},
	}
	for _, tc := range nodeTests {
		t.Run(tc.name, func(t *testing.T) {
			var old any
			if tc.old != nil {
				old = tc.old
			}
			got, err := pl.isSchedulableAfterNodeChange(logger, tc.pod, old, tc.new)
			if err != nil || got != tc.want {
				t.Fatalf("hint %v (err %v), want %v", got, err, tc.want)
			}
		})
	}

	relabelled := pod.DeepCopy()
	relabelled.Labels["app"] = "other"
	holder := st.MakePod().Namespace("x").Name("holder").UID("holder").Node("r").Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	plain := st.MakePod().Namespace("x").Name("plain").UID("plain").Node("r").Obj()
	podTests := []struct {
		name     string
		old, new *v1.Pod
		want     fwk.QueueingHint
	}{
		{"the pod's labels change", pod, relabelled, fwk.Queue},
		{"the pod's status changes", pod, pod.DeepCopy(), fwk.QueueSkip},
		{"a camera holder is deleted", holder, nil, fwk.Queue},
		{"a plain pod is deleted", plain, nil, fwk.QueueSkip},
		{"another pod is updated", plain, plain.DeepCopy(), fwk.QueueSkip},
	}
	for _, tc := range podTests {
		t.Run(tc.name, func(t *testing.T) {
			var old, nw any
			if tc.old != nil {
				old = tc.old
			}
			if tc.new != nil {
				nw = tc.new
			}
			got, err := pl.isSchedulableAfterPodChange(logger, pod, old, nw)
			if err != nil || got != tc.want {
				t.Fatalf("hint %v (err %v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	args, err := decodeArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if args.GlobalNamespace != "roam-system" || !*args.RejectUnreachable || args.PolicySyncTimeout.Duration.Seconds() != 60 ||
		*args.PolicyWeight != 8 || *args.DeviceWeight != 1 || *args.FeatureWeight != 1 || *args.LocationWeight != 2 {
		t.Fatalf("defaults %+v", args)
	}
	args, err = decodeArgs(&runtime.Unknown{Raw: []byte(`{"globalNamespace":"fleet","rejectUnreachable":false}`)})
	if err != nil || args.GlobalNamespace != "fleet" || *args.RejectUnreachable {
		t.Fatalf("decoded %+v, %v", args, err)
	}
	for raw, want := range map[string]string{
		`{"globalNamespace":"Not_A_Namespace"}`: "globalNamespace: Invalid value",
		`{"policySyncTimeout":"-1s"}`:           "policySyncTimeout: Invalid value",
		`{"globalNamespce":"x"}`:                `unknown field "globalNamespce"`,
		`{"policyWeight":-1}`:                   "policyWeight: Invalid value: -1: must be in 0..100",
		`{"locationWeight":101}`:                "locationWeight: Invalid value: 101: must be in 0..100",
	} {
		if _, err := decodeArgs(&runtime.Unknown{Raw: []byte(raw)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", raw, err, want)
		}
	}
}

// The metrics are in kube-scheduler's registry, so they are on
// roam-scheduler's /metrics.
func TestMetricsRegistered(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	state, _ := preFilter(t, pl, pod)
	state.SetRecordPluginMetrics(true) // a sampled cycle
	_ = pl.Filter(context.Background(), state, pod, nodeInfo(robotNode("h", "hospital", "1,1", "2")))
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		found[f.GetName()] = true
		if f.GetName() == "roam_policy_evaluation_duration_seconds" && f.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Errorf("no duration observed in a sampled cycle")
		}
	}
	for _, name := range []string{"roam_policy_evaluations_total", "roam_policy_evaluation_duration_seconds"} {
		if !found[name] {
			t.Errorf("%s not in the legacy registry", name)
		}
	}
}

// Filter finds each cycle's own state: the last cycle's, an earlier one's
// and their clones (preemption's dry runs).
func TestFilterReadsItsOwnCycle(t *testing.T) {
	pl := newTestPlugin(t,
		policyCM("hospital-apps", "medical-assistant", exampleData()),
		policyCM("hospital-apps", "store-only", map[string]string{
			"match":   `pod.labels["app"] == "shelf-scanner"`,
			"require": `node.context == "store"`,
		}))
	hospitalState, status := preFilter(t, pl, assistantPod("ma-0"))
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	storeState, status := preFilter(t, pl, st.MakePod().Namespace("hospital-apps").Name("scan").Label("app", "shelf-scanner").Obj())
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	hospital := nodeInfo(robotNode("h", "hospital", "1,1", "2"))
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		state fwk.CycleState
		pass  bool
	}{
		{"the last cycle", storeState, false},
		{"an earlier cycle", hospitalState, true},
		{"a clone of the last cycle", storeState.Clone(), false},
		{"a clone of an earlier cycle", hospitalState.Clone(), true},
	} {
		if got := pl.Filter(ctx, tc.state, nil, hospital).IsSuccess(); got != tc.pass {
			t.Errorf("%s: Filter on a hospital robot passed=%v, want %v", tc.name, got, tc.pass)
		}
	}
	if pl.Filter(ctx, framework.NewCycleState(), nil, hospital).IsSuccess() {
		t.Error("Filter passed with a cycle state PreFilter never saw")
	}
}
