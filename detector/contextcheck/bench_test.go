package contextcheck

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/policies"
)

// BenchmarkNodeUpdate is the cost of one node update: Sync re-checks the
// 100 pods bound to the node, governed by 10 policies (each pod matched
// by one of them through the real policies Store, every match of the 10
// evaluated), 10 of the pods holding a camera; the node still satisfies
// every policy. Goal ≤ 100 µs/op for the cached case.
func BenchmarkNodeUpdate(b *testing.B) {
	const nPods, nPolicies = 100, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset()
	for i := range nPolicies {
		cm := policyCM(fmt.Sprintf("app-%d", i), `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`, nil)
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	pf := informers.NewSharedInformerFactory(cs, 0)
	store, err := policies.NewStore(pf, policies.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pf.Start(ctx.Done())
	defer func() { cancel(); pf.Shutdown() }()
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return store.HasSynced() && len(store.List()) == nPolicies, nil
	}); err != nil {
		b.Fatal(err)
	}
	c, err := NewController(cs, informers.NewSharedInformerFactory(cs, 0), Options{Policies: store, Clock: clocktesting.NewFakeClock(t0)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.queue.ShutDown()
	node := robot("r1", "hospital", cameras(int64(nPods)))
	node.Annotations = map[string]string{policies.LocationAnnotation: "12.5,40", policies.BatteryAnnotation: "80"}
	if err := c.nodeInf.GetIndexer().Add(node); err != nil {
		b.Fatal(err)
	}
	for i := range nPods {
		app := fmt.Sprintf("app-%d", i%nPolicies)
		yes := true
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: ns, UID: types.UID(fmt.Sprint(i)),
				Labels: map[string]string{"app": app}, Annotations: map[string]string{policies.TargetAnnotation: "1,2"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: app, UID: types.UID(app), Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: "r1", Containers: []corev1.Container{{Name: "app",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if i%10 == 0 {
			p.Spec.Containers[0].Resources.Requests["roam.dev/camera"] = resource.MustParse("1")
		}
		if err := c.podInf.GetIndexer().Add(p); err != nil {
			b.Fatal(err)
		}
	}
	if d, err := c.Sync(ctx, "r1"); err != nil || d != 0 || len(c.pending) != 0 {
		b.Fatalf("setup: Sync = %v, %v, pending %d", d, err, len(c.pending))
	}
	// cached: the usual node update (pods and policies unchanged since
	// the last check). resolving: the first check after a policy change,
	// which resolves every pod's policies again (10 match evaluations each).
	for _, mode := range []string{"resolving", "cached"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if mode == "resolving" {
					c.res.gen.Add(1)
				}
				if _, err := c.Sync(ctx, "r1"); err != nil {
					b.Fatal(err)
				}
			}
			perOp := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(perOp.Nanoseconds())/1e3, "us/update")
			b.Logf("context re-check (%s): %d pods under %d policies per node update: %.1f us/op", mode, nPods, nPolicies, float64(perOp.Nanoseconds())/1e3)
		})
	}
}
