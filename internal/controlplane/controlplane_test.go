package controlplane_test

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

func TestAPIServerReportsPinnedVersion(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{})
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("GET /version: %v", err)
	}
	want := os.Getenv("ROAM_KUBE_VERSION") // set by the Makefile (make test-compat: the next minor)
	if want == "" {
		want = "v1.34.4"
	}
	if v.GitVersion != want {
		t.Fatalf("/version gitVersion = %q, want %s (are the tools in $ROAM_BIN_DIR built with the version ldflags?)", v.GitVersion, want)
	}
}

func TestControllerManagerRunsReplicaSets(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{ControllerManager: true})
	ctx := context.Background()
	labels := map[string]string{"app": "hello"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/hello"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=hello"})
		if err != nil {
			return false, err
		}
		pods = list.Items
		return len(pods) == 3, nil
	})
	if err != nil {
		t.Fatalf("want 3 pods from the ReplicaSet controller, have %d: %v", len(pods), err)
	}
	for _, p := range pods {
		owner := metav1.GetControllerOf(&p)
		if owner == nil || owner.Kind != "ReplicaSet" || !strings.HasPrefix(owner.Name, "hello-") {
			t.Errorf("pod %s owner = %+v, want ReplicaSet hello-*", p.Name, owner)
		}
	}
}

func TestStopLeavesNoProcessOrDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cp, err := controlplane.Start(context.Background(), controlplane.Options{ControllerManager: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	pids := controlplane.ChildPIDs()
	if len(pids) != 3 {
		t.Errorf("want 3 children (etcd, kube-apiserver, kube-controller-manager), found %v", pids)
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("child process %d still running after Stop", pid)
		}
	}
	var left []string
	_ = walkDir(tmp, func(p string) { left = append(left, p) })
	if len(left) > 0 {
		t.Errorf("temporary files left after Stop: %v", left)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestMissingBinaryNamesMakeTools(t *testing.T) {
	_, err := controlplane.Start(context.Background(), controlplane.Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Start with an empty bin dir: err = %v, want one naming `make tools`", err)
	}
}

// walkDir calls fn for every file below dir, directories that are empty
// included, ignoring dir itself and the empty record directory.
func walkDir(dir string, fn func(string)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := dir + "/" + e.Name()
		if e.IsDir() {
			sub, _ := os.ReadDir(p)
			if len(sub) == 0 && e.Name() != "roam-controlplane.d" {
				fn(p)
			}
			_ = walkDir(p, fn)
			continue
		}
		fn(p)
	}
	return nil
}
