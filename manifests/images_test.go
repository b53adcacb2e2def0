package manifests_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestImagesSettable: the Deployments name their images as the base's
// images entries do, so `kustomize edit set image roam-scheduler=...`
// (which rewrites the entry of that name) changes exactly their image.
func TestImagesSettable(t *testing.T) {
	// The base, copied into memory, with its images entries edited as
	// `kustomize edit set image` edits them.
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(baseDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) == ".go" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/m", path), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := mem.ReadFile("/m/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	set := map[string]types.Image{
		schedulerName: {Name: schedulerName, NewName: "registry.example.com/roam/roam-scheduler", NewTag: "v1.2.3"},
		detectorName:  {Name: detectorName, NewName: "registry.example.com/roam/roam-detector", Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	}
	found := 0
	for i, img := range k.Images {
		if s, ok := set[img.Name]; ok {
			k.Images[i] = s
			found++
		}
	}
	if found != len(set) {
		t.Fatalf("the base's images entries %v lack roam-scheduler or roam-detector", k.Images)
	}
	out, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteFile("/m/kustomization.yaml", out); err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/m")
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	for name, want := range map[string]string{
		schedulerName: "registry.example.com/roam/roam-scheduler:v1.2.3",
		detectorName:  "registry.example.com/roam/roam-detector@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	} {
		d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", systemNamespace, name))
		if got := d.Spec.Template.Spec.Containers[0].Image; got != want {
			t.Errorf("%s image %q, want %q", name, got, want)
		}
	}
	// Unchanged, the base runs the tag `make images` gives its archives.
	base := build(t, baseDir)
	for _, name := range []string{schedulerName, detectorName} {
		d := convert[appsv1.Deployment](t, find(t, base, "Deployment", systemNamespace, name))
		if got := d.Spec.Template.Spec.Containers[0].Image; got != name+":dev" {
			t.Errorf("base %s image %q, want %s:dev", name, got, name)
		}
	}
}
