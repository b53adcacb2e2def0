package main

import (
	"bytes"
	"context"
	"flag"
	"github.com/roam-dev/roam/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// fleetCluster creates a small fleet on a real API server: three robots in
// each reachability state roam-detector writes, a node that is no robot,
// policies (one invalid), a governed pod running, an ungoverned one, and a
// governed pod that fits nowhere.
func fleetCluster(t *testing.T) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"hospital-apps", policies.DefaultGlobalNamespace} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
	}
	policy := func(ns, name string, data map[string]string) {
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{policies.PolicyLabel: "true"}},
			Data:       data,
		}, metav1.CreateOptions{})
		must(err)
	}
	policy("hospital-apps", "cams", map[string]string{
		"match":   `pod.labels["app"] == "ma"`,
		"require": `node.context == "hospital" && node.devices["roam.dev/camera"] >= 2`,
		"score":   `node.devices["roam.dev/camera"]`,
		"weight":  "2",
	})
	policy(policies.DefaultGlobalNamespace, "battery", map[string]string{
		"match": `pod.labels["app"] == "ma"`,
		"score": `node.battery / 10`,
	})
	policy(policies.DefaultGlobalNamespace, "broken", map[string]string{
		"match":   `pod.labels["app"] == "ma"`,
		"require": `node.batery > 20`,
	})

	now := metav1.NewTime(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	node := func(name string, labels, annotations map[string]string, devices map[string]string, taints []corev1.Taint, conds ...corev1.NodeCondition) {
		t.Helper()
		n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
			Spec:       corev1.NodeSpec{Taints: taints},
		}, metav1.CreateOptions{})
		must(err)
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")}
		for k, v := range devices {
			n.Status.Allocatable[corev1.ResourceName(k)] = resource.MustParse(v)
		}
		n.Status.Capacity = n.Status.Allocatable
		n.Status.Conditions = append([]corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now}}, conds...)
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		must(err)
	}
	reach := func(status corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: "RoamReachable", Status: status, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	hospital := func(zone string) map[string]string {
		return map[string]string{policies.ContextLabel: "hospital", policies.ZoneLabel: zone}
	}
	node("robot-a", hospital("ward-1"), map[string]string{policies.LocationAnnotation: "3,4", policies.BatteryAnnotation: "90"},
		map[string]string{"roam.dev/camera": "2", "roam.dev/lidar": "1"}, nil,
		reach(corev1.ConditionTrue, "RoamNodeReachable", "heartbeats arriving (phi 0.4 < threshold 8.0)"))
	node("robot-b", hospital("ward-2"), map[string]string{policies.LocationAnnotation: "30,40", policies.BatteryAnnotation: "40"},
		map[string]string{"roam.dev/camera": "1"},
		[]corev1.Taint{{Key: policies.UnreachableTaint, Effect: corev1.TaintEffectNoSchedule}},
		reach(corev1.ConditionFalse, "RoamNodeUnreachable", "phi 9.3 ≥ threshold 8.0 (last heartbeat 4.1s ago)"))
	node("robot-c", map[string]string{policies.ContextLabel: "store", policies.ZoneLabel: "shop"}, nil,
		map[string]string{"roam.dev/camera": "4"}, nil,
		reach(corev1.ConditionUnknown, "RoamEvictionBrake", "phi 12.0 ≥ threshold 8.0 (last heartbeat 9.0s ago), but too many robots are suspected at once: evictions held (partition brake)"))
	node("control-plane-1", nil, nil, nil, nil)

	pod := func(name, node, app string, cams string, phase corev1.PodPhase, conds ...corev1.PodCondition) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "hospital-apps", Labels: map[string]string{}},
			Spec: corev1.PodSpec{NodeName: node, SchedulerName: "roam-scheduler",
				Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		}
		if app != "" {
			p.Labels["app"] = app
		}
		if cams != "" {
			q := corev1.ResourceList{"roam.dev/camera": resource.MustParse(cams)}
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: q, Limits: q}
		}
		p, err := cs.CoreV1().Pods("hospital-apps").Create(ctx, p, metav1.CreateOptions{})
		must(err)
		p.Status.Phase = phase
		p.Status.Conditions = conds
		_, err = cs.CoreV1().Pods("hospital-apps").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(err)
	}
	pod("ma-1", "robot-a", "ma", "1", corev1.PodRunning)
	pod("logger", "robot-a", "", "", corev1.PodRunning)
	pod("ma-2", "", "ma", "2", corev1.PodPending, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: "Unschedulable", Message: "0/4 nodes are available: 1 node(s) had untolerated taint {roam.dev/unreachable: }, 3 node(s) didn't satisfy roam policy.",
		LastTransitionTime: now})
	return cp, cs
}

// TestFleetAndWhy runs roamctl fleet and why against a real API server and
// compares their output with golden files.
func TestFleetAndWhy(t *testing.T) {
	cp, cs := fleetCluster(t)
	kc := "--kubeconfig=" + cp.Kubeconfig
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"fleet.txt", []string{"fleet", kc}},
		{"fleet-wide.txt", []string{"fleet", kc, "-o", "wide"}},
		{"fleet-all.txt", []string{"fleet", kc, "--all"}},
		{"fleet.json", []string{"fleet", kc, "-o", "json"}},
		{"fleet.yaml", []string{"fleet", kc, "-o=yaml"}},
		{"why-running.txt", []string{"why", "ma-1", "-n", "hospital-apps", kc}},
		{"why-pending.txt", []string{"why", kc, "hospital-apps/ma-2"}},
		{"why-ungoverned.txt", []string{"why", "logger", "--namespace=hospital-apps", kc}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, out, errOut := roamctl(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(errOut, "invalid policy ignored: roam-system/broken") && strings.HasPrefix(tc.golden, "why") {
				t.Errorf("no warning about the invalid policy: %q", errOut)
			}
			golden(t, tc.golden, out)
		})
	}

	// The pending pod's policies fail on every robot: robot-a has one free
	// camera (ma-1 uses the other), robot-b is suspected, robot-c is in
	// another context. The running pod's own camera does not count against
	// its robot.
	_, out, _ := roamctl(t, "why", "ma-2", "-n", "hospital-apps", kc)
	for _, want := range []string{"no robot satisfies", "robot-a: require of hospital-apps/cams is false", "robot-b: taint roam.dev/unreachable",
		"robot-c: require of hospital-apps/cams is false"} {
		if !strings.Contains(out, want) {
			t.Errorf("why ma-2 lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = roamctl(t, "why", "ma-1", "-n", "hospital-apps", kc)
	if !strings.Contains(out, "hospital-apps/cams: require true, score 2 × weight 2 = 4") {
		t.Errorf("why ma-1 does not score robot-a with both its cameras:\n%s", out)
	}

	// KUBECONFIG is honoured like kubectl's; a missing context is named.
	t.Setenv("KUBECONFIG", cp.Kubeconfig)
	if code, out, errOut := roamctl(t, "fleet"); code != 0 || !strings.Contains(out, "robot-a") {
		t.Errorf("fleet with KUBECONFIG: exit %d, %s%s", code, out, errOut)
	}
	if code, _, errOut := roamctl(t, "fleet", "--context", "nope"); code != 1 || !strings.Contains(errOut, "nope") {
		t.Errorf("fleet --context nope: exit %d, %s", code, errOut)
	}
	if code, _, errOut := roamctl(t, "why", "missing", "-n", "hospital-apps"); code != 1 || !strings.Contains(errOut, "hospital-apps/missing") {
		t.Errorf("why missing: exit %d, %s", code, errOut)
	}
	if code, _, _ := roamctl(t, "fleet", "-o", "xml"); code != 2 {
		t.Errorf("fleet -o xml: exit %d, want 2", code)
	}
	if code, _, _ := roamctl(t, "why"); code != 2 {
		t.Errorf("why without a pod: exit %d, want 2", code)
	}

	// --watch redraws in place when a robot changes.
	var buf testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"fleet", kc, "--watch", "--interval=50ms"}, &buf, &buf)
	}()
	waitFor(t, &buf, "robot-a", "the first table")
	if _, err := cptest.UpdateNode(ctx, cs, "robot-a", func(n *corev1.Node) { n.Annotations[policies.BatteryAnnotation] = "55" }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &buf, "55%", "a redraw with robot-a's new battery")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("fleet --watch exit %d:\n%s", code, buf.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("fleet --watch did not stop when its context ended")
	}
	if n := strings.Count(buf.String(), "\x1b[H\x1b[2J"); n < 2 {
		t.Errorf("%d in-place redraws, want at least 2", n)
	}
}

// TestKubectlPluginName: called as kubectl-roam, messages say kubectl roam.
func TestKubectlPluginName(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runAs(context.Background(), "kubectl roam", []string{"help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "kubectl roam fleet [-o wide|json|yaml] [--watch]") || strings.Contains(out.String(), "roamctl") {
		t.Errorf("usage:\n%s", out.String())
	}
}

func waitFor(t *testing.T, b *testutil.SyncBuffer, want, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s (%q) within 2 minutes; output:\n%s", what, want, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
