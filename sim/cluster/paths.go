package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/internal/controlplane"
)

// RepoRoot walks up from the working directory to roam's go.mod, else
// from the running binary's directory (bin/roam-sim of a checkout).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := rootAbove(wd)
	if err == nil {
		return root, nil
	}
	if exe, eerr := os.Executable(); eerr == nil {
		if root, rerr := rootAbove(filepath.Dir(exe)); rerr == nil {
			return root, nil
		}
	}
	return "", err
}

func rootAbove(wd string) (string, error) {
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/roam-dev/roam\n") {
			return dir, nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", fmt.Errorf("no roam checkout (go.mod of github.com/roam-dev/roam) above %s", wd)
		}
	}
}

// WithRepoPaths fills in the paths left empty from the roam checkout at
// root: the scheduler config and CRDs from manifests/, binaries from bin/.
func (c *Config) WithRepoPaths(root string) {
	if c.SchedulerConfig == "" {
		c.SchedulerConfig = filepath.Join(root, "manifests", "scheduler", "config.yaml")
	}
	if c.CRDs == nil {
		c.CRDs, _ = filepath.Glob(filepath.Join(root, "manifests", "crds", "*.yaml"))
	}
	if c.RoamBinDir == "" {
		c.RoamBinDir = filepath.Join(root, "bin")
	}
	if c.ControlPlaneBinDir == "" && os.Getenv(controlplane.BinDirEnv) == "" {
		c.ControlPlaneBinDir = filepath.Join(root, "bin")
	}
}

// installCRDs creates the CRDs (roam-scheduler's Coscheduling watches
// PodGroups) and waits until they are served.
func installCRDs(ctx context.Context, cfg *rest.Config, paths []string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading CRD: %w", err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
			return fmt.Errorf("parsing CRD %s: %w", path, err)
		}
		if _, err := dyn.Resource(crds).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating CRD from %s: %w", path, err)
		}
		group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(obj.Object, "spec", "versions")
		if len(versions) == 0 {
			continue
		}
		v, _ := versions[0].(map[string]any)
		gvr := schema.GroupVersionResource{Group: group, Version: fmt.Sprint(v["name"]), Resource: plural}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			return err == nil, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not served: %w", gvr, err)
		}
	}
	return nil
}
