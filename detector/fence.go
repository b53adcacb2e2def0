package detector

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// FenceAfter is the fenceAfter a robot's agent publishes on its Node
// (annotation roam.dev/fence), or 0 when the robot is unfenced (absent or
// not a positive duration).
func FenceAfter(node *corev1.Node) time.Duration {
	v, ok := node.Annotations[policies.FenceAnnotation]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// fenceLeaseHandler turns renewals of the robots' fence Leases into
// FenceObserved: a renewal by the robot itself (holder = the Lease's name)
// whose renewTime changed, stamped with the detector's clock when observed.
func (c *Controller) fenceLeaseHandler() cache.ResourceEventHandler {
	observe := func(old, cur *coordinationv1.Lease) {
		if ptr.Deref(cur.Spec.HolderIdentity, "") != cur.Name || cur.Spec.RenewTime == nil {
			return
		}
		if old != nil && old.Spec.RenewTime != nil && old.Spec.RenewTime.Equal(cur.Spec.RenewTime) &&
			ptr.Deref(old.Spec.HolderIdentity, "") == cur.Name {
			return
		}
		c.core.FenceObserved(cur.Name, c.clock.Now())
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o interface{}) {
			if l, ok := o.(*coordinationv1.Lease); ok {
				observe(nil, l)
			}
		},
		UpdateFunc: func(o, n interface{}) {
			ol, ok1 := o.(*coordinationv1.Lease)
			nl, ok2 := n.(*coordinationv1.Lease)
			if ok1 && ok2 {
				observe(ol, nl)
			}
		},
	}
}

// nodeFence is the fence mode of node from its agent's fenceAfter and the
// pods on it that move on node failure: duplicates accepted by all of them
// (or none moves) → FenceAcceptDuplicates; all of them frozen by a fenced
// robot (or accepting duplicates) → FenceFenced; else FenceUnfenced.
func (c *Controller) nodeFence(node string, failure func(*corev1.Pod) policies.Failure) (FenceMode, time.Duration) {
	var after time.Duration
	if obj, ok, err := c.nodeInf.GetIndexer().GetByKey(node); err == nil && ok {
		after = FenceAfter(obj.(*corev1.Node))
	}
	if c.opts.Policies == nil {
		return FenceAcceptDuplicates, after // nothing is ever removed
	}
	allDup, fenced := true, after > 0
	for _, pod := range evict.PodsOn(c.podInf.GetIndexer(), node) {
		if evict.Unmovable(pod) != "" {
			continue
		}
		f := failure(pod)
		if !f.Move || f.AcceptDuplicates {
			continue
		}
		allDup = false
		fenced = fenced && f.Freeze
	}
	switch {
	case allDup:
		return FenceAcceptDuplicates, after
	case fenced:
		return FenceFenced, after
	}
	return FenceUnfenced, after
}

// revokeFence revokes a fenced robot's fence Lease before its pods are
// removed: a conditional update (the resourceVersion the detector last
// observed) that sets the holder to roam-detector. Once it succeeded, no
// renewal the agent sent before it can succeed, so the agent's newest
// acknowledged heartbeat is one the detector observed, and the fence floor
// counted from it holds. It reports false when a renewal the detector had
// not observed yet won the race: the eviction must wait for a new floor.
func revokeFence(ctx context.Context, client kubernetes.Interface, leases coordlisters.LeaseNamespaceLister, namespace, node string) (bool, error) {
	l, err := leases.Get(node)
	if apierrors.IsNotFound(err) {
		return true, nil // never renewed: nothing to revoke (the robot counts as unfenced)
	}
	if err != nil {
		return false, fmt.Errorf("fence lease %s/%s: %w", namespace, node, err)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") == policies.FenceRevokedHolder {
		return true, nil // revoked already (a retried eviction)
	}
	l = l.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(policies.FenceRevokedHolder)
	_, err = client.CoordinationV1().Leases(namespace).Update(ctx, l, metav1.UpdateOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("revoking fence lease %s/%s: %w", namespace, node, err)
}

// checkFence is called before a node's pods are removed. It sets the
// node's fence mode from the caches now (not only when the threshold
// worker gets to it), and for a fenced robot revokes its fence Lease. It
// reports whether the removal may go ahead; if not, the Core has taken the
// node back to Suspected to wait for its floor.
func (c *Controller) checkFence(ctx context.Context, node string) (bool, error) {
	mode, after := c.nodeFence(node, c.actuator.Failure)
	c.core.SetFence(node, mode, after)
	now := c.clock.Now()
	if floor, _ := c.core.FenceFloor(node); now.Before(floor) {
		c.core.EvictionDeferred(node)
		return false, nil
	}
	if mode != FenceFenced || c.fenceLeases == nil {
		return true, nil
	}
	ok, err := revokeFence(ctx, c.client, c.fenceLeases, c.opts.FenceLeaseNamespace, node)
	if err != nil {
		return false, err
	}
	if !ok {
		klog.FromContext(ctx).Info("Eviction called off: the robot's agent renewed its fence lease", "node", node)
		c.core.EvictionAborted(node, now)
	}
	return ok, nil
}
