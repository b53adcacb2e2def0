package controlplane

import (
	"context"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// crdServeTimeout bounds the wait for a new CRD's resource to be served.
const crdServeTimeout = time.Minute

// InstallCRDs creates the CustomResourceDefinitions in the YAML files at
// paths (e.g. manifests/crds, whose PodGroup roam-scheduler's Coscheduling
// watches) and waits until each one's first version is served.
func InstallCRDs(ctx context.Context, cfg *rest.Config, paths ...string) error {
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
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, crdServeTimeout, true, func(ctx context.Context) (bool, error) {
			_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			return err == nil, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not served: %w", gvr, err)
		}
	}
	return nil
}
