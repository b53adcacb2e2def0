package evict

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testPod(name, node string, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
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

func testMetrics() Metrics {
	return Metrics{
		Evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roam_evictions_total"}, []string{"reason"}),
		Redeploy: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "roam_redeploy_seconds",
			Buckets: []float64{1, 2, 5, 10}}, []string{"reason"}),
	}
}

// redeployed is the count and sum of roam_redeploy_seconds{reason}.
func redeployed(t *testing.T, m Metrics, reason string) (uint64, float64) {
	t.Helper()
	var d dto.Metric
	if err := m.Redeploy.WithLabelValues(reason).(prometheus.Histogram).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
}

func newEvictor(t *testing.T, cs *fake.Clientset, clk *clocktesting.FakeClock, m Metrics, workers int) *Evictor {
	t.Helper()
	e, err := New(cs, Options{Limits: DefaultLimits(), Clock: clk, Recorder: record.NewFakeRecorder(100), Metrics: m, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDeleteLost(t *testing.T) {
	ctx := context.Background()
	web, db := testPod("web", "robot-1", owned("ReplicaSet")), testPod("db-0", "robot-1", owned("StatefulSet"))
	cs := fake.NewClientset(web, db)
	var mu sync.Mutex
	deletes := map[string]metav1.DeleteOptions{}
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		d := a.(k8stesting.DeleteActionImpl)
		deletes[d.Name] = d.DeleteOptions
		return false, nil, nil
	})
	m := testMetrics()
	e := newEvictor(t, cs, clocktesting.NewFakeClock(t0), m, 0)
	n, err := e.DeleteLost(ctx, "robot-1", []Removal{{Pod: web}, {Pod: db, Force: true}}, "node robot-1 unreachable")
	if err != nil || n != 2 {
		t.Fatalf("DeleteLost = %d, %v; want 2 deleted", n, err)
	}
	if g := deletes["web"].GracePeriodSeconds; g != nil {
		t.Errorf("web deleted with grace %d, want its own", *g)
	}
	if g := deletes["db-0"].GracePeriodSeconds; g == nil || *g != 0 {
		t.Errorf("db-0 not force-deleted: %v", g)
	}
	for name, o := range deletes {
		if o.Preconditions == nil || string(*o.Preconditions.UID) != "uid-"+name {
			t.Errorf("delete of %s without UID precondition", name)
		}
	}
	if v := testutil.ToFloat64(m.Evictions.WithLabelValues(MetricUnreachable)); v != 2 {
		t.Errorf("roam_evictions_total{reason=unreachable} = %v, want 2", v)
	}

	// The DisruptionTarget condition is set before the delete: make the
	// delete fail and look at the pod.
	cs2 := fake.NewClientset(testPod("web", "robot-1", owned("ReplicaSet")))
	cs2.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("injected failure"))
	})
	e2 := newEvictor(t, cs2, clocktesting.NewFakeClock(t0), Metrics{}, 0)
	if _, err := e2.DeleteLost(ctx, "robot-1", []Removal{{Pod: web}}, "node robot-1 unreachable"); err == nil || !strings.Contains(err.Error(), "web") {
		t.Errorf("failed delete not reported: %v", err)
	}
	p, err := cs2.CoreV1().Pods("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == ReasonNodeUnreachable &&
			c.Message == "node robot-1 unreachable" {
			found = true
		}
	}
	if !found {
		t.Errorf("no DisruptionTarget condition: %+v", p.Status.Conditions)
	}
}

// gatedClient is a clientset whose pod deletes first pass gate (the fake
// clientset runs its reactors under one lock, so blocking in a reactor
// would serialise the calls).
type gatedClient struct {
	*fake.Clientset
	gate func()
}

func (c gatedClient) CoreV1() typedcorev1.CoreV1Interface {
	return gatedCore{c.Clientset.CoreV1(), c.gate}
}

type gatedCore struct {
	typedcorev1.CoreV1Interface
	gate func()
}

func (c gatedCore) Pods(ns string) typedcorev1.PodInterface {
	return gatedPods{c.CoreV1Interface.Pods(ns), c.gate}
}

type gatedPods struct {
	typedcorev1.PodInterface
	gate func()
}

func (p gatedPods) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	p.gate()
	return p.PodInterface.Delete(ctx, name, opts)
}

// A robot's pods are removed concurrently: its last pod does not wait for
// every other pod's API calls. Each delete here waits (up to a generous
// bound) until four deletes are in flight at once; the test asserts on the
// most seen at once, so an evictor with one worker fails it.
func TestDeleteLostConcurrently(t *testing.T) {
	const pods, want = 8, 4
	var objs []runtime.Object
	var removals []Removal
	for i := range pods {
		p := testPod(fmt.Sprintf("p-%d", i), "robot-1")
		objs = append(objs, p)
		removals = append(removals, Removal{Pod: p})
	}
	var mu sync.Mutex
	inFlight, most := 0, 0
	enough := make(chan struct{})
	cs := gatedClient{fake.NewClientset(objs...), func() {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == want {
			close(enough)
		}
		mu.Unlock()
		select {
		case <-enough:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}}
	e, err := New(cs, Options{Limits: DefaultLimits(), Clock: clocktesting.NewFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.DeleteLost(context.Background(), "robot-1", removals, "lost")
	if err != nil || n != pods {
		t.Fatalf("DeleteLost = %d, %v", n, err)
	}
	if most < want {
		t.Errorf("at most %d deletes in flight at once, want ≥ %d (DefaultWorkers %d)", most, want, DefaultWorkers)
	}
}

// The node rate limit admits a lost robot once per loss: a robot admitted
// keeps its token however often it is synced, the burst covers a few
// robots, the next waits for the rate, and a released robot needs a new
// token.
func TestAdmitNode(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	e, err := New(fake.NewClientset(), Options{Limits: Limits{NodesPerSecond: 0.5, NodeBurst: 2, PodsPerSecond: 1, PodBurst: 1}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "a", "b", "a", "b"} {
		if d := e.AdmitNode(n); d != 0 {
			t.Fatalf("AdmitNode(%s) waits %v within the burst", n, d)
		}
	}
	d := e.AdmitNode("c")
	if d <= 0 || d > 2*time.Second {
		t.Fatalf("third robot waits %v, want (0, 2 s] at 0.5 nodes/s", d)
	}
	clk.Step(d)
	if d := e.AdmitNode("c"); d != 0 {
		t.Fatalf("c still waits %v after its token came", d)
	}
	e.ReleaseNode("a")
	if d := e.AdmitNode("a"); d <= 0 {
		t.Error("a released robot's new loss took no new token")
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []Limits{{}, {NodesPerSecond: 1, NodeBurst: 1, PodsPerSecond: 0, PodBurst: 1},
		{NodesPerSecond: 1, NodeBurst: 0, PodsPerSecond: 1, PodBurst: 1}, {NodesPerSecond: -1, NodeBurst: 1, PodsPerSecond: 1, PodBurst: 1}} {
		if _, err := New(fake.NewClientset(), Options{Limits: l}); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
}

// The redeploy measurement runs from the eviction to the first replacement
// of the same owner that runs, and times exactly that.
func TestRedeployTracker(t *testing.T) {
	m := testMetrics()
	clk := clocktesting.NewFakeClock(t0)
	e := newEvictor(t, fake.NewClientset(), clk, m, 0)
	old := testPod("web-a", "robot-1", owned("ReplicaSet"))
	e.redeploy.Evicted(old, MetricUnreachable, clk.Now())
	clk.Step(3 * time.Second)
	e.ObservePod(old) // the evicted pod itself does not count
	repl := testPod("web-b", "robot-2", owned("ReplicaSet"))
	repl.CreationTimestamp = metav1.NewTime(t0.Add(time.Second))
	repl.Status.Phase = corev1.PodPending
	e.ObservePod(repl)
	clk.Step(1500 * time.Millisecond)
	repl.Status.Phase = corev1.PodRunning
	e.ObservePod(repl)
	clk.Step(time.Second)
	e.ObservePod(repl) // counted once
	n, sum := redeployed(t, m, MetricUnreachable)
	if n != 1 || sum != 4.5 {
		t.Fatalf("roam_redeploy_seconds{unreachable}: count %d sum %v, want 1 observation of 4.5 s", n, sum)
	}
	// A pod created well before the eviction is not a replacement.
	e.redeploy.Evicted(old, MetricUnreachable, clk.Now())
	stale := testPod("web-c", "robot-3", owned("ReplicaSet"))
	stale.CreationTimestamp = metav1.NewTime(t0)
	e.ObservePod(stale)
	if n, _ := redeployed(t, m, MetricUnreachable); n != 1 {
		t.Errorf("a pod older than the eviction ended the measurement")
	}
}

// The measurement starts before the delete (a replacement that runs before
// the delete call returns is still timed) and a failed delete cancels it.
func TestRedeployStartsBeforeDelete(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		m := testMetrics()
		clk := clocktesting.NewFakeClock(t0)
		pod := testPod("web", "robot-1", owned("ReplicaSet"))
		cs := fake.NewClientset(pod)
		e := newEvictor(t, cs, clk, m, 0)
		repl := testPod("web-b", "robot-2", owned("ReplicaSet"))
		repl.CreationTimestamp = metav1.NewTime(t0)
		repl.Status.Phase = corev1.PodRunning
		cs.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			if fail {
				return true, nil, apierrors.NewInternalError(errors.New("injected failure"))
			}
			clk.Step(time.Second)
			e.ObservePod(repl) // the replacement runs before the delete call returns
			return false, nil, nil
		})
		_, err := e.DeleteLost(ctx, "robot-1", []Removal{{Pod: pod}}, "lost")
		if fail != (err != nil) {
			t.Fatalf("fail=%v: DeleteLost error %v", fail, err)
		}
		if fail {
			e.ObservePod(repl) // after the failure: nothing pending
		}
		n, sum := redeployed(t, m, MetricUnreachable)
		if fail && n != 0 {
			t.Errorf("failed delete: %d observations", n)
		}
		if !fail && (n != 1 || sum != 1) {
			t.Errorf("count %d sum %v, want one observation of 1 s", n, sum)
		}
	}
}
