package fence

import (
	"context"
	"fmt"
	"math"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/agent/fence/lease"
	"github.com/roam-dev/roam/policies"
)

// Names of the fence Lease protocol, shared with roam-detector.
const (
	// DefaultLeaseNamespace holds one fence Lease per robot, named after
	// its Node.
	DefaultLeaseNamespace = policies.FenceLeaseNamespace
	// RevokedHolder is the holderIdentity roam-detector writes into a
	// robot's fence Lease to revoke it before it removes the robot's pods.
	RevokedHolder = policies.FenceRevokedHolder
)

// Renewer renews the robot's fence Lease: each renewal is a heartbeat, and
// a renewal the API server answered with success is an acknowledged one
// (package lease counts from its send time). Every renewal is a conditional
// update (the Lease's resourceVersion), so once roam-detector has revoked
// the Lease by its own conditional update, no renewal sent before the agent
// has seen the revocation can succeed: the set of acknowledged heartbeats
// is closed at the revocation. The agent then learns of it, is fenced, and
// takes the Lease back with its next renewal.
type Renewer struct {
	Client    kubernetes.Interface
	Namespace string
	Node      string
	Lease     *lease.Lease
	// Store keeps the newest acknowledgement across restarts (optional).
	Store *lease.Store
	// Interval between renewals (default fenceAfter/3).
	Interval time.Duration
	// Timeout bounds one request (default Interval).
	Timeout time.Duration
	Clock   clock.WithTicker
	// OnAck is called after each acknowledged renewal (metrics; optional).
	OnAck func()

	cur *coordinationv1.Lease
}

func (r *Renewer) defaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Interval <= 0 {
		r.Interval = r.Lease.FenceAfter() / 3
	}
	if r.Timeout <= 0 {
		r.Timeout = r.Interval
	}
}

// Run renews until ctx ends.
func (r *Renewer) Run(ctx context.Context) {
	r.defaults()
	t := r.Clock.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.Renew(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Fence lease renewal failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Renew sends one renewal and records its acknowledgement.
func (r *Renewer) Renew(ctx context.Context) error {
	r.defaults()
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	leases := r.Client.CoordinationV1().Leases(r.Namespace)
	sent := r.Clock.Now()
	var got *coordinationv1.Lease
	var err error
	if r.cur == nil {
		got, err = leases.Create(ctx, r.object(sent), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return r.reread(ctx)
		}
	} else {
		l := r.cur.DeepCopy()
		l.Spec = r.object(sent).Spec
		got, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return r.reread(ctx)
		}
		if apierrors.IsNotFound(err) {
			r.cur = nil // deleted by someone: created again at the next renewal
		}
	}
	if err != nil {
		return fmt.Errorf("renewing fence lease %s/%s: %w", r.Namespace, r.Node, err)
	}
	r.cur = got
	r.acked(ctx, sent)
	return nil
}

// reread fetches the Lease after a conflict: someone else wrote it. If it
// is no longer held by this robot, roam-detector revoked it.
func (r *Renewer) reread(ctx context.Context) error {
	l, err := r.Client.CoordinationV1().Leases(r.Namespace).Get(ctx, r.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading fence lease %s/%s: %w", r.Namespace, r.Node, err)
	}
	r.cur = l
	if ptr.Deref(l.Spec.HolderIdentity, "") != r.Node {
		now := r.Clock.Now()
		klog.FromContext(ctx).Info("The fence lease was revoked: roam removes or may remove this robot's pods", "holder", ptr.Deref(l.Spec.HolderIdentity, ""))
		r.Lease.Revoke(now)
		if r.Store != nil {
			if err := r.Store.SaveRevoked(); err != nil {
				klog.FromContext(ctx).Error(err, "Cannot keep the revocation for a restart")
			}
		}
	}
	return nil
}

func (r *Renewer) acked(ctx context.Context, sent time.Time) {
	if !r.Lease.Acked(sent) {
		return
	}
	if r.OnAck != nil {
		r.OnAck()
	}
	if r.Store != nil {
		if err := r.Store.Save(sent, r.Clock.Now()); err != nil {
			klog.FromContext(ctx).Error(err, "Cannot keep the fence lease's acknowledgement for a restart")
		}
	}
}

func (r *Renewer) object(now time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: r.Node, Namespace: r.Namespace},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(r.Node),
			LeaseDurationSeconds: ptr.To(int32(math.Ceil(r.Lease.FenceAfter().Seconds()))),
			RenewTime:            &metav1.MicroTime{Time: now},
		},
	}
}
