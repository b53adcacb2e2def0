package detector

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

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
	a := NewActuator(cs, cache.NewIndexer(cache.MetaNamespaceKeyFunc, PodsByNodeIndexers()), nil, rec, nil, clk)

	get := func() *corev1.Node {
		n, err := cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Never suspected: no write at all.
	if err := a.SyncNode(ctx, "robot-1", NodeWant{}); err != nil {
		t.Fatal(err)
	}
	if n := get(); hasTaint(n) || condition(n) != nil {
		t.Fatalf("untouched node changed: %+v", n)
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
		testPod("mirror", "robot-1", "move", func(p *corev1.Pod) { p.Annotations = map[string]string{MirrorPodAnnotation: "x"} }),
		testPod("done", "robot-1", "move", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		testPod("elsewhere", "robot-2", "move"),
	}
	var objs []runtime.Object
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, PodsByNodeIndexers())
	for _, p := range pods {
		objs = append(objs, p)
		if err := idx.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	cs := fake.NewClientset(objs...)
	var deletes []k8stesting.DeleteActionImpl
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		deletes = append(deletes, a.(k8stesting.DeleteActionImpl))
		return false, nil, nil
	})
	m, _ := NewMetrics(nil)
	rec := record.NewFakeRecorder(20)
	a := NewActuator(cs, idx, pol, rec, m, clocktesting.NewFakeClock(t0))

	n, err := a.EvictPods(ctx, "robot-1", 9.5)
	if err != nil {
		t.Fatal(err)
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
	// The DisruptionTarget condition was set before deletion: check on a
	// pod whose delete we make fail.
	if got := m.Evictions.WithLabelValues(ReasonUnreachable); got == nil {
		t.Fatal("no eviction counter")
	}
	if v := testutilValue(m); v != 2 {
		t.Errorf("roam_evictions_total{reason=unreachable} = %v, want 2", v)
	}
	if len(rec.Events) != 2 {
		t.Errorf("pod events = %d, want 2", len(rec.Events))
	}

	// DisruptionTarget: patch a fresh pod and stop before delete.
	cs2 := fake.NewClientset(testPod("web", "robot-1", "move", owned("ReplicaSet")))
	cs2.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errFake)
	})
	idx2 := cache.NewIndexer(cache.MetaNamespaceKeyFunc, PodsByNodeIndexers())
	_ = idx2.Add(testPod("web", "robot-1", "move", owned("ReplicaSet")))
	a2 := NewActuator(cs2, idx2, pol, nil, nil, clocktesting.NewFakeClock(t0))
	if _, err := a2.EvictPods(ctx, "robot-1", 9.5); err == nil || !strings.Contains(err.Error(), "web") {
		t.Errorf("failed delete not reported: %v", err)
	}
	p, err := cs2.CoreV1().Pods("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == ReasonNodeUnreachable {
			found = true
		}
	}
	if !found {
		t.Errorf("no DisruptionTarget condition: %+v", p.Status.Conditions)
	}
}

var errFake = &fakeErr{}

type fakeErr struct{}

func (*fakeErr) Error() string { return "injected failure" }

func testutilValue(m *Metrics) float64 {
	return testutilToFloat(m.Evictions.WithLabelValues(ReasonUnreachable))
}

func TestRedeployTracker(t *testing.T) {
	m, _ := NewMetrics(nil)
	clk := clocktesting.NewFakeClock(t0)
	a := NewActuator(fake.NewClientset(), cache.NewIndexer(cache.MetaNamespaceKeyFunc, PodsByNodeIndexers()), nil, nil, m, clk)
	old := testPod("web-a", "robot-1", "move", owned("ReplicaSet"))
	a.redeploy.Evicted(old, ReasonUnreachable, clk.Now())
	clk.Step(3 * time.Second)
	a.ObservePod(old) // the evicted pod itself does not count
	repl := testPod("web-b", "robot-2", "move", owned("ReplicaSet"))
	repl.UID = "uid-web-b"
	repl.CreationTimestamp = metav1.NewTime(t0.Add(time.Second))
	repl.Status.Phase = corev1.PodPending
	a.ObservePod(repl)
	repl.Status.Phase = corev1.PodRunning
	a.ObservePod(repl)
	a.ObservePod(repl) // counted once
	if n := histCount(m); n != 1 {
		t.Fatalf("roam_redeploy_seconds count = %d, want 1", n)
	}
}

// TestRedeployStartsBeforeDelete: the measurement starts before the delete
// (a replacement that runs before the delete call returns is still timed)
// and a failed delete cancels it, so a later replacement is not timed
// against an eviction that never happened.
func TestRedeployStartsBeforeDelete(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		m, _ := NewMetrics(nil)
		clk := clocktesting.NewFakeClock(t0)
		pod := testPod("web", "robot-1", "move", owned("ReplicaSet"))
		cs := fake.NewClientset(pod)
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, PodsByNodeIndexers())
		_ = idx.Add(pod)
		pol := staticPolicies{"move": {Namespace: "apps", Name: "move", OnNodeFailure: policies.Reschedule}}
		a := NewActuator(cs, idx, pol, nil, m, clk)
		repl := testPod("web-b", "robot-2", "move", owned("ReplicaSet"))
		repl.UID = "uid-web-b"
		repl.CreationTimestamp = metav1.NewTime(t0)
		repl.Status.Phase = corev1.PodRunning
		cs.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			if fail {
				return true, nil, apierrors.NewInternalError(errFake)
			}
			a.ObservePod(repl) // the replacement runs before the delete call returns
			return false, nil, nil
		})
		_, err := a.EvictPods(ctx, "robot-1", 9.5)
		if fail != (err != nil) {
			t.Fatalf("fail=%v: EvictPods error %v", fail, err)
		}
		want := uint64(1)
		if fail {
			want = 0
			a.ObservePod(repl) // after the failure: nothing pending
		}
		if n := histCount(m); n != want {
			t.Errorf("fail=%v: roam_redeploy_seconds count = %d, want %d", fail, n, want)
		}
	}
}
