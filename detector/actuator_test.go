package detector

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// staticPolicies governs pods by their "policy" label.
type staticPolicies map[string]*policies.Policy

func (s staticPolicies) ForPod(_ *policies.Evaluator, pod *corev1.Pod) policies.Resolution {
	if p := s[pod.Labels["policy"]]; p != nil {
		return policies.Resolution{Policies: []*policies.Policy{p}}
	}
	return policies.Resolution{}
}

func testPod(name, node, policy string, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: types.UID("uid-" + name),
			Labels: map[string]string{"policy": policy}},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func owned(kind string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		t := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: "owner", UID: "owner-uid", Controller: &t}}
	}
}

func TestActuatorNodeMarks(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "robot-1"},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoSchedule}}}}
	cs := fake.NewClientset(node)
	// The first node update conflicts: the actuator must retry.
	conflicts := 1
	cs.PrependReactor("update", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "robot-1", nil)
		}
		return false, nil, nil
	})
	rec := record.NewFakeRecorder(10)
	clk := clocktesting.NewFakeClock(t0)
	a := NewActuator(cs, nil, cache.NewIndexer(cache.MetaNamespaceKeyFunc, evict.PodsByNodeIndexers()), nil, rec, testEvictor(t, cs, clk, nil, nil), clk)

	get := func() *corev1.Node {
		n, err := cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Alive from the start: RoamReachable True, no taint, no Event.
	if err := a.SyncNode(ctx, "robot-1", NodeWant{Phi: 0.2, Threshold: 8}); err != nil {
		t.Fatal(err)
	}
	if n := get(); hasTaint(n) || condition(n) == nil || condition(n).Status != corev1.ConditionTrue || len(n.Spec.Taints) != 1 {
		t.Fatalf("alive node: taints %+v, condition %+v; want RoamReachable True only", n.Spec.Taints, condition(n))
	}
	if len(rec.Events) != 0 {
		t.Errorf("events for a node alive from the start: %d", len(rec.Events))
	}

	want := NodeWant{Suspected: true, Phi: 9.25, Threshold: 8, LastHeartbeat: t0.Add(-3 * time.Second)}
	for range 2 { // idempotent
		if err := a.SyncNode(ctx, "robot-1", want); err != nil {
			t.Fatal(err)
		}
	}
	n := get()
	if !hasTaint(n) || len(n.Spec.Taints) != 2 {
		t.Fatalf("taints = %+v, want other + %s", n.Spec.Taints, policies.UnreachableTaint)
	}
	c := condition(n)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != ReasonNodeUnreachable || !strings.Contains(c.Message, "phi 9.2") {
		t.Fatalf("condition = %+v", c)
	}
	if conflicts != 0 {
		t.Error("conflict reactor not exercised")
	}
	if len(rec.Events) != 1 {
		t.Errorf("events = %d, want 1 (second sync is a no-op)", len(rec.Events))
	}
	for len(rec.Events) > 0 {
		<-rec.Events
	}

	// Braked: Unknown.
	want.Braked = true
	if err := a.SyncNode(ctx, "robot-1", want); err != nil {
		t.Fatal(err)
	}
	if c := condition(get()); c.Status != corev1.ConditionUnknown || c.Reason != ReasonEvictionBrake {
		t.Fatalf("braked condition = %+v", c)
	}

	// Recovered: taint gone, other taint kept, condition True.
	if err := a.SyncNode(ctx, "robot-1", NodeWant{Phi: 0.1, Threshold: 8}); err != nil {
		t.Fatal(err)
	}
	n = get()
	if hasTaint(n) || len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "other" {
		t.Fatalf("taints after recovery = %+v", n.Spec.Taints)
	}
	if c := condition(n); c.Status != corev1.ConditionTrue || c.Reason != ReasonNodeReachable {
		t.Fatalf("recovered condition = %+v", c)
	}
	// A deleted node is not an error.
	if err := a.SyncNode(ctx, "gone", want); err != nil {
		t.Errorf("SyncNode of a missing node: %v", err)
	}
}

func TestActuatorEvictPods(t *testing.T) {
	ctx := context.Background()
	pol := staticPolicies{
		"move":  {Namespace: "apps", Name: "move", OnNodeFailure: policies.Reschedule},
		"force": {Namespace: "apps", Name: "force", OnNodeFailure: policies.Reschedule, ForceDelete: true},
		"keep":  {Namespace: "apps", Name: "keep", OnNodeFailure: policies.Keep, ForceDelete: true},
	}
	now := metav1.NewTime(t0)
	pods := []*corev1.Pod{
		testPod("web", "robot-1", "move", owned("ReplicaSet")),
		testPod("db-0", "robot-1", "force", owned("StatefulSet")),
		testPod("db-1", "robot-1", "move", owned("StatefulSet"), func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
		testPod("kept", "robot-1", "keep"),
		testPod("free", "robot-1", ""),
		testPod("ds", "robot-1", "move", owned("DaemonSet")),
		testPod("mirror", "robot-1", "move", func(p *corev1.Pod) { p.Annotations = map[string]string{evict.MirrorPodAnnotation: "x"} }),
		testPod("done", "robot-1", "move", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		testPod("elsewhere", "robot-2", "move"),
	}
	var objs []runtime.Object
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, evict.PodsByNodeIndexers())
	for _, p := range pods {
		objs = append(objs, p)
		if err := idx.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	cs := fake.NewClientset(objs...)
	var deletes []k8stesting.DeleteActionImpl
	var mu sync.Mutex
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		deletes = append(deletes, a.(k8stesting.DeleteActionImpl))
		return false, nil, nil
	})
	m, _ := NewMetrics(nil)
	rec := record.NewFakeRecorder(20)
	clk := clocktesting.NewFakeClock(t0)
	a := NewActuator(cs, nil, idx, pol, rec, testEvictor(t, cs, clk, m, rec), clk)

	n, wait, err := a.EvictPods(ctx, "robot-1", 9.5)
	if err != nil || wait != 0 {
		t.Fatal(err, wait)
	}
	if n != 2 || len(deletes) != 2 {
		t.Fatalf("deleted %d pods (%d delete calls), want 2 (web, db-0)", n, len(deletes))
	}
	for _, d := range deletes {
		g := d.DeleteOptions.GracePeriodSeconds
		switch d.Name {
		case "web":
			if g != nil {
				t.Errorf("web deleted with grace %d, want its own", *g)
			}
		case "db-0":
			if g == nil || *g != 0 {
				t.Errorf("db-0 (forceDelete: true) not force-deleted: %v", g)
			}
		default:
			t.Errorf("deleted %s", d.Name)
		}
		if d.DeleteOptions.Preconditions == nil || string(*d.DeleteOptions.Preconditions.UID) != "uid-"+d.Name {
			t.Errorf("delete of %s without UID precondition", d.Name)
		}
	}
	if v := testutil.ToFloat64(m.Evictions.WithLabelValues(ReasonUnreachable)); v != 2 {
		t.Errorf("roam_evictions_total{reason=unreachable} = %v, want 2", v)
	}
	if len(rec.Events) != 2 {
		t.Errorf("pod events = %d, want 2", len(rec.Events))
	}
}

func testEvictor(t *testing.T, cs kubernetes.Interface, clk clock.PassiveClock, m *Metrics, rec record.EventRecorder) *evict.Evictor {
	t.Helper()
	em := evict.Metrics{}
	if m != nil {
		em = evict.Metrics{Evictions: m.Evictions, Redeploy: m.Redeploy}
	}
	e, err := evict.New(cs, evict.Options{Limits: evict.DefaultLimits(), Clock: clk, Recorder: rec, Metrics: em})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
