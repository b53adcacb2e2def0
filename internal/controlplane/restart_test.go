package controlplane_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

// kube-apiserver stops and starts again on the same etcd: what was stored
// is still there, and the admin client works again.
func TestRestartAPIServer(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before", Namespace: "default"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := cs.CoreV1().ConfigMaps("default").Get(short, "before", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("the API answered while stopped")
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if err := cp.StartAPIServer(ctx); err == nil {
		t.Error("StartAPIServer of a running API server succeeded")
	}
}
