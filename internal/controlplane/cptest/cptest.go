// Package cptest gives integration tests a real control plane that is
// stopped when the test ends, pass or fail.
package cptest

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/roam-dev/roam/internal/controlplane"
)

// Start starts a control plane for t and registers its Stop with t.Cleanup.
// It skips the test under `go test -short`. Child process output goes to the
// test log when ROAM_CONTROLPLANE_LOGS is set.
func Start(t testing.TB, opts controlplane.Options) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs a control plane (skipped with -short)")
	}
	if os.Getenv("ROAM_CONTROLPLANE_LOGS") != "" && opts.Output == nil {
		opts.Output = os.Stderr
	}
	cp, err := controlplane.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping control plane: %v", err)
		}
	})
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cp, cs
}

// UpdateNode reads node name, applies mutate and writes it back, retrying on
// conflicts: controllers (kube-controller-manager's node lifecycle, roam's
// detector) write Nodes concurrently with tests.
func UpdateNode(ctx context.Context, cs kubernetes.Interface, name string, mutate func(*corev1.Node)) (*corev1.Node, error) {
	return updateNode(ctx, cs, name, mutate, false)
}

// UpdateNodeStatus is UpdateNode for the status subresource.
func UpdateNodeStatus(ctx context.Context, cs kubernetes.Interface, name string, mutate func(*corev1.Node)) (*corev1.Node, error) {
	return updateNode(ctx, cs, name, mutate, true)
}

func updateNode(ctx context.Context, cs kubernetes.Interface, name string, mutate func(*corev1.Node), status bool) (*corev1.Node, error) {
	var out *corev1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(n)
		if status {
			out, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		} else {
			out, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("updating node %s: %w", name, err)
	}
	return out, nil
}
