package detector

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector/phi"
	"github.com/roam-dev/roam/policies"
)

// NodeLeaseNamespace holds the kubelets' node Leases.
const NodeLeaseNamespace = "kube-node-lease"

// Source turns Lease and Node informer events into heartbeats of a Core.
// A heartbeat is an observed change of a Lease's spec.renewTime, stamped
// with the detector's own clock at observation: the robot's clock (the
// renewTime value itself) is never trusted. Nodes without a Lease fall back
// to changes of their Ready condition's lastHeartbeatTime. Its methods are
// informer event handlers (cache.ResourceEventHandler funcs) and are also
// what `make bench-detector` drives.
type Source struct {
	core  *Core
	clock clock.PassiveClock
	// hasLease reports whether node has a Lease (nil: assume none); used to
	// decide whether the Node fallback applies.
	hasLease func(node string) bool
	// leasesSynced gates the fallback until the Lease cache is complete.
	leasesSynced func() bool
}

// NewSource returns a Source feeding core. hasLease and leasesSynced may be
// nil (then every Node without a Lease seen so far uses the fallback).
func NewSource(core *Core, clk clock.PassiveClock, hasLease func(string) bool, leasesSynced func() bool) *Source {
	return &Source{core: core, clock: clk, hasLease: hasLease, leasesSynced: leasesSynced}
}

// LeaseHandler is the handler to register on the kube-node-lease Lease
// informer.
func (s *Source) LeaseHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: s.OnLeaseAdd, UpdateFunc: s.OnLeaseUpdate}
}

// NodeHandler is the handler to register on the Node informer.
func (s *Source) NodeHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: s.OnNodeAdd, UpdateFunc: s.OnNodeUpdate, DeleteFunc: s.OnNodeDelete}
}

func leaseInterval(l *coordinationv1.Lease) int32 {
	if l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return *l.Spec.LeaseDurationSeconds
}

// OnLeaseAdd: a Lease seen for the first time (also every Lease of the
// initial list) counts as a heartbeat observed now.
func (s *Source) OnLeaseAdd(obj interface{}) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || l.Namespace != NodeLeaseNamespace || l.Spec.RenewTime == nil {
		return
	}
	s.core.Heartbeat(l.Name, phi.FirstIntervalForLease(leaseInterval(l)), s.clock.Now())
}

// OnLeaseUpdate records a heartbeat when spec.renewTime changed (any
// change: a robot whose clock jumps backwards still heartbeats; a resync
// that changes nothing does not).
func (s *Source) OnLeaseUpdate(oldObj, newObj interface{}) {
	l, ok := newObj.(*coordinationv1.Lease)
	if !ok || l.Namespace != NodeLeaseNamespace || l.Spec.RenewTime == nil {
		return
	}
	if old, ok := oldObj.(*coordinationv1.Lease); ok && old.Spec.RenewTime != nil &&
		old.Spec.RenewTime.Equal(l.Spec.RenewTime) {
		return
	}
	s.core.Heartbeat(l.Name, phi.FirstIntervalForLease(leaseInterval(l)), s.clock.Now())
}

func readyHeartbeat(n *corev1.Node) (bool, int64) {
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type == corev1.NodeReady {
			return true, c.LastHeartbeatTime.UnixNano()
		}
	}
	return false, 0
}

func (s *Source) fallback(name string) bool {
	if s.leasesSynced != nil && !s.leasesSynced() {
		return false
	}
	return s.hasLease == nil || !s.hasLease(name)
}

// OnNodeAdd records the node's zone and, for a node without a Lease that
// reports Ready, a heartbeat.
func (s *Source) OnNodeAdd(obj interface{}) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	s.core.SetZone(n.Name, n.Labels[policies.ZoneLabel])
	if has, _ := readyHeartbeat(n); has && s.fallback(n.Name) {
		s.nodeHeartbeat(n.Name)
	}
}

// nodeHeartbeat records a Node's fallback heartbeat. It also shows the
// stream of heartbeats flows (Core.SourceResumed), as a delivered Lease
// does.
func (s *Source) nodeHeartbeat(node string) {
	now := s.clock.Now()
	s.core.SourceResumed(now)
	s.core.HeartbeatFrom(node, SourceNode, 0, now)
}

// OnNodeUpdate records zone changes and, for a node without a Lease, a
// heartbeat when its Ready condition's lastHeartbeatTime changed.
func (s *Source) OnNodeUpdate(oldObj, newObj interface{}) {
	n, ok := newObj.(*corev1.Node)
	if !ok {
		return
	}
	old, _ := oldObj.(*corev1.Node)
	if old == nil || old.Labels[policies.ZoneLabel] != n.Labels[policies.ZoneLabel] {
		s.core.SetZone(n.Name, n.Labels[policies.ZoneLabel])
	}
	has, hb := readyHeartbeat(n)
	if !has || !s.fallback(n.Name) {
		return
	}
	if old != nil {
		if _, oldHB := readyHeartbeat(old); oldHB == hb {
			return
		}
	}
	s.nodeHeartbeat(n.Name)
}

// OnNodeDelete forgets the node.
func (s *Source) OnNodeDelete(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		s.core.Forget(n.Name)
	}
}
