package contextcheck

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/roam-dev/roam/policies"
)

// TestNodeRejects covers each rule of the alternative-node check.
func TestNodeRejects(t *testing.T) {
	pol, err := policies.Parse(policyCM("medical-assistant", `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`, nil))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, Labels: map[string]string{"app": "medical-assistant"}},
		Spec: corev1.PodSpec{NodeName: "r0", Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), "roam.dev/camera": resource.MustParse("1")}}}}}}
	tolerating := pod.DeepCopy()
	tolerating.Spec.Tolerations = []corev1.Toleration{{Key: "dock", Operator: corev1.TolerationOpExists}}
	selecting := pod.DeepCopy()
	selecting.Spec.NodeSelector = map[string]string{"wing": "east"}
	camPod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{"roam.dev/camera": resource.MustParse("1")}}}}}}
	taint := func(effect corev1.TaintEffect) nodeOpt {
		return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "dock", Effect: effect}) }
	}
	cordoned := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		node  *corev1.Node
		there []*corev1.Pod
		want  string // substring; "" = fits
	}{
		{"fits", pod, robot("r1", "hospital", cameras(1)), nil, ""},
		{"wrong context", pod, robot("r1", "store", cameras(1)), nil, "require false"},
		{"camera taken", pod, robot("r1", "hospital", cameras(1)), []*corev1.Pod{camPod}, "require false"},
		{"cordoned", pod, robot("r1", "hospital", cameras(1), cordoned), nil, "unschedulable"},
		{"NoSchedule taint", pod, robot("r1", "hospital", cameras(1), taint(corev1.TaintEffectNoSchedule)), nil, "taint dock:NoSchedule not tolerated"},
		{"NoSchedule tolerated", tolerating, robot("r1", "hospital", cameras(1), taint(corev1.TaintEffectNoSchedule)), nil, ""},
		{"PreferNoSchedule ignored", pod, robot("r1", "hospital", cameras(1), taint(corev1.TaintEffectPreferNoSchedule)), nil, ""},
		{"unreachable even if tolerated", tolerating, robot("r1", "hospital", cameras(1), unreachable), nil, "tainted roam.dev/unreachable"},
		{"node selector", selecting, robot("r1", "hospital", cameras(1)), nil, "node selector"},
		{"cpu", pod, robot("r1", "hospital", cameras(1), cpu("500m")), nil, "insufficient cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChecker(nil)
			c.env.Pod = policies.PodEnvFor(tc.pod)
			got := c.nodeRejects(tc.pod, podRequests(tc.pod), nodeaffinity.GetRequiredNodeAffinity(tc.pod), []*policies.Policy{pol}, tc.node, tc.there)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("nodeRejects = %q, want %q", got, tc.want)
			}
		})
	}
}
