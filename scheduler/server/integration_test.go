package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/server"
)

const (
	caseLabel     = "roam.test/case"
	schedulerName = "roam-scheduler"
)

var podGroupGVR = schema.GroupVersionResource{Group: "scheduling.x-k8s.io", Version: "v1alpha1", Resource: "podgroups"}

// repoPath resolves a path relative to the repository root.
func repoPath(t testing.TB, rel string) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", rel)
}

// env is one control plane and one in-process roam-scheduler shared by the
// subtests; each subtest isolates its nodes with a case label.
type env struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

// TestRoamScheduler runs roam-scheduler in-process from
// manifests/scheduler/config.yaml against a real kube-apiserver.
func TestRoamScheduler(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cs: cs, dyn: dyn}
	if err := controlplane.InstallCRDs(ctx, cp.Config, repoPath(t, "manifests/crds/scheduling.x-k8s.io_podgroups.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"roam-system", "hospital-apps", "delivery", "store-apps", "d-apps", "team", "f-apps"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	sched, err := server.Start(ctx, server.Config{
		ConfigFile: repoPath(t, "manifests/scheduler/config.yaml"),
		Overrides:  server.Overrides{Kubeconfig: cp.Kubeconfig, LeaderElect: &off},
	})
	if err != nil {
		t.Fatalf("starting roam-scheduler: %v", err)
	}
	defer func() {
		if err := sched.Stop(); err != nil {
			t.Errorf("roam-scheduler: %v", err)
		}
	}()

	t.Run("a/requires context and camera", e.testRequire)
	t.Run("b/nearest eligible robot", e.testNearest)
	t.Run("c/pending then fits after node change", e.testQueueingHints)
	t.Run("c2/policy change requeues", e.testPolicyChange)
	t.Run("d/selector taints resources still hold", e.testDefaultsHold)
	t.Run("e/podgroup all or nothing", e.testPodGroup)
	t.Run("f/invalid policy stays pending", e.testBlocked)
}

// robot is a Node as a robot's agents report it.
type robot struct {
	name, kase, context, location string
	devices                       map[string]int64
	labels                        map[string]string
	taints                        []v1.Taint
	cpu                           string
}

func (e *env) addRobot(ctx context.Context, t *testing.T, r robot) *v1.Node {
	t.Helper()
	labels := map[string]string{caseLabel: r.kase, "kubernetes.io/hostname": r.name}
	if r.context != "" {
		labels[policies.ContextLabel] = r.context
	}
	for k, v := range r.labels {
		labels[k] = v
	}
	ann := map[string]string{}
	if r.location != "" {
		ann[policies.LocationAnnotation] = r.location
	}
	cpu := r.cpu
	if cpu == "" {
		cpu = "4"
	}
	alloc := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse(cpu),
		v1.ResourceMemory: resource.MustParse("8Gi"),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	for name, n := range r.devices {
		alloc[v1.ResourceName(name)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Labels: labels, Annotations: ann},
		Spec:       v1.NodeSpec{Taints: r.taints},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc, Conditions: []v1.NodeCondition{
			{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now(), Reason: "KubeletReady"},
		}},
	}
	created, err := e.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", r.name, err)
	}
	// The NodeRestriction/TaintNodesByCondition admission adds
	// node.kubernetes.io/not-ready; a ready robot's node lifecycle
	// controller would remove it.
	created.Spec.Taints = r.taints
	if created, err = e.cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("untainting node %s: %v", r.name, err)
	}
	return created
}

func (e *env) addPolicy(ctx context.Context, t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	cm := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data:       data,
	}
	if _, err := e.cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating policy %s/%s: %v", ns, name, err)
	}
}

type podSpec struct {
	ns, name, kase string
	labels         map[string]string
	annotations    map[string]string
	nodeSelector   map[string]string
	tolerations    []v1.Toleration
	requests       v1.ResourceList
}

func (e *env) addPod(ctx context.Context, t *testing.T, p podSpec) *v1.Pod {
	t.Helper()
	sel := map[string]string{}
	if p.kase != "" {
		sel[caseLabel] = p.kase
	}
	for k, v := range p.nodeSelector {
		sel[k] = v
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels, Annotations: p.annotations},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			NodeSelector:  sel,
			Tolerations:   p.tolerations,
			Containers: []v1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: p.requests, Limits: extendedOnly(p.requests)}}},
		},
	}
	created, err := e.cs.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", p.ns, p.name, err)
	}
	return created
}

// extendedOnly returns the extended resources of rl (their limits must
// equal their requests).
func extendedOnly(rl v1.ResourceList) v1.ResourceList {
	var out v1.ResourceList
	for name, q := range rl {
		if policies.IsExtendedResourceName(name) {
			if out == nil {
				out = v1.ResourceList{}
			}
			out[name] = q
		}
	}
	return out
}

// waitBound waits for the pod to be bound and returns its node.
func (e *env) waitBound(ctx context.Context, t *testing.T, ns, name string, timeout time.Duration) string {
	t.Helper()
	var node string
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last, node = p, p.Spec.NodeName
		return node != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not bound within %s: %s", ns, name, timeout, scheduledMessage(last))
	}
	return node
}

// waitUnschedulable waits for PodScheduled=False/Unschedulable with a
// message containing every want, and returns the message.
func (e *env) waitUnschedulable(ctx context.Context, t *testing.T, ns, name string, want ...string) string {
	t.Helper()
	var msg string
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		if p.Spec.NodeName != "" {
			return false, fmt.Errorf("pod was bound to %s", p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
				msg = c.Message
				for _, w := range want {
					if !strings.Contains(msg, w) {
						return false, nil
					}
				}
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: want Unschedulable with %q: %v; last: %s", ns, name, want, err, scheduledMessage(last))
	}
	return msg
}

func scheduledMessage(p *v1.Pod) string {
	if p == nil {
		return "(no pod)"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodScheduled {
			return fmt.Sprintf("node %q, PodScheduled=%s %s: %s", p.Spec.NodeName, c.Status, c.Reason, c.Message)
		}
	}
	return fmt.Sprintf("node %q, no PodScheduled condition", p.Spec.NodeName)
}

func camera(n int64) map[string]int64 { return map[string]int64{"roam.dev/camera": n} }

// (a) The example policy of docs/policies.md: context hospital and a free camera.
func (e *env) testRequire(t *testing.T) {
	ctx := context.Background()
	e.addPolicy(ctx, t, "hospital-apps", "medical-assistant", map[string]string{
		"match":   `pod.labels["app"] == "medical-assistant"`,
		"require": `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`,
		"score":   `10 * node.devices["roam.dev/camera"] - distance(node.location, pod.target)`,
		"weight":  "2",
	})
	e.addRobot(ctx, t, robot{name: "a-hospital-nocam", kase: "a", context: "hospital", location: "1,1"})
	e.addRobot(ctx, t, robot{name: "a-store-cam", kase: "a", context: "store", location: "1,1", devices: camera(2)})
	e.addRobot(ctx, t, robot{name: "a-hospital-cam", kase: "a", context: "hospital", location: "50,50", devices: camera(1)})
	e.addRobot(ctx, t, robot{name: "a-nocontext-cam", kase: "a", location: "1,1", devices: camera(3)})
	e.addPod(ctx, t, podSpec{ns: "hospital-apps", name: "ma-0", kase: "a",
		labels: map[string]string{"app": "medical-assistant"}, annotations: map[string]string{policies.TargetAnnotation: "0,0"}})
	if got := e.waitBound(ctx, t, "hospital-apps", "ma-0", 30*time.Second); got != "a-hospital-cam" {
		t.Fatalf("ma-0 bound to %s, want a-hospital-cam (the only hospital robot with a camera)", got)
	}
}

// (b) Among eligible robots the one nearest the pod's target wins; a
// nearer but ineligible robot is not chosen.
func (e *env) testNearest(t *testing.T) {
	ctx := context.Background()
	e.addPolicy(ctx, t, "delivery", "courier", map[string]string{
		"match":   `pod.labels["app"] == "courier"`,
		"require": `node.context == "warehouse"`,
	})
	e.addRobot(ctx, t, robot{name: "b-far", kase: "b", context: "warehouse", location: "100,100"})
	e.addRobot(ctx, t, robot{name: "b-near", kase: "b", context: "warehouse", location: "12,9"})
	e.addRobot(ctx, t, robot{name: "b-mid", kase: "b", context: "warehouse", location: "30,-20"})
	e.addRobot(ctx, t, robot{name: "b-nearest-ineligible", kase: "b", context: "store", location: "10,10"})
	e.addRobot(ctx, t, robot{name: "b-unknown-location", kase: "b", context: "warehouse"})
	e.addPod(ctx, t, podSpec{ns: "delivery", name: "courier-0", kase: "b",
		labels: map[string]string{"app": "courier"}, annotations: map[string]string{policies.TargetAnnotation: "10,10"}})
	if got := e.waitBound(ctx, t, "delivery", "courier-0", 30*time.Second); got != "b-near" {
		t.Fatalf("courier-0 bound to %s, want b-near (nearest eligible robot)", got)
	}
	// Same target, other end of the site.
	e.addPod(ctx, t, podSpec{ns: "delivery", name: "courier-1", kase: "b",
		labels: map[string]string{"app": "courier"}, annotations: map[string]string{policies.TargetAnnotation: "95,101"}})
	if got := e.waitBound(ctx, t, "delivery", "courier-1", 30*time.Second); got != "b-far" {
		t.Fatalf("courier-1 bound to %s, want b-far (nearest eligible robot)", got)
	}
}

// (c) No eligible robot: Pending with a message naming RoamPolicy (the
// robots in other contexts were left out at PreFilter: a store robot
// elsewhere passes the policy's node-object part); then a robot's context
// label changes so it fits, and the QueueingHint requeues the pod (well
// before the 5-minute unschedulable flush).
func (e *env) testQueueingHints(t *testing.T) {
	ctx := context.Background()
	e.addPolicy(ctx, t, "store-apps", "shelf-scanner", map[string]string{
		"match":   `pod.labels["app"] == "shelf-scanner"`,
		"require": `node.context == "store"`,
	})
	e.addRobot(ctx, t, robot{name: "c-1", kase: "c", context: "hospital"})
	e.addRobot(ctx, t, robot{name: "c-2", kase: "c", context: "hospital"})
	e.addRobot(ctx, t, robot{name: "c-elsewhere", kase: "c-elsewhere", context: "store"})
	e.addPod(ctx, t, podSpec{ns: "store-apps", name: "scanner-0", kase: "c", labels: map[string]string{"app": "shelf-scanner"}})
	msg := e.waitUnschedulable(ctx, t, "store-apps", "scanner-0", "node(s) didn't satisfy plugin(s) [RoamPolicy]", "didn't match Pod's node affinity/selector")
	t.Logf("Pending: %s", msg)

	// An unrelated annotation change must not matter; a label change to
	// the right context must.
	n, err := e.cs.CoreV1().Nodes().Get(ctx, "c-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[policies.ContextLabel] = "store"
	if _, err := e.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.waitBound(ctx, t, "store-apps", "scanner-0", 45*time.Second); got != "c-2" {
		t.Fatalf("scanner-0 bound to %s, want c-2", got)
	}
}

// (c2) A pending pod whose policy changes so a node fits is requeued by
// the policy Store's change hook (handle.Activate). No robot passes the
// policy's node-object part, so none is left out at PreFilter and the
// message names the policy.
func (e *env) testPolicyChange(t *testing.T) {
	ctx := context.Background()
	e.addPolicy(ctx, t, "store-apps", "inventory", map[string]string{
		"match":   `pod.labels["app"] == "inventory"`,
		"require": `node.context == "laboratory"`,
	})
	e.addRobot(ctx, t, robot{name: "c2-1", kase: "c2", context: "store"})
	e.addPod(ctx, t, podSpec{ns: "store-apps", name: "inventory-0", kase: "c2", labels: map[string]string{"app": "inventory"}})
	e.waitUnschedulable(ctx, t, "store-apps", "inventory-0", "policy store-apps/inventory: require false")
	cm, err := e.cs.CoreV1().ConfigMaps("store-apps").Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["require"] = `node.context == "store"`
	if _, err := e.cs.CoreV1().ConfigMaps("store-apps").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.waitBound(ctx, t, "store-apps", "inventory-0", 45*time.Second); got != "c2-1" {
		t.Fatalf("inventory-0 bound to %s, want c2-1", got)
	}
}

// (d) nodeSelector, taints/tolerations and resource fit still hold for
// roam-scheduler pods, governed or not; roam.dev/unreachable is rejected
// for governed pods even when they tolerate it.
func (e *env) testDefaultsHold(t *testing.T) {
	ctx := context.Background()
	e.addPolicy(ctx, t, "d-apps", "ward", map[string]string{
		"match":   `pod.labels["app"] == "ward"`,
		"require": `node.context == "hospital"`,
	})
	dedicated := v1.Taint{Key: "dedicated", Value: "x", Effect: v1.TaintEffectNoSchedule}
	unreachable := v1.Taint{Key: policies.UnreachableTaint, Effect: v1.TaintEffectNoSchedule}
	e.addRobot(ctx, t, robot{name: "d-tainted", kase: "d", context: "hospital", taints: []v1.Taint{dedicated}})
	e.addRobot(ctx, t, robot{name: "d-small", kase: "d", context: "hospital", cpu: "1"})
	e.addRobot(ctx, t, robot{name: "d-large", kase: "d", context: "hospital", labels: map[string]string{"size": "large"}})
	e.addRobot(ctx, t, robot{name: "d-unreachable", kase: "d", context: "hospital", taints: []v1.Taint{unreachable}})
	ward := map[string]string{"app": "ward"}
	cpu2 := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}

	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "selector", kase: "d", labels: ward, nodeSelector: map[string]string{"size": "large"}})
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "cpu", kase: "d", labels: ward, requests: cpu2})
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "tolerates", kase: "d", labels: ward,
		nodeSelector: map[string]string{"kubernetes.io/hostname": "d-tainted"},
		tolerations:  []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "x", Effect: v1.TaintEffectNoSchedule}}})
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "untolerated", kase: "d", labels: ward,
		nodeSelector: map[string]string{"kubernetes.io/hostname": "d-tainted"}})
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "tolerates-all", kase: "d", labels: ward,
		nodeSelector: map[string]string{"kubernetes.io/hostname": "d-unreachable"},
		tolerations:  []v1.Toleration{{Operator: v1.TolerationOpExists}}})
	// Not governed by any policy: placed by the default plugins alone.
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "plain-too-big", kase: "d", requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8")}})
	e.addPod(ctx, t, podSpec{ns: "d-apps", name: "plain", kase: "d", nodeSelector: map[string]string{"size": "large"}})

	for name, want := range map[string]string{"selector": "d-large", "cpu": "d-large", "tolerates": "d-tainted", "plain": "d-large"} {
		if got := e.waitBound(ctx, t, "d-apps", name, 30*time.Second); got != want {
			t.Errorf("%s bound to %s, want %s", name, got, want)
		}
	}
	e.waitUnschedulable(ctx, t, "d-apps", "untolerated", "untolerated taint")
	e.waitUnschedulable(ctx, t, "d-apps", "tolerates-all", "node(s) had taint roam.dev/unreachable")
	e.waitUnschedulable(ctx, t, "d-apps", "plain-too-big", "Insufficient cpu")
}

// (e) A PodGroup of 3 robots' pods binds all or none: with room for two,
// none binds; with room for three, all bind.
func (e *env) testPodGroup(t *testing.T) {
	ctx := context.Background()
	slot := map[string]int64{"roam.test/e-slot": 1}
	req := v1.ResourceList{"roam.test/e-slot": resource.MustParse("1")}
	addGroup := func(name, kase string) {
		pg := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
			"metadata": map[string]any{"name": name, "namespace": "team"},
			"spec":     map[string]any{"minMember": int64(3)},
		}}
		if _, err := e.dyn.Resource(podGroupGVR).Namespace("team").Create(ctx, pg, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating PodGroup: %v", err)
		}
		for i := 0; i < 3; i++ {
			e.addPod(ctx, t, podSpec{ns: "team", name: fmt.Sprintf("%s-%d", name, i), kase: kase, requests: req,
				labels: map[string]string{"scheduling.x-k8s.io/pod-group": name}})
		}
	}
	waitAll := func(name string) {
		t.Helper()
		nodes := map[string]bool{}
		for i := 0; i < 3; i++ {
			nodes[e.waitBound(ctx, t, "team", fmt.Sprintf("%s-%d", name, i), 90*time.Second)] = true
		}
		if len(nodes) != 3 {
			t.Fatalf("group %s bound to %v, want 3 distinct robots", name, nodes)
		}
	}

	// Room for three: all bind.
	for i := 1; i <= 3; i++ {
		e.addRobot(ctx, t, robot{name: fmt.Sprintf("e-all-%d", i), kase: "e-all", context: "warehouse", devices: slot})
	}
	addGroup("convoy", "e-all")
	waitAll("convoy")

	// Room for two: none binds (pods waiting at Permit are not bound).
	e.addRobot(ctx, t, robot{name: "e-1", kase: "e", context: "warehouse", devices: slot})
	e.addRobot(ctx, t, robot{name: "e-2", kase: "e", context: "warehouse", devices: slot})
	addGroup("patrol", "e")
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if n := e.boundCount(ctx, t, "team", "patrol"); n != 0 {
			t.Fatalf("%d pods of the 3-pod group bound with room for only 2", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A third robot joins. Coscheduling requeues the pods it rejected on
	// PodGroup events (scheduler-plugins' PodGroup controller updates the
	// group's status); the test plays that controller.
	e.addRobot(ctx, t, robot{name: "e-3", kase: "e", context: "warehouse", devices: slot})
	pg, err := e.dyn.Resource(podGroupGVR).Namespace("team").Get(ctx, "patrol", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pg.SetAnnotations(map[string]string{"roam.test/nudge": "e-3 joined"})
	if _, err := e.dyn.Resource(podGroupGVR).Namespace("team").Update(ctx, pg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAll("patrol")
}

// boundCount counts the bound pods of ns (of PodGroup group when non-empty).
func (e *env) boundCount(ctx context.Context, t *testing.T, ns, group string) int {
	opts := metav1.ListOptions{}
	if group != "" {
		opts.LabelSelector = "scheduling.x-k8s.io/pod-group=" + group
	}
	pods, err := e.cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			n++
		}
	}
	return n
}

// (f) A pod naming a missing policy, or one that was never valid, stays
// Pending and says why.
func (e *env) testBlocked(t *testing.T) {
	ctx := context.Background()
	e.addRobot(ctx, t, robot{name: "f-1", kase: "f", context: "hospital"})
	e.addPolicy(ctx, t, "f-apps", "broken", map[string]string{"require": `node.context ==`})
	e.addPod(ctx, t, podSpec{ns: "f-apps", name: "names-missing", kase: "f",
		annotations: map[string]string{policies.PolicyAnnotation: "nowhere"}})
	e.addPod(ctx, t, podSpec{ns: "f-apps", name: "names-broken", kase: "f",
		annotations: map[string]string{policies.PolicyAnnotation: "broken"}})
	msg := e.waitUnschedulable(ctx, t, "f-apps", "names-missing", `pod names policy "nowhere"`, "no policy f-apps/nowhere exists")
	t.Logf("Pending: %s", msg)
	msg = e.waitUnschedulable(ctx, t, "f-apps", "names-broken", `pod names policy "broken"`, "has never been valid")
	t.Logf("Pending: %s", msg)
	time.Sleep(2 * time.Second)
	if _, err := e.cs.CoreV1().Pods("f-apps").Get(ctx, "names-missing", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("pod disappeared")
	}
	if n := e.boundCount(ctx, t, "f-apps", ""); n != 0 {
		t.Fatalf("%d blocked pods bound", n)
	}
	// Creating the named policy unblocks the pod (Store change hook).
	e.addPolicy(ctx, t, "f-apps", "nowhere", map[string]string{"require": `node.context == "hospital"`})
	if got := e.waitBound(ctx, t, "f-apps", "names-missing", 45*time.Second); got != "f-1" {
		t.Fatalf("names-missing bound to %s, want f-1", got)
	}
}
