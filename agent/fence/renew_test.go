package fence_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/agent/fence"
	"github.com/roam-dev/roam/agent/fence/lease"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

// Against a real API server: a renewal acknowledges its send time; a
// revocation by a conditional update makes the next renewal fail, the agent
// learns of it and is fenced, and takes the Lease back with the renewal
// after.
func TestRenewerAcknowledgesAndSeesRevocation(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fence.DefaultLeaseNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, _ := lease.New(3*time.Second, start.Add(-time.Hour))
	store := &lease.Store{Path: filepath.Join(t.TempDir(), "fence-lease"), Boot: lease.BootTime}
	r := &fence.Renewer{Client: cs, Namespace: fence.DefaultLeaseNamespace, Node: "robot-1", Lease: l, Store: store, Timeout: 10 * time.Second}
	before := time.Now()
	if err := r.Renew(ctx); err != nil {
		t.Fatalf("first renewal (create): %v", err)
	}
	st := l.State()
	if st.LastAck.Before(before) || st.Expired(time.Now()) {
		t.Fatalf("after an acknowledged renewal sent at or after %v: %+v", before, st)
	}
	if restored, err := store.Restore(time.Now()); err != nil || restored.Before(before.Add(-50*time.Millisecond)) {
		t.Fatalf("stored acknowledgement restores as %v (%v), want about %v", restored, err, before)
	}
	if err := r.Renew(ctx); err != nil {
		t.Fatalf("second renewal (update): %v", err)
	}

	// roam-detector revokes the Lease with a conditional update.
	leases := cs.CoordinationV1().Leases(fence.DefaultLeaseNamespace)
	cur, err := leases.Get(ctx, "robot-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.HolderIdentity = ptr.To(fence.RevokedHolder)
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ackBefore := l.State().LastAck
	if err := r.Renew(ctx); err != nil {
		t.Fatalf("renewal after the revocation: %v", err)
	}
	if st := l.State(); !st.Revoked || !st.LastAck.Equal(ackBefore) {
		t.Fatalf("after a revocation: %+v, want revoked with no new acknowledgement", st)
	}
	if restored, err := store.Restore(time.Now()); err != nil || !restored.IsZero() {
		t.Fatalf("a restart after the revocation restores %v (%v), want expired", restored, err)
	}
	// The next renewal takes the Lease back.
	if err := r.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.State(); st.Revoked || !st.LastAck.After(ackBefore) {
		t.Fatalf("renewal after the revocation was seen: %+v", st)
	}
	got, err := leases.Get(ctx, "robot-1", metav1.GetOptions{})
	if err != nil || ptr.Deref(got.Spec.HolderIdentity, "") != "robot-1" {
		t.Fatalf("lease holder %v (%v), want robot-1", got.Spec.HolderIdentity, err)
	}
}
