package contextcheck

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/detector/evict"
)

const hospitalOnly = `node.context == "hospital"`

// TestSettleThenEvict: r1 turns from hospital into store; nothing happens
// during settle (2 s); then the pod gets DisruptionTarget/RoamContextChanged
// and is evicted through the Eviction API (after a dry run), counted, and
// its replacement running ends roam_redeploy_seconds.
func TestSettleThenEvict(t *testing.T) {
	h := newHarness(t, Options{}, policyCM("medical-assistant", hospitalOnly, nil))
	h.setNode(robot("r1", "hospital"))
	h.setNode(robot("r2", "hospital"))
	pod := h.addPod("ma-1", "medical-assistant", "r1")

	if d := h.mustSync("r1"); d != 0 {
		t.Fatalf("satisfied node: requeue %v, want 0", d)
	}
	h.relabel("r1", "store")
	if d := h.mustSync("r1"); d != 2*time.Second {
		t.Fatalf("violation: requeue after %v, want the 2s settle", d)
	}
	if e := hasEvent(h.events(), "Normal "+ReasonContextViolated); e == "" {
		t.Errorf("no %s event", ReasonContextViolated)
	}
	h.clk.Step(1500 * time.Millisecond)
	if d := h.mustSync("r1"); d != 500*time.Millisecond {
		t.Fatalf("within settle: requeue after %v, want 500ms", d)
	}
	if ev := h.evictions(); len(ev) != 0 || h.disruption("ma-1") != nil {
		t.Fatalf("evicted within settle: %v", ev)
	}
	h.clk.Step(500 * time.Millisecond)
	h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 1 || ev[0] != "ma-1" {
		t.Fatalf("evictions after settle = %v, want [ma-1]", ev)
	}
	if h.dryRuns != 1 {
		t.Errorf("dry runs = %d, want 1 before the eviction", h.dryRuns)
	}
	cond := h.disruption("ma-1")
	if cond == nil || cond.Reason != ReasonContextChanged || cond.Status != corev1.ConditionTrue ||
		!strings.Contains(cond.Message, "medical-assistant") || !strings.Contains(cond.Message, "r2") {
		t.Fatalf("DisruptionTarget = %+v, want True/%s naming the policy and r2", cond, ReasonContextChanged)
	}
	if e := hasEvent(h.events(), "Warning "+ReasonContextChanged+" Evicted"); e == "" {
		t.Error("no eviction event")
	}
	if got := h.contextEvictions(); got != 1 {
		t.Errorf("roam_evictions_total{reason=context} = %v, want 1", got)
	}
	// Evicted again on the next sync? No: the violation is forgotten.
	h.c.podInf.GetIndexer().Delete(pod)
	h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 1 {
		t.Fatalf("evictions = %v, want exactly one", ev)
	}

	// The ReplicaSet's replacement runs on r2 3 s later.
	h.clk.Step(3 * time.Second)
	repl := h.addPod("ma-2", "medical-assistant", "r2")
	h.c.evictor.ObservePod(repl)
	if n, sum := h.redeploy(); n != 1 || sum != 3 {
		t.Errorf("roam_redeploy_seconds{reason=context}: count %d sum %v, want 1 and 3", n, sum)
	}
}

// TestFlipBackWithinSettle: the robot drives through the store and back to
// the hospital within settle: nothing is evicted, ever.
func TestFlipBackWithinSettle(t *testing.T) {
	h := newHarness(t, Options{}, policyCM("medical-assistant", hospitalOnly, nil))
	h.setNode(robot("r1", "hospital"))
	h.setNode(robot("r2", "hospital"))
	h.addPod("ma-1", "medical-assistant", "r1")

	h.relabel("r1", "store")
	h.mustSync("r1")
	h.clk.Step(1900 * time.Millisecond)
	h.relabel("r1", "hospital")
	if d := h.mustSync("r1"); d != 0 {
		t.Fatalf("restored: requeue %v, want 0", d)
	}
	if e := hasEvent(h.events(), "Normal "+ReasonContextRestored); e == "" {
		t.Error("no restored event")
	}
	h.clk.Step(time.Minute)
	h.mustSync("r1")
	// A new violation starts a new settle window, not the old one.
	h.relabel("r1", "store")
	if d := h.mustSync("r1"); d != 2*time.Second {
		t.Fatalf("second violation: requeue %v, want a fresh 2s", d)
	}
	if ev := h.evictions(); len(ev) != 0 || h.disruption("ma-1") != nil {
		t.Fatalf("evicted after flipping back: %v", ev)
	}
}

// TestNoAlternative: no other robot is usable (one in the wrong context, one
// not Ready, one unreachable, one too full): the pod stays with one Warning
// event naming the reasons; a robot that becomes suitable unblocks it;
// --context-evict-without-alternative evicts regardless.
func TestNoAlternative(t *testing.T) {
	h := newHarness(t, Options{}, policyCM("medical-assistant", hospitalOnly, nil))
	h.setNode(robot("r1", "hospital"))
	h.setNode(robot("r2", "store"))
	h.setNode(robot("r3", "hospital", notReady))
	h.setNode(robot("r4", "hospital", unreachable))
	h.setNode(robot("r5", "hospital", cpu("1")))
	h.addPod("ma-1", "medical-assistant", "r1", requests(corev1.ResourceCPU, "1"))
	h.addPod("other", "other", "r5", requests(corev1.ResourceCPU, "500m"))

	h.relabel("r1", "store")
	h.mustSync("r1")
	h.clk.Step(2 * time.Second)
	if d := h.mustSync("r1"); d != DefaultNoAlternativeRecheck {
		t.Fatalf("no alternative: requeue %v, want %v", d, DefaultNoAlternativeRecheck)
	}
	if ev := h.evictions(); len(ev) != 0 {
		t.Fatalf("evicted without an alternative: %v", ev)
	}
	e := hasEvent(h.events(), "Warning "+ReasonNoAlternative)
	for _, want := range []string{"r2: policy hospital-apps/medical-assistant: require false", "r3: not Ready",
		"r4: tainted roam.dev/unreachable", "r5: insufficient cpu"} {
		if !strings.Contains(e, want) {
			t.Errorf("event %q lacks %q", e, want)
		}
	}
	h.clk.Step(DefaultNoAlternativeRecheck)
	h.mustSync("r1")
	if e := hasEvent(h.events(), "Warning "+ReasonNoAlternative); e != "" {
		t.Errorf("warned twice: %q", e)
	}

	// r5 gets more cpu: a node change requeues the blocked node.
	h.c.onNode(robot("r5", "hospital", cpu("1")), robot("r5", "hospital", cpu("4")))
	h.setNode(robot("r5", "hospital", cpu("4")))
	if h.c.queue.Len() == 0 {
		t.Fatal("a node change did not requeue the blocked node")
	}
	h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 1 {
		t.Fatalf("evictions once r5 fits = %v, want [ma-1]", ev)
	}

	// The override evicts with nowhere to go.
	h2 := newHarness(t, Options{EvictWithoutAlternative: true}, policyCM("medical-assistant", hospitalOnly, nil))
	h2.setNode(robot("r1", "store"))
	h2.addPod("ma-1", "medical-assistant", "r1")
	h2.mustSync("r1")
	h2.clk.Step(2 * time.Second)
	h2.mustSync("r1")
	if ev := h2.evictions(); len(ev) != 1 {
		t.Fatalf("override: evictions = %v, want [ma-1]", ev)
	}
}

// TestPDBRefusalRetried: the Eviction API refuses twice (429); each refusal
// is an Event, leaves the pod untouched, and the worker retries the node
// with exponential backoff on the virtual clock until it succeeds.
func TestPDBRefusalRetried(t *testing.T) {
	h := newHarness(t, Options{RetryBase: time.Second}, policyCM("medical-assistant", hospitalOnly, nil))
	h.setNode(robot("r1", "hospital"))
	h.setNode(robot("r2", "hospital"))
	h.addPod("ma-1", "medical-assistant", "r1")
	h.refuse = 2
	h.relabel("r1", "store")
	h.mustSync("r1")
	h.clk.Step(2 * time.Second)

	ctx := context.Background()
	for attempt, backoff := range []time.Duration{time.Second, 2 * time.Second} {
		h.c.queue.Add("r1")
		h.c.processNext(ctx)
		if ev := h.evictions(); len(ev) != 0 || h.disruption("ma-1") != nil {
			t.Fatalf("attempt %d: refused eviction touched the pod: %v", attempt, ev)
		}
		if e := hasEvent(h.events(), "Warning "+ReasonEvictionRefused); !strings.Contains(e, "disruption budget") {
			t.Fatalf("attempt %d: event %q, want a refusal naming the budget", attempt, e)
		}
		if got := h.c.queue.NumRequeues("r1"); got != attempt+1 {
			t.Fatalf("attempt %d: requeues %d", attempt, got)
		}
		// Not retried before its backoff, retried right after.
		h.clk.Step(backoff - time.Millisecond)
		if h.c.queue.Len() != 0 {
			t.Fatalf("attempt %d: retried before the %v backoff", attempt, backoff)
		}
		h.clk.Step(time.Millisecond)
		h.waitFor("retry", func() bool { return h.c.queue.Len() == 1 })
		node, _ := h.c.queue.Get()
		h.c.queue.Done(node)
	}
	_, err := h.sync("r1")
	if err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if ev := h.evictions(); len(ev) != 1 {
		t.Fatalf("evictions = %v, want [ma-1]", ev)
	}
	h.refuse = 1
	h.addPod("ma-9", "medical-assistant", "r1")
	h.mustSync("r1")
	h.clk.Step(2 * time.Second)
	if _, err := h.sync("r1"); !errors.Is(err, evict.ErrRefused) {
		t.Fatalf("Sync error = %v, want evict.ErrRefused", err)
	}
}

// TestPolicyChangeRechecks: tightening a policy re-checks the nodes of the
// pods it governs and evicts after settle; with NoPolicyRecheck nothing is
// queued.
func TestPolicyChangeRechecks(t *testing.T) {
	for _, off := range []bool{false, true} {
		h := newHarness(t, Options{NoPolicyRecheck: off},
			policyCM("medical-assistant", `node.context in ["hospital", "store"]`, nil))
		h.setNode(robot("r1", "store"))
		h.setNode(robot("r2", "hospital"))
		h.addPod("ma-1", "medical-assistant", "r1")
		h.mustSync("r1")
		if h.c.queue.Len() != 0 {
			t.Fatal("queue not empty before the change")
		}
		cm := policyCM("medical-assistant", hospitalOnly, nil)
		cm.ResourceVersion = "2" // the fake API server does not bump it
		if _, err := h.cs.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.waitFor("the new policy version", func() bool {
			return len(NewChecker(h.store).Check(mustNode(h, "r1"), h.c.podsOn("r1"), nil)) == 1
		})
		if off {
			if h.c.queue.Len() != 0 {
				t.Fatal("NoPolicyRecheck: policy change queued nodes")
			}
			continue
		}
		h.waitFor("nodes requeued", func() bool { return h.c.queue.Len() == 2 })
		h.mustSync("r1")
		h.clk.Step(2 * time.Second)
		h.mustSync("r1")
		if ev := h.evictions(); len(ev) != 1 {
			t.Fatalf("evictions after tightening the policy = %v", ev)
		}
	}
}

func mustNode(h *harness, name string) *corev1.Node {
	n, err := h.c.nodes.Get(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// TestNeverEvicted: DaemonSet, mirror and terminating pods and pods whose
// policy says onContextChange: keep are never evicted; a pod's own device
// requests do not count against its node's free devices.
func TestNeverEvicted(t *testing.T) {
	h := newHarness(t, Options{},
		policyCM("agent", hospitalOnly, nil),
		policyCM("kept", hospitalOnly, map[string]string{"onContextChange": "keep"}),
		policyCM("camera", `node.devices["roam.dev/camera"] >= 1`, nil))
	h.setNode(robot("r1", "hospital", cameras(1)))
	h.setNode(robot("r2", "hospital", cameras(1)))
	h.addPod("ds", "agent", "r1", ownedBy("DaemonSet"))
	h.addPod("mirror", "agent", "r1", annotated(evict.MirrorPodAnnotation, "x"))
	h.addPod("kept", "kept", "r1")
	h.addPod("cam", "camera", "r1", requests("roam.dev/camera", "1"))
	gone := h.addPod("gone", "agent", "r1")
	gone = gone.DeepCopy()
	now := metav1.NewTime(t0)
	gone.DeletionTimestamp = &now
	h.c.podInf.GetIndexer().Update(gone)

	if d := h.mustSync("r1"); d != 0 {
		t.Fatalf("the camera pod's own request made its policy fail: requeue %v", d)
	}
	h.relabel("r1", "store")
	h.mustSync("r1")
	h.clk.Step(time.Hour)
	h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 0 {
		t.Fatalf("evicted %v", ev)
	}
	if len(h.c.pending) != 0 {
		t.Fatalf("pending violations %v, want none", h.c.pending)
	}
}

// TestRateLimited: with burst 1 at 1 pod/s, two pods due at once are
// evicted one second apart.
func TestRateLimited(t *testing.T) {
	h := newHarnessLimits(t, evict.Limits{NodesPerSecond: 1, NodeBurst: 1, PodsPerSecond: 1, PodBurst: 1}, Options{},
		policyCM("medical-assistant", hospitalOnly, nil))
	h.setNode(robot("r1", "hospital"))
	h.setNode(robot("r2", "hospital"))
	h.addPod("ma-1", "medical-assistant", "r1")
	h.addPod("ma-2", "medical-assistant", "r1")
	h.relabel("r1", "store")
	h.mustSync("r1")
	h.clk.Step(2 * time.Second)
	d := h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 1 || d <= 0 || d > time.Second {
		t.Fatalf("first sync: evictions %v, requeue %v; want one eviction and a wait ≤ 1s", ev, d)
	}
	h.clk.Step(d)
	h.mustSync("r1")
	if ev := h.evictions(); len(ev) != 2 {
		t.Fatalf("after %v: evictions %v, want both", d, ev)
	}
}

// TestRunWiring runs the whole controller (informers, handlers, workers,
// delaying queue) on the virtual clock: a relabelled node is re-checked
// through the Node informer, and the eviction waits for the clock to pass
// settle.
func TestRunWiring(t *testing.T) {
	h := newHarness(t, Options{}, policyCM("medical-assistant", hospitalOnly, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() { cancel(); <-done })
	for _, n := range []*corev1.Node{robot("r1", "hospital"), robot("r2", "hospital")} {
		if _, err := h.cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ma-1", Namespace: ns, UID: "ma-1", Labels: map[string]string{"app": "medical-assistant"}},
		Spec:   corev1.PodSpec{NodeName: "r1", Containers: []corev1.Container{{Name: "app", Image: "x"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	ownedBy("ReplicaSet")(p)
	if _, err := h.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() { done <- h.c.Run(ctx) }()
	h.waitFor("ready", h.c.Ready)
	h.waitFor("initial checks", func() bool { return h.c.queue.Len() == 0 })

	r1, _ := h.cs.CoreV1().Nodes().Get(ctx, "r1", metav1.GetOptions{})
	r1.Labels["roam.dev/context"] = "store"
	if _, err := h.cs.CoreV1().Nodes().Update(ctx, r1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the violation", func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return len(h.c.pending) == 1
	})
	h.clk.Step(1999 * time.Millisecond)
	if ev := h.evictions(); len(ev) != 0 {
		t.Fatalf("evicted before settle: %v", ev)
	}
	h.clk.Step(time.Millisecond)
	h.waitFor("the eviction after settle", func() bool { return len(h.evictions()) == 1 })
}

// TestNodeHandlerFilters: a heartbeat (Ready lastHeartbeatTime) queues
// nothing; labels, annotations and allocatable queue the node.
func TestNodeHandlerFilters(t *testing.T) {
	h := newHarness(t, Options{}, policyCM("medical-assistant", hospitalOnly, nil))
	old := robot("r1", "hospital")
	beat := old.DeepCopy()
	beat.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(t0.Add(time.Second))
	beat.ResourceVersion = "2"
	h.c.onNode(old, beat)
	if n := h.c.queue.Len(); n != 0 {
		t.Fatalf("heartbeat queued %d nodes", n)
	}
	for name, change := range map[string]func(*corev1.Node){
		"label":       func(n *corev1.Node) { n.Labels["roam.dev/context"] = "store" },
		"annotation":  func(n *corev1.Node) { n.Annotations = map[string]string{"roam.dev/location": "1,2"} },
		"allocatable": cameras(2),
	} {
		n := old.DeepCopy()
		change(n)
		h.c.onNode(old, n)
		if got := h.c.queue.Len(); got != 1 {
			t.Fatalf("%s change: queue length %d, want 1", name, got)
		}
		item, _ := h.c.queue.Get()
		h.c.queue.Done(item)
		h.c.queue.Forget(item)
	}
}
