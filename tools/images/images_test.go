package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ROAM_IMAGES_DIR points the archive test at archives `make images` wrote
// (make test sets it, with the version and revision they were built with);
// without it the test builds the images itself into a temporary directory.
const (
	envDir      = "ROAM_IMAGES_DIR"
	envVersion  = "ROAM_IMAGES_VERSION"
	envRevision = "ROAM_IMAGES_REVISION"
	// envPlatforms lists the platforms the archives were built for
	// (default: DefaultPlatforms).
	envPlatforms = "ROAM_IMAGES_PLATFORMS"
)

// TestBuiltArchives reads back every image archive of roam's binaries and
// checks it as the importers would see it, then runs the amd64 binary.
func TestBuiltArchives(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir, version, revision := os.Getenv(envDir), os.Getenv(envVersion), os.Getenv(envRevision)
	if dir == "" {
		if testing.Short() {
			t.Skip("builds every binary for two platforms (minutes cold); skipped with -short; make test runs it on make images' output")
		}
		dir, version, revision = t.TempDir(), "v0.0.0-test", "0123456789abcdef0123456789abcdef01234567"
		start := time.Now()
		if _, err := Build(context.Background(), BuildOptions{Root: root, OutDir: dir, Version: version, Revision: revision, Log: testWriter{t}}); err != nil {
			t.Fatal(err)
		}
		t.Logf("built the images in %s", time.Since(start).Round(time.Second))
	}
	if version == "" {
		t.Fatalf("%s is set but %s is not: the test needs the version the archives were built with", envDir, envVersion)
	}
	platforms := DefaultPlatforms
	if p := os.Getenv(envPlatforms); p != "" {
		if platforms, err = parsePlatforms(p); err != nil {
			t.Fatalf("%s: %v", envPlatforms, err)
		}
	}
	var want []string
	for _, c := range Commands {
		if _, err := os.Stat(filepath.Join(root, "cmd", c)); err == nil {
			want = append(want, c)
		}
	}
	if len(want) < 2 {
		t.Fatalf("found only %v under %s/cmd", want, root)
	}
	for _, c := range want {
		t.Run(c, func(t *testing.T) {
			path := filepath.Join(dir, c+".tar")
			a, err := ReadArchive(path, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if a.Ref != "docker.io/library/"+c+":dev" && !strings.HasSuffix(a.Ref, "/"+c+":"+a.Tag) {
				t.Errorf("index.json names the image %q (tag %q)", a.Ref, a.Tag)
			}
			images := checkIndex(t, a.Index, c, version, revision, platforms)
			if images["linux/amd64"] == nil {
				t.Skipf("no linux/amd64 image to run (platforms %v)", platforms)
			}
			checkDockerManifest(t, path, a, images["linux/amd64"])

			// The amd64 binary is static and reports the build's version.
			bin := extractBinary(t, images["linux/amd64"], c)
			out, err := exec.Command(bin, "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s --version: %v\n%s", c, err, out)
			}
			got := string(out)
			if !strings.Contains(got, c+" "+version+" ") || (revision != "" && !strings.Contains(got, revision)) {
				t.Errorf("%s --version = %q, want the program name, version %s and revision %s", c, got, version, revision)
			}
		})
	}
}

// TestArchiveRoundTripAndPush assembles an index from small stand-in
// binaries, writes and reads back its archive, and pushes it to a real
// registry implementation (go-containerregistry's, on loopback), then pulls
// it back by the printed reference.
func TestArchiveRoundTripAndPush(t *testing.T) {
	o := BuildOptions{Version: "v1.2.3", Revision: "feedface", Tag: "dev", Source: "https://example.com/roam", Created: time.Unix(1700000000, 0).UTC()}
	base, err := baseLayer(o.Created)
	if err != nil {
		t.Fatal(err)
	}
	o.Platforms = DefaultPlatforms
	bins := t.TempDir()
	idx, err := o.index("roam-x", base, func(p v1.Platform) string {
		bin := filepath.Join(bins, p.Architecture)
		if err := os.WriteFile(bin, []byte("binary for "+p.Architecture), 0o755); err != nil {
			t.Fatal(err)
		}
		return bin
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "roam-x.tar")
	if err := WriteArchive(path, "roam-x:dev", idx, DefaultPlatforms[0], o.Created); err != nil {
		t.Fatal(err)
	}
	// Deterministic: the same inputs give the same bytes.
	again := filepath.Join(dir, "again.tar")
	if err := WriteArchive(again, "roam-x:dev", idx, DefaultPlatforms[0], o.Created); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(path)
	b2, _ := os.ReadFile(again)
	if !bytes.Equal(b1, b2) {
		t.Error("two writes of the same index differ")
	}
	a, err := ReadArchive(path, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.Ref != "docker.io/library/roam-x:dev" || a.Tag != "dev" {
		t.Errorf("names: %q, %q", a.Ref, a.Tag)
	}
	images := checkIndex(t, a.Index, "roam-x", o.Version, o.Revision, DefaultPlatforms)
	checkDockerManifest(t, path, a, images["linux/amd64"])
	if got := readFile(t, images["linux/arm64"], "usr/local/bin/roam-x"); string(got) != "binary for arm64" {
		t.Errorf("arm64 image's binary = %q", got)
	}
	passwd := readFile(t, images["linux/amd64"], "etc/passwd")
	if !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks the non-root user:\n%s", passwd)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	var log bytes.Buffer
	pushed, err := Push(context.Background(), PushOptions{Registry: u.Host + "/roam", Tag: "v1.2.3", Insecure: true, Log: &log}, []string{path})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := a.Index.Digest()
	if len(pushed) != 1 || pushed[0].Ref != u.Host+"/roam/roam-x:v1.2.3" || pushed[0].Digest != want.String() {
		t.Fatalf("pushed %+v, want %s/roam/roam-x:v1.2.3 at %s", pushed, u.Host, want)
	}
	ref, err := name.ParseReference(pushed[0].Repository+"@"+pushed[0].Digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pulling back %s: %v", ref, err)
	}
	checkIndex(t, got, "roam-x", o.Version, o.Revision, DefaultPlatforms)

	// Bad input is named.
	if _, err := Push(context.Background(), PushOptions{}, []string{path}); err == nil || !strings.Contains(err.Error(), "REGISTRY") {
		t.Errorf("push without a registry: %v", err)
	}
	if _, err := ReadArchive(filepath.Join(dir, "missing.tar"), t.TempDir()); err == nil {
		t.Error("reading a missing archive succeeded")
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	root, _ := filepath.Abs("../..")
	for _, tc := range []struct {
		o    BuildOptions
		want string
	}{
		{BuildOptions{Root: root}, "output directory"},
		{BuildOptions{Root: t.TempDir(), OutDir: t.TempDir()}, "not roam's checkout"},
		{BuildOptions{Root: root, OutDir: t.TempDir(), Commands: []string{"roam-nope"}}, "roam-nope"},
		{BuildOptions{Root: root, OutDir: t.TempDir(), Platforms: []v1.Platform{{OS: "windows", Architecture: "amd64"}}}, "only linux"},
		{BuildOptions{Root: root, OutDir: t.TempDir(), DockerPlatform: v1.Platform{OS: "linux", Architecture: "s390x"}}, "not one of the platforms"},
	} {
		if _, err := Build(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v) = %v, want an error naming %q", tc.o, err, tc.want)
		}
	}
}

// checkIndex checks an image index of command c and returns its images by
// platform.
func checkIndex(t *testing.T, idx v1.ImageIndex, c, version, revision string, platforms []v1.Platform) map[string]v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", im.MediaType)
	}
	if im.Annotations[LabelVersion] != version || im.Annotations[LabelRevision] != revision {
		t.Errorf("index annotations %v", im.Annotations)
	}
	images := map[string]v1.Image{}
	var got, want []string
	for _, p := range platforms {
		want = append(want, p.String())
	}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		got = append(got, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture {
			t.Errorf("%s: config says %s/%s", d.Platform, cf.OS, cf.Architecture)
		}
		if cf.Config.User != "65532:65532" {
			t.Errorf("%s: user %q, want 65532:65532", d.Platform, cf.Config.User)
		}
		if ep := cf.Config.Entrypoint; !reflect.DeepEqual(ep, []string{"/usr/local/bin/" + c}) {
			t.Errorf("%s: entrypoint %q", d.Platform, ep)
		}
		for k, v := range map[string]string{LabelSource: "", LabelVersion: version, LabelRevision: revision} {
			if got, ok := cf.Config.Labels[k]; !ok || (v != "" && got != v) {
				t.Errorf("%s: label %s = %q, want %q", d.Platform, k, got, v)
			}
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("%s: media types %s, %s", d.Platform, m.MediaType, m.Config.MediaType)
		}
		images[d.Platform.String()] = img
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("platforms %v, want %v", got, want)
	}
	return images
}

// checkDockerManifest reads the archive as a docker-save tarball
// (manifest.json), as docker load does, and checks it names the same
// image as the index's amd64 entry.
func checkDockerManifest(t *testing.T, path string, a *Archive, amd64 v1.Image) {
	t.Helper()
	short := strings.TrimPrefix(a.Ref, "docker.io/library/")
	tag, err := name.NewTag(short)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("reading %s as docker load does (manifest.json, %s): %v", path, short, err)
	}
	got, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd64.ConfigName()
	if got != want {
		t.Errorf("manifest.json's config %s, want the amd64 image's %s", got, want)
	}
	l1, _ := img.Layers()
	l2, _ := amd64.Layers()
	if len(l1) != len(l2) {
		t.Fatalf("manifest.json lists %d layers, the amd64 image %d", len(l1), len(l2))
	}
	for i := range l1 {
		d1, _ := l1[i].DiffID()
		d2, _ := l2[i].DiffID()
		if d1 != d2 {
			t.Errorf("layer %d: %s vs %s", i, d1, d2)
		}
	}
}

// extractBinary writes c's binary out of img, checks it is a static ELF
// for the image's architecture, and returns its path.
func extractBinary(t *testing.T, img v1.Image, c string) string {
	t.Helper()
	data := readFile(t, img, "usr/local/bin/"+c)
	path := filepath.Join(t.TempDir(), c)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", c, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("%s: machine %s, want x86-64", c, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has an interpreter)", c)
		}
	}
	return path
}

// readFile returns file name from img's flattened filesystem.
func readFile(t *testing.T, img v1.Image, name string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the image", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
