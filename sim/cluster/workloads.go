package cluster

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/policies"
)

// Copy says which scheduler and failure handling a workload copy uses.
type Copy string

const (
	// Roam is the copy placed by roam-scheduler and governed by a policy.
	Roam Copy = "roam"
	// Stock is the copy placed by the default scheduler profile with no
	// policy: stock Kubernetes (default tolerations, node lifecycle and
	// taint-eviction controllers).
	Stock Copy = "stock"
)

// Labels the sim puts on every pod it runs, to find a pod's workload and copy.
const (
	WorkloadLabel = "roam.dev/sim-workload"
	CopyLabel     = "roam.dev/sim-copy"
)

// Workload is one application the sim runs twice, once per Copy.
type Workload struct {
	Namespace string
	Name      string
	// Kind is Deployment or StatefulSet.
	Kind     string
	Context  string
	Device   string
	Replicas int32
	// ForceDelete is the roam policy's forceDelete (StatefulSets need it:
	// their replacement needs the old pod's name).
	ForceDelete bool
}

// DefaultWorkloads are the demo's applications.
func DefaultWorkloads(replicas, statefulReplicas int32) []Workload {
	return []Workload{
		{Namespace: "hospital-apps", Name: "medical-assistant", Kind: "Deployment", Context: "hospital", Device: "roam.dev/camera", Replicas: replicas},
		{Namespace: "store-apps", Name: "shelf-scanner", Kind: "Deployment", Context: "store", Device: "roam.dev/camera", Replicas: replicas},
		{Namespace: "warehouse-apps", Name: "map-server", Kind: "StatefulSet", Context: "warehouse", Device: "roam.dev/lidar", Replicas: statefulReplicas, ForceDelete: true},
	}
}

// objectName is the name of the workload copy's Deployment or StatefulSet.
func (w Workload) objectName(c Copy) string {
	if c == Stock {
		return w.Name + "-stock"
	}
	return w.Name
}

// key identifies a workload copy: namespace.name (a valid label value).
func (w Workload) key(c Copy) string { return w.Namespace + "." + w.objectName(c) }

// Policy is the roam copy's policy ConfigMap.
func (w Workload) Policy(settle string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: w.Name, Namespace: w.Namespace,
			Labels: map[string]string{policies.PolicyLabel: "true"},
		},
		Data: map[string]string{
			"match":           fmt.Sprintf(`pod.labels[%q] == %q`, WorkloadLabel, w.key(Roam)),
			"require":         fmt.Sprintf(`node.context == %q && node.capacity[%q] >= 1`, w.Context, w.Device),
			"onNodeFailure":   "reschedule",
			"onContextChange": "reschedule",
			"settle":          settle,
			"forceDelete":     strconv.FormatBool(w.ForceDelete),
			// The simulated robots run no roam-agent, so they are unfenced:
			// without this roam-detector would leave their pods for the
			// unfenced timeout (docs/fencing.md).
			"acceptDuplicates": "true",
		},
	}
}

// podTemplate is the copy's pod template: one container requesting one
// device unit. The stock copy expresses the same placement constraint the
// stock way (a nodeSelector on the context plus the device request) and
// gets the API server's default tolerations (300 s).
func (w Workload) podTemplate(c Copy) corev1.PodTemplateSpec {
	labels := map[string]string{"app": w.objectName(c), WorkloadLabel: w.key(c), CopyLabel: string(c)}
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:  w.Name,
			Image: "registry.example.com/roam-demo/" + w.Name + ":jazzy",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:            resource.MustParse("100m"),
					corev1.ResourceMemory:         resource.MustParse("128Mi"),
					corev1.ResourceName(w.Device): resource.MustParse("1"),
				},
				Limits: corev1.ResourceList{corev1.ResourceName(w.Device): resource.MustParse("1")},
			},
		}},
		AutomountServiceAccountToken: ptr.To(false),
	}
	annotations := map[string]string{}
	if c == Roam {
		spec.SchedulerName = "roam-scheduler"
		annotations[policies.PolicyAnnotation] = w.Name
	} else {
		spec.NodeSelector = map[string]string{policies.ContextLabel: w.Context}
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}, Spec: spec}
}

// Deployment returns the copy's Deployment (Kind must be Deployment).
func (w Workload) Deployment(c Copy) *appsv1.Deployment {
	tmpl := w.podTemplate(c)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: w.objectName(c), Namespace: w.Namespace, Labels: map[string]string{CopyLabel: string(c)}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(w.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{WorkloadLabel: w.key(c)}},
			Template: tmpl,
		},
	}
}

// StatefulSet returns the copy's StatefulSet (Kind must be StatefulSet).
func (w Workload) StatefulSet(c Copy) *appsv1.StatefulSet {
	tmpl := w.podTemplate(c)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: w.objectName(c), Namespace: w.Namespace, Labels: map[string]string{CopyLabel: string(c)}},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(w.Replicas),
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{WorkloadLabel: w.key(c)}},
			Template:            tmpl,
			ServiceName:         w.objectName(c),
			PodManagementPolicy: appsv1.ParallelPodManagement,
		},
	}
}
