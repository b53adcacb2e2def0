package policy

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
)

// exampleData is the example policy of docs/policies.md.
func exampleData() map[string]string {
	return map[string]string{
		"match":   `pod.labels["app"] == "medical-assistant"`,
		"require": `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`,
		"score":   `10 * node.devices["roam.dev/camera"] - distance(node.location, pod.target)`,
		"weight":  "2",
	}
}

func policyCM(ns, name string, data map[string]string) *v1.ConfigMap {
	return &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1",
			Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data: data,
	}
}

// newTestPlugin builds a RoamPolicy plugin around a Store fed by a fake
// clientset holding cms.
func newTestPlugin(t testing.TB, cms ...*v1.ConfigMap) *Plugin {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	cs := fake.NewClientset()
	for _, cm := range cms {
		if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	store, err := policies.NewStore(factory, policies.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), store.HasSynced) {
		t.Fatal("policy store did not sync")
	}
	args := RoamPolicyArgs{}
	args.SetDefaults()
	schedmetrics.Register() // the Parallelizer counts its goroutines
	return newPlugin(nil, store, args, klog.FromContext(ctx))
}

// robotNode is a node as a robot reports it.
func robotNode(name, context, location string, cameras string) *v1.Node {
	w := st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{
		v1.ResourceCPU: "4", v1.ResourceMemory: "8Gi", v1.ResourcePods: "110", "roam.dev/camera": cameras,
	})
	if context != "" {
		w = w.Label(policies.ContextLabel, context)
	}
	if location != "" {
		w = w.Annotation(policies.LocationAnnotation, location)
	}
	return w.Obj()
}

func nodeInfo(node *v1.Node, pods ...*v1.Pod) *framework.NodeInfo {
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(node)
	return ni
}

func assistantPod(name string) *v1.Pod {
	return st.MakePod().Namespace("hospital-apps").Name(name).UID(name).SchedulerName("roam-scheduler").
		Label("app", "medical-assistant").Annotation(policies.TargetAnnotation, "0,0").Obj()
}
