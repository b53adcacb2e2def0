package policies

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// exampleData is the example policy of docs/policies.md.
func exampleData() map[string]string {
	return map[string]string{
		"match":           `pod.labels["app"] == "medical-assistant"`,
		"require":         `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`,
		"score":           `10 * node.devices["roam.dev/camera"] - distance(node.location, pod.target)`,
		"weight":          "2",
		"onContextChange": "reschedule",
		"settle":          "10s",
		"onNodeFailure":   "reschedule",
		"phiThreshold":    "8",
		"forceDelete":     "false",
	}
}

func policyCM(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{PolicyLabel: "true"}},
		Data:       data,
	}
}

// benchNode is a node with 30 labels and 4 device types.
func benchNode() *corev1.Node {
	labels := map[string]string{ContextLabel: "hospital", ZoneLabel: "ward-3"}
	for i := 0; len(labels) < 30; i++ {
		labels[fmt.Sprintf("feature.node.kubernetes.io/f%02d", i)] = "true"
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-1", Labels: labels,
			Annotations: map[string]string{LocationAnnotation: "3,4", BatteryAnnotation: "80"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "example.com/dirty", Effect: corev1.TaintEffectPreferNoSchedule}}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("4"),
			corev1.ResourceMemory:           resource.MustParse("8Gi"),
			"hugepages-2Mi":                 resource.MustParse("1Gi"),
			"roam.dev/camera":               resource.MustParse("2"),
			"roam.dev/lidar":                resource.MustParse("1"),
			"roam.dev/arm":                  resource.MustParse("1"),
			"nvidia.com/gpu":                resource.MustParse("1"),
			"kubernetes.io/something":       resource.MustParse("3"),
			"requests.example.com/quotaish": resource.MustParse("3"),
		}},
	}
}

func benchPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "hospital-apps", Name: "ma-0",
		Labels:      map[string]string{"app": "medical-assistant"},
		Annotations: map[string]string{TargetAnnotation: "0,0"}}}
}
