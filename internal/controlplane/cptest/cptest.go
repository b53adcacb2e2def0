// Package cptest gives integration tests a real control plane that is
// stopped when the test ends, pass or fail.
package cptest

import (
	"context"
	"os"
	"testing"

	"k8s.io/client-go/kubernetes"

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
