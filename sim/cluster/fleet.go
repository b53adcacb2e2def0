package cluster

import (
	"fmt"
	"math"
	"math/rand/v2"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Contexts returns the sites robots work in; robot i starts in
// Contexts()[i%3].
func Contexts() []string { return []string{"hospital", "store", "warehouse"} }

// Device is one device class a robot may carry, exposed as an extended
// resource: Share of each context's robots carry Units of it.
type Device struct {
	Resource string
	Share    float64
	Units    int64
}

// DefaultDevices are the robots' device inventories. Cameras and lidars are
// deliberately scarce so that the roam and stock copies of a workload share
// robots (a lost robot then takes pods of both copies down at once).
func DefaultDevices() []Device {
	return []Device{
		{Resource: "roam.dev/camera", Share: 0.4, Units: 2},
		{Resource: "roam.dev/lidar", Share: 0.15, Units: 2},
		{Resource: "roam.dev/arm", Share: 0.25, Units: 1},
		{Resource: "roam.dev/gpu", Share: 0.2, Units: 1},
	}
}

// robotSpec is a robot's static description.
type robotSpec struct {
	Index    int
	Name     string
	Context  string
	X, Y     float64
	Battery  int
	Devices  map[string]int64
	LinkName string
}

// zoneOf is the zone (site) of a context.
func zoneOf(context string) string { return "site-" + context }

// newFleet draws n robots: contexts round-robin, and in each context the
// devices go to a seeded choice of exactly ceil(share·robots) robots.
func newFleet(seed uint64, n int, devices []Device) []robotSpec {
	rng := rand.New(rand.NewPCG(seed, 0xF1EE7))
	fleet := make([]robotSpec, n)
	byContext := map[string][]int{}
	contexts := Contexts()
	for i := range fleet {
		c := contexts[i%len(contexts)]
		fleet[i] = robotSpec{
			Index: i, Name: fmt.Sprintf("robot-%02d", i), Context: c,
			X: math.Round(rng.Float64()*1000) / 10, Y: math.Round(rng.Float64()*1000) / 10,
			Battery: 30 + rng.IntN(71), Devices: map[string]int64{},
		}
		byContext[c] = append(byContext[c], i)
	}
	for _, c := range contexts {
		members := byContext[c]
		for _, d := range devices {
			k := int(math.Ceil(d.Share * float64(len(members))))
			perm := rng.Perm(len(members))
			for _, p := range perm[:min(k, len(members))] {
				fleet[members[p]].Devices[d.Resource] = d.Units
			}
		}
	}
	return fleet
}

// node builds the robot's Node object as its kubelet registers it (status
// is set separately: the API server drops status on create). What the
// robot senses (context, zone, location, battery) is not there: the
// robot's agent publishes it (see sensed and agents).
func (r *robotSpec) node() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname": r.Name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "arm64",
				"roam.dev/sim":           "true",
			},
		},
	}
}

// nodeStatus is what the robot's kubelet reports: allocatable devices,
// cpu, memory, pods, and a Ready condition.
func (r *robotSpec) nodeStatus(now metav1.Time) corev1.NodeStatus {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	for name, units := range r.Devices {
		res[corev1.ResourceName(name)] = *resource.NewQuantity(units, resource.DecimalSI)
	}
	return corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res.DeepCopy(),
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "roam-sim kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: r.Name}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.34.4", OperatingSystem: "linux", Architecture: "arm64"},
	}
}

// lease is the robot's node Lease in kube-node-lease.
func (r *robotSpec) lease(node *corev1.Node, durationSeconds int32, now metav1.MicroTime) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.Name, Namespace: corev1.NamespaceNodeLease,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(r.Name),
			LeaseDurationSeconds: ptr.To(durationSeconds),
			RenewTime:            &now,
		},
	}
}
