package policies

import (
	"math"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podRequesting(phase corev1.PodPhase, reqs ...corev1.ResourceList) *corev1.Pod {
	p := &corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
	for _, r := range reqs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Resources: corev1.ResourceRequirements{Requests: r, Limits: r}})
	}
	return p
}

func TestNodeEnvFor(t *testing.T) {
	node := benchNode()
	requested := RequestedBy([]*corev1.Pod{
		podRequesting(corev1.PodRunning, corev1.ResourceList{"roam.dev/camera": resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("1")}),
		podRequesting(corev1.PodPending, corev1.ResourceList{"roam.dev/arm": resource.MustParse("1")}, corev1.ResourceList{"roam.dev/camera": resource.MustParse("1")}),
		podRequesting(corev1.PodSucceeded, corev1.ResourceList{"roam.dev/lidar": resource.MustParse("1")}),
		podRequesting(corev1.PodFailed, corev1.ResourceList{"roam.dev/lidar": resource.MustParse("1")}),
		nil,
	})
	if want := map[corev1.ResourceName]int64{"roam.dev/camera": 2, "roam.dev/arm": 1}; !equalReq(requested, want) {
		t.Fatalf("RequestedBy = %v, want %v (terminal pods skipped, cpu ignored)", requested, want)
	}
	env := NodeEnvFor(node, requested)
	wantDev := map[string]float64{"roam.dev/camera": 0, "roam.dev/lidar": 1, "roam.dev/arm": 0, "nvidia.com/gpu": 1}
	wantCap := map[string]float64{"roam.dev/camera": 2, "roam.dev/lidar": 1, "roam.dev/arm": 1, "nvidia.com/gpu": 1}
	if !equalF(env.Devices, wantDev) {
		t.Errorf("Devices = %v, want %v", env.Devices, wantDev)
	}
	if !equalF(env.Capacity, wantCap) {
		t.Errorf("Capacity = %v, want %v (cpu, memory, hugepages, kubernetes.io/ and quota names excluded)", env.Capacity, wantCap)
	}
	if env.Name != "robot-1" || env.Context != "hospital" || env.Zone != "ward-3" || env.Battery != 80 {
		t.Errorf("name/context/zone/battery = %q %q %q %v", env.Name, env.Context, env.Zone, env.Battery)
	}
	if env.Location != (Point{X: 3, Y: 4, Known: true}) {
		t.Errorf("Location = %+v", env.Location)
	}
	if len(env.Taints) != 1 || env.Taints[0] != "example.com/dirty" {
		t.Errorf("Taints = %v", env.Taints)
	}
	if len(env.Labels) != 30 {
		t.Errorf("Labels has %d entries, want 30", len(env.Labels))
	}

	// Overcommitted devices read 0, never negative.
	env = NodeEnvFor(node, map[corev1.ResourceName]int64{"roam.dev/lidar": 5})
	if env.Devices["roam.dev/lidar"] != 0 {
		t.Errorf("overcommitted lidar = %v, want 0", env.Devices["roam.dev/lidar"])
	}

	// A bare node: everything unknown.
	env = NodeEnvFor(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "bare"}}, nil)
	if env.Battery != -1 || env.Location.Known || env.Context != "" || env.Devices["roam.dev/camera"] != 0 {
		t.Errorf("bare node env = %+v", env)
	}
	if env := NodeEnvFor(nil, nil); env.Battery != -1 {
		t.Errorf("nil node battery = %v, want -1", env.Battery)
	}
}

func TestRequestedByInitContainers(t *testing.T) {
	// Effective request = max(sum of app containers, largest init container).
	p := podRequesting(corev1.PodPending, corev1.ResourceList{"roam.dev/camera": resource.MustParse("1")})
	p.Spec.InitContainers = []corev1.Container{{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{"roam.dev/camera": resource.MustParse("2")},
		Limits:   corev1.ResourceList{"roam.dev/camera": resource.MustParse("2")}}}}
	if got := RequestedBy([]*corev1.Pod{p})["roam.dev/camera"]; got != 2 {
		t.Errorf("camera requested = %d, want 2", got)
	}
}

func TestParsePointAndBattery(t *testing.T) {
	for in, want := range map[string]Point{
		"3,4":        {3, 4, true},
		" -1.5 , 2 ": {-1.5, 2, true},
		"":           {},
		"3":          {},
		"a,b":        {},
		"1,2,3":      {},
		"NaN,1":      {},
		"1,+Inf":     {},
	} {
		if got := ParsePoint(in); got != want {
			t.Errorf("ParsePoint(%q) = %+v, want %+v", in, got, want)
		}
	}
	for in, want := range map[string]float64{"80": 80, "0": 0, "100": 100, "55.5": 55.5, "": -1, "full": -1, "101": -1, "-3": -1, "NaN": -1} {
		if got := parseBattery(in); got != want {
			t.Errorf("parseBattery(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDistance(t *testing.T) {
	if d := Distance(Point{0, 0, true}, Point{3, 4, true}); d != 5 {
		t.Errorf("Distance = %v, want 5", d)
	}
	if d := Distance(Point{0, 0, true}, Point{}); d != UnknownDistance {
		t.Errorf("Distance to unknown = %v, want %v", d, UnknownDistance)
	}
	if math.IsInf(UnknownDistance, 0) {
		t.Error("UnknownDistance must be finite")
	}
}

func TestPodEnvFor(t *testing.T) {
	env := PodEnvFor(benchPod())
	if env.Name != "ma-0" || env.Namespace != "hospital-apps" || env.Labels["app"] != "medical-assistant" || env.Target != (Point{0, 0, true}) {
		t.Errorf("PodEnvFor = %+v", env)
	}
	if env := PodEnvFor(&corev1.Pod{}); env.Target.Known {
		t.Errorf("pod without target: %+v", env.Target)
	}
}

func TestIsExtendedResourceName(t *testing.T) {
	for name, want := range map[corev1.ResourceName]bool{
		"roam.dev/camera": true, "nvidia.com/gpu": true,
		"cpu": false, "memory": false, "hugepages-2Mi": false, "ephemeral-storage": false,
		"kubernetes.io/foo": false, "example.kubernetes.io/foo": false, "requests.roam.dev/camera": false,
	} {
		if got := IsExtendedResourceName(name); got != want {
			t.Errorf("IsExtendedResourceName(%q) = %v, want %v", name, got, want)
		}
	}
}

func equalReq(a, b map[corev1.ResourceName]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func equalF(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if x, ok := a[k]; !ok || x != v {
			return false
		}
	}
	return true
}
