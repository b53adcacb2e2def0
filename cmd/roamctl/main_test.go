package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
)

func roamctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckValid(t *testing.T) {
	code, out, errOut := roamctl(t, "policy", "check", "testdata/policies/medical-assistant.yaml")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := "hospital-apps/medical-assistant: valid\nroam-system/fleet-battery: valid\n"
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
}

// A typo in a field name exits 1 and points at the line and column in the
// file, inside a literal block scalar and inside a quoted scalar.
func TestCheckTypoInFieldName(t *testing.T) {
	code, _, errOut := roamctl(t, "policy", "check", "testdata/typo.yaml")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := `testdata/typo.yaml: hospital-apps/medical-assistant: require: 12:12: node has no field batery (did you mean battery?)
 |       node.batery > 20
 |            ^
testdata/typo.yaml: hospital-apps/medical-assistant: score: 13:78: pod has no field targt (did you mean target?)
 |   score: '10 * node.devices["roam.dev/camera"] - distance(node.location, pod.targt)'
 |                                                                              ^
2 problem(s)
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

func TestCheckManyProblems(t *testing.T) {
	code, _, errOut := roamctl(t, "policy", "check", "testdata/many.yaml")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"testdata/many.yaml: team-a/many: requires: 9:3: unknown key: did you mean require?\n",
		"testdata/many.yaml: team-a/many: match: 10:45: pod has no field nme (did you mean name?)\n",
		"testdata/many.yaml: team-a/many: weight: 11:11: ConfigMap data values must be strings: quote it (\"2\")\n",
		"testdata/many.yaml: team-a/many: settle: 12:11: ConfigMap data values must be strings: quote it (\"10\")\n",
		"testdata/many.yaml: team-a/many: onNodeFailure: 13:18: \"evict\" is not one of reschedule, keep\n",
		"testdata/many.yaml: team-a/many: forceDelete: 14:17: \"yes\" is not a boolean: want \"true\" or \"false\"\n",
		"testdata/many.yaml: team-a/unlabelled: 18:1: missing label roam.dev/policy: \"true\"",
		"testdata/many.yaml: team-a/unlabelled: require: 22:30: unexpected token EOF\n |   require: node.zone == \"a\" ||\n |                              ^\n",
		"8 problem(s)\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q; stderr:\n%s", want, errOut)
		}
	}
	// Problems are listed in file order.
	if strings.Index(errOut, "requires: 9:3") > strings.Index(errOut, "weight: 11:11") {
		t.Errorf("problems not in file order:\n%s", errOut)
	}
}

func TestCheckFilePositions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	src := `apiVersion: v1
kind: ConfigMap
metadata: {name: p, namespace: ns, labels: {roam.dev/policy: "true"}}
data:
  require: >-
    node.context == "a" &&
    node.zon == "b"
  score: "1 + \"\\u00e9\" + node.batt"
  match: pod.nam == 'x'
  settle: " 5m"
  weight: "0"
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := roamctl(t, "policy", "check", file)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"require: 7:10: node has no field zon (did you mean zone?)", // folded scalar, second file line
		"match: 9:14: pod has no field nam (did you mean name?)",    // plain scalar
		"weight: 11:12: must be greater than 0, got 0",              // inside quotes
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "settle") {
		t.Errorf("settle \" 5m\" is valid:\n%s", errOut)
	}
}

func TestCheckUsageAndMissingFile(t *testing.T) {
	if code, _, _ := roamctl(t, "policy", "check"); code != 2 {
		t.Errorf("no files: exit %d, want 2", code)
	}
	if code, _, _ := roamctl(t, "nope"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	code, _, errOut := roamctl(t, "policy", "check", "testdata/does-not-exist.yaml")
	if code != 1 || !strings.Contains(errOut, "does-not-exist.yaml") {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("kind: ConfigMap\ndata: [unclosed\n"), 0o644)
	if code, _, errOut := roamctl(t, "policy", "check", bad); code != 1 || !strings.Contains(errOut, "invalid YAML") {
		t.Errorf("broken YAML: exit %d, %s", code, errOut)
	}
}

func TestExplainFiles(t *testing.T) {
	code, out, errOut := roamctl(t, "policy", "explain", "--pod", "testdata/pod.yaml", "--nodes", "testdata/nodes.yaml", "--policies", "testdata/policies")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 {
		t.Fatalf("output:\n%s", out)
	}
	if lines[1] != "governed by: hospital-apps/medical-assistant (weight 2), roam-system/fleet-battery (weight 1)" {
		t.Errorf("governed line = %q", lines[1])
	}
	// robot-near: 2*(10*1 - 5) + 90/10 = 19; robot-far: 2*(20-50) + 5 = -55.
	// Roam score: both the policies' total and the distance to the pod's
	// target (the built-in preference) favour robot-near: 100 and 0.
	for i, want := range [][]string{
		{"1", "robot-near", "true", "5", "true", "9", "19", "100"},
		{"2", "robot-far", "true", "-30", "true", "5", "-55", "0"},
		{"-", "robot-store", "false"},
		{"-", "robot-nocam", "false"},
	} {
		f := strings.Fields(lines[3+i])
		for j, w := range want {
			if j >= len(f) || f[j] != w {
				t.Errorf("row %d = %q, want prefix %q", i, lines[3+i], want)
				break
			}
		}
	}
}

func TestExplainScoreWeights(t *testing.T) {
	code, _, errOut := roamctl(t, "policy", "explain", "--pod", "testdata/pod.yaml", "--nodes", "testdata/nodes.yaml",
		"--policies", "testdata/policies", "--score-weights", "policy=8,altitude=1")
	if code != 2 || !strings.Contains(errOut, `"altitude": unknown weight`) {
		t.Errorf("unknown weight: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = roamctl(t, "policy", "explain", "--pod", "testdata/pod.yaml", "--nodes", "testdata/nodes.yaml",
		"--policies", "testdata/policies", "--score-weights", "location=101")
	if code != 2 || !strings.Contains(errOut, "location=101: the weight must be an integer in 0..100") {
		t.Errorf("weight out of range: exit %d, stderr %q", code, errOut)
	}
	// The policies' weight 0 and the location alone: robot-near is still
	// the nearer one.
	code, out, errOut := roamctl(t, "policy", "explain", "--pod", "testdata/pod.yaml", "--nodes", "testdata/nodes.yaml",
		"--policies", "testdata/policies", "--score-weights", "policy=0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if f := strings.Fields(strings.Split(out, "\n")[3]); len(f) < 8 || f[1] != "robot-near" || f[7] != "100" {
		t.Errorf("first row = %q, want robot-near with roam score 100", f)
	}
}

func TestExplainBlockedAndUngoverned(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	_ = os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: hospital-apps, annotations: {roam.dev/policy: missing}}\n"), 0o644)
	code, out, _ := roamctl(t, "policy", "explain", "--pod", pod, "--nodes", "testdata/nodes.yaml", "--policies", "testdata/policies")
	if code != 0 || !strings.Contains(out, `blocked: pod names policy "missing"`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
	_ = os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: kube-system}\n"), 0o644)
	code, out, _ = roamctl(t, "policy", "explain", "--pod", pod, "--nodes", "testdata/nodes.yaml", "--policies", "testdata/policies")
	if code != 0 || !strings.Contains(out, "governed by no policy") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if code, _, _ := roamctl(t, "policy", "explain", "--pod", pod); code != 2 {
		t.Errorf("explain without nodes: exit %d, want 2", code)
	}
}

// TestExplainLiveCluster reads the pod, nodes, pods on nodes and policies
// from a real kube-apiserver.
func TestExplainLiveCluster(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx := context.Background()
	for _, ns := range []string{"hospital-apps", policies.DefaultGlobalNamespace} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().ConfigMaps("hospital-apps").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cams", Namespace: "hospital-apps", Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data:       map[string]string{"match": `pod.labels["app"] == "ma"`, "require": `node.devices["roam.dev/camera"] >= 1`, "score": `node.devices["roam.dev/camera"]`},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, cams := range map[string]string{"robot-a": "2", "robot-b": "1"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Capacity = corev1.ResourceList{"roam.dev/camera": resource.MustParse(cams)}
		n.Status.Allocatable = n.Status.Capacity
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	one := corev1.ResourceList{"roam.dev/camera": resource.MustParse("1")}
	mk := func(name, node string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "hospital-apps", Labels: map[string]string{"app": "ma"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x", Resources: corev1.ResourceRequirements{Requests: one, Limits: one}}}}}
		if _, err := cs.CoreV1().Pods("hospital-apps").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("running", "robot-b") // uses robot-b's only camera
	mk("pending", "")
	code, out, errOut := roamctl(t, "policy", "explain", "--kubeconfig", cp.Kubeconfig, "--pod", "hospital-apps/pending")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[1] != "governed by: hospital-apps/cams (weight 1)" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[3]), " "), "1 robot-a true 2 2") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[4]), " "), "- robot-b false 0") {
		t.Errorf("output:\n%s", out)
	}
}
