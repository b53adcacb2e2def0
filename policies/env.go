package policies

import (
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// IsExtendedResourceName reports whether name is an extended resource (a
// device such as "roam.dev/camera"): a domain-prefixed name outside the
// kubernetes.io domains, as the scheduler defines it. cpu, memory,
// ephemeral-storage and hugepages-* are not.
func IsExtendedResourceName(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, corev1.ResourceDefaultNamespacePrefix) {
		return false // native resource
	}
	// Quota names ("requests.foo/bar") are not extended resources.
	return !strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix)
}

// NodeEnvFor builds the environment of node, given the extended-resource
// units already requested by the pods on it (nil: none).
func NodeEnvFor(node *corev1.Node, requested map[corev1.ResourceName]int64) NodeEnv {
	env := NodeEnv{Battery: -1}
	if node == nil {
		return env
	}
	env.Name = node.Name
	env.Labels = node.Labels
	env.Annotations = node.Annotations
	env.Context = node.Labels[ContextLabel]
	env.Zone = node.Labels[ZoneLabel]
	env.Location = ParsePoint(node.Annotations[LocationAnnotation])
	env.Battery = parseBattery(node.Annotations[BatteryAnnotation])
	for name, q := range node.Status.Allocatable {
		if !IsExtendedResourceName(name) {
			continue
		}
		if env.Capacity == nil {
			env.Capacity = make(map[string]float64)
			env.Devices = make(map[string]float64)
		}
		alloc := q.AsApproximateFloat64()
		env.Capacity[string(name)] = alloc
		free := alloc - float64(requested[name])
		if free < 0 {
			free = 0
		}
		env.Devices[string(name)] = free
	}
	if len(node.Spec.Taints) > 0 {
		env.Taints = make([]string, 0, len(node.Spec.Taints))
		for _, t := range node.Spec.Taints {
			env.Taints = append(env.Taints, t.Key)
		}
	}
	return env
}

// RequestedBy sums the extended-resource requests of pods (what NodeEnvFor
// subtracts); terminal pods are skipped. A pod's request is its effective
// request as the scheduler computes it (init containers, sidecars and
// overhead included).
func RequestedBy(pods []*corev1.Pod) map[corev1.ResourceName]int64 {
	var out map[corev1.ResourceName]int64
	for _, pod := range pods {
		if pod == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for name, q := range resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}) {
			if !IsExtendedResourceName(name) {
				continue
			}
			if out == nil {
				out = make(map[corev1.ResourceName]int64)
			}
			out[name] += q.Value()
		}
	}
	return out
}

// PodEnvFor builds the environment of pod.
func PodEnvFor(pod *corev1.Pod) PodEnv {
	if pod == nil {
		return PodEnv{}
	}
	return PodEnv{
		Name:        pod.Name,
		Namespace:   pod.Namespace,
		Labels:      pod.Labels,
		Annotations: pod.Annotations,
		Target:      ParsePoint(pod.Annotations[TargetAnnotation]),
	}
}

// Distance is the Euclidean distance in metres, or UnknownDistance when
// either point is unknown.
func Distance(a, b Point) float64 {
	if !a.Known || !b.Known {
		return UnknownDistance
	}
	return math.Hypot(a.X-b.X, a.Y-b.Y)
}

// ParsePoint parses "x,y" (metres, spaces allowed). Anything else, including
// non-finite numbers, yields a Point with Known false.
func ParsePoint(s string) Point {
	xs, ys, ok := strings.Cut(s, ",")
	if !ok {
		return Point{}
	}
	x, err1 := strconv.ParseFloat(strings.TrimSpace(xs), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(ys), 64)
	if err1 != nil || err2 != nil || !finite(x) || !finite(y) {
		return Point{}
	}
	return Point{X: x, Y: y, Known: true}
}

// parseBattery parses "0".."100"; anything else is -1 (unknown).
func parseBattery(s string) float64 {
	if s == "" {
		return -1
	}
	b, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !finite(b) || b < 0 || b > 100 {
		return -1
	}
	return b
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
