package policy

import (
	"context"
	"strings"
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

// TestThroughFramework builds RoamPolicy with New inside a scheduling
// framework (fake clientset) and runs the extension points as the
// scheduler does.
func TestThroughFramework(t *testing.T) {
	schedmetrics.Register() // the framework records plugin metrics
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := fake.NewClientset(policyCM("hospital-apps", "medical-assistant", exampleData()))
	factory := informers.NewSharedInformerFactory(cs, 0)
	snapshot := internalcache.NewSnapshot(nil, []*v1.Node{
		robotNode("hospital-near", "hospital", "3,4", "1"),
		robotNode("hospital-far", "hospital", "300,400", "1"),
		robotNode("store", "store", "1,1", "2"),
	})
	fw, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
		tf.RegisterPluginAsExtensionsWithWeight(Name, 10, New, "PreFilter", "Filter", "PreScore", "Score"),
	}, "roam-scheduler", frameworkruntime.WithClientSet(cs), frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithSnapshotSharedLister(snapshot))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fw.Close() }()
	nodes, err := snapshot.NodeInfos().List()
	if err != nil {
		t.Fatal(err)
	}

	pod := assistantPod("ma-0")
	state := framework.NewCycleState()
	if _, status, _ := fw.RunPreFilterPlugins(ctx, state, pod); !status.IsSuccess() {
		t.Fatalf("PreFilter: %v", status)
	}
	var feasible []fwk.NodeInfo
	for _, ni := range nodes {
		status := fw.RunFilterPlugins(ctx, state, pod, ni)
		if ni.Node().Name == "store" {
			if status.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(status.Message(), "policy hospital-apps/medical-assistant: require false") {
				t.Fatalf("store robot: %v", status)
			}
			continue
		}
		if !status.IsSuccess() {
			t.Fatalf("%s: %v", ni.Node().Name, status)
		}
		feasible = append(feasible, ni)
	}
	if status := fw.RunPreScorePlugins(ctx, state, pod, feasible); !status.IsSuccess() {
		t.Fatalf("PreScore: %v", status)
	}
	scores, status := fw.RunScorePlugins(ctx, state, pod, feasible)
	if !status.IsSuccess() {
		t.Fatalf("Score: %v", status)
	}
	got := map[string]int64{}
	for _, s := range scores {
		got[s.Name] = s.TotalScore
	}
	if got["hospital-near"] != 10*framework.MaxNodeScore || got["hospital-far"] != 0 {
		t.Fatalf("scores %v: want hospital-near %d (weight 10 x 100), hospital-far 0", got, 10*framework.MaxNodeScore)
	}

	// A pod no policy governs is skipped: every node passes RoamPolicy.
	plain := st.MakePod().Namespace("hospital-apps").Name("plain").Obj()
	state = framework.NewCycleState()
	if _, status, _ := fw.RunPreFilterPlugins(ctx, state, plain); !status.IsSuccess() {
		t.Fatalf("PreFilter: %v", status)
	}
	if !state.GetSkipFilterPlugins().Has(Name) {
		t.Fatalf("RoamPolicy not skipped at Filter for an ungoverned pod")
	}
	for _, ni := range nodes {
		if status := fw.RunFilterPlugins(ctx, state, plain, ni); !status.IsSuccess() {
			t.Fatalf("%s: %v", ni.Node().Name, status)
		}
	}
}
