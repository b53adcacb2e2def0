package contextcheck

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

const ns = "hospital-apps"

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness is a Controller over a fake clientset and a fake clock, with the
// real policies Store; nodes and pods go straight into the controller's
// informer caches and tests call Sync themselves.
type harness struct {
	t       *testing.T
	cs      *fake.Clientset
	clk     *clocktesting.FakeClock
	store   *policies.Store
	c       *Controller
	rec     *record.FakeRecorder
	metrics *detector.Metrics

	mu       sync.Mutex
	refuse   int      // evictions still to refuse with 429
	evicted  []string // pods really evicted
	dryRuns  int
	policyCM map[string]*corev1.ConfigMap
}

func newHarness(t *testing.T, opts Options, cms ...*corev1.ConfigMap) *harness {
	t.Helper()
	return newHarnessLimits(t, evict.DefaultLimits(), opts, cms...)
}

// newHarnessLimits is newHarness with the evictor's rate limits.
func newHarnessLimits(t *testing.T, limits evict.Limits, opts Options, cms ...*corev1.ConfigMap) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{t: t, cs: fake.NewClientset(), clk: clocktesting.NewFakeClock(t0), rec: record.NewFakeRecorder(1000),
		policyCM: map[string]*corev1.ConfigMap{}}
	for _, cm := range cms {
		h.policyCM[cm.Name] = cm
		if _, err := h.cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.cs.PrependReactor("create", "pods", h.evictReactor)
	var err error
	h.metrics, err = detector.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	pf := informers.NewSharedInformerFactory(h.cs, 0)
	h.store, err = policies.NewStore(pf, policies.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pf.Start(ctx.Done())
	t.Cleanup(func() { cancel(); pf.Shutdown() })
	h.waitFor("policies", func() bool { return h.store.HasSynced() && len(h.store.List()) == len(cms) })

	opts.Clock, opts.Policies, opts.Recorder = h.clk, h.store, h.rec
	opts.Evictor, err = evict.New(h.cs, evict.Options{Limits: limits, Clock: h.clk, Recorder: h.rec,
		Metrics: evict.Metrics{Evictions: h.metrics.Evictions, Redeploy: h.metrics.Redeploy}})
	if err != nil {
		t.Fatal(err)
	}
	h.c, err = NewController(h.cs, informers.NewSharedInformerFactory(h.cs, 0), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.c.queue.ShutDown)
	return h
}

// waitFor polls a condition that another goroutine (an informer) makes
// true; the virtual clock never moves while it waits.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (h *harness) evictReactor(a k8stesting.Action) (bool, runtime.Object, error) {
	if a.GetSubresource() != "eviction" {
		return false, nil, nil
	}
	ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse > 0 { // dry runs and real calls alike, as a PDB does
		h.refuse--
		return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	}
	if ev.DeleteOptions != nil && len(ev.DeleteOptions.DryRun) > 0 {
		h.dryRuns++
		return true, nil, nil
	}
	h.evicted = append(h.evicted, ev.Name)
	return true, nil, nil
}

func (h *harness) evictions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.evicted...)
}

func policyCM(name, require string, extra map[string]string) *corev1.ConfigMap {
	data := map[string]string{"match": `pod.labels["app"] == "` + name + `"`, "require": require, "settle": "2s"}
	for k, v := range extra {
		data[k] = v
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels: map[string]string{policies.PolicyLabel: "true"}}, Data: data}
}

type nodeOpt func(*corev1.Node)

func cameras(n int64) nodeOpt {
	return func(node *corev1.Node) {
		node.Status.Allocatable["roam.dev/camera"] = *resource.NewQuantity(n, resource.DecimalSI)
	}
}
func notReady(node *corev1.Node) { node.Status.Conditions[0].Status = corev1.ConditionFalse }
func unreachable(node *corev1.Node) {
	node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: policies.UnreachableTaint, Effect: corev1.TaintEffectNoSchedule})
}
func cpu(q string) nodeOpt {
	return func(node *corev1.Node) { node.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse(q) }
}

func robot(name, ctx string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{policies.ContextLabel: ctx}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"),
				corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// setNode puts (or replaces) a node in the controller's cache.
func (h *harness) setNode(n *corev1.Node) {
	h.t.Helper()
	if err := h.c.nodeInf.GetIndexer().Update(n); err != nil {
		h.t.Fatal(err)
	}
}

// relabel changes a cached node's context label.
func (h *harness) relabel(name, ctx string) {
	h.t.Helper()
	n, err := h.c.nodes.Get(name)
	if err != nil {
		h.t.Fatal(err)
	}
	n = n.DeepCopy()
	n.Labels[policies.ContextLabel] = ctx
	h.setNode(n)
}

type podOpt func(*corev1.Pod)

func ownedBy(kind string) podOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: "owner-" + p.Labels["app"],
			UID: types.UID("owner-" + p.Labels["app"]), Controller: &yes}}
	}
}
func requests(res corev1.ResourceName, q string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests[res] = resource.MustParse(q)
	}
}
func annotated(k, v string) podOpt {
	return func(p *corev1.Pod) { p.Annotations[k] = v }
}

// addPod creates a Running pod bound to node in the fake API and the cache.
func (h *harness) addPod(name, app, node string, opts ...podOpt) *corev1.Pod {
	h.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(name), Labels: map[string]string{"app": app},
			Annotations: map[string]string{}, CreationTimestamp: metav1.NewTime(h.clk.Now())},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	ownedBy("ReplicaSet")(p)
	for _, o := range opts {
		o(p)
	}
	if _, err := h.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.c.podInf.GetIndexer().Add(p); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) sync(node string) (time.Duration, error) {
	h.t.Helper()
	return h.c.Sync(context.Background(), node)
}

func (h *harness) mustSync(node string) time.Duration {
	h.t.Helper()
	d, err := h.sync(node)
	if err != nil {
		h.t.Fatalf("Sync(%s): %v", node, err)
	}
	return d
}

// events drains the recorded events.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(events []string, prefix string) string {
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			return e
		}
	}
	return ""
}

func (h *harness) disruption(name string) *corev1.PodCondition {
	h.t.Helper()
	p, err := h.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.DisruptionTarget {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func (h *harness) contextEvictions() float64 {
	ch := make(chan prometheus.Metric, 4)
	h.metrics.Evictions.WithLabelValues(detector.ReasonContext).Collect(ch)
	close(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		h.t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func (h *harness) redeploy() (uint64, float64) {
	ch := make(chan prometheus.Metric, 4)
	h.metrics.Redeploy.Collect(ch)
	close(ch)
	for mt := range ch {
		var d dto.Metric
		if err := mt.Write(&d); err != nil {
			h.t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() == detector.ReasonContext {
				return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}
