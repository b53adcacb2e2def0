package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Commands are roam's binaries that ship as images, in build order. Those
// without a cmd/<name> directory in the checkout are skipped.
var Commands = []string{"roam-scheduler", "roam-detector", "roam-agent"}

// Image layout inside every image.
const (
	// BinDir holds the binary; the entrypoint is BinDir/<command>.
	BinDir = "/usr/local/bin"
	// User is the numeric user and group the image runs as: non-root, the
	// "nonroot" user of distroless images.
	User = "65532:65532"
	// VersionPackage is where roam's binaries keep the version stamped at
	// link time (-X VersionPackage.version=...).
	VersionPackage = "github.com/roam-dev/roam/internal/version"
	// KubeVersionPackage is client-go's and the scheduler's version package.
	KubeVersionPackage = "k8s.io/component-base/version"
)

// OCI annotation and label keys (opencontainers image-spec, annotations.md).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelTitle    = "org.opencontainers.image.title"
)

// BuildOptions say what `build` makes.
type BuildOptions struct {
	// Root is the roam checkout (the directory of its go.mod).
	Root string
	// OutDir receives <command>.tar per image.
	OutDir string
	// Commands to build; empty: every one of Commands present in Root/cmd.
	Commands []string
	// Platforms of the image index, e.g. linux/amd64 and linux/arm64.
	Platforms []v1.Platform
	// DockerPlatform is the platform listed in the archive's manifest.json,
	// the one a Docker engine without the containerd image store loads.
	DockerPlatform v1.Platform
	// Version and Revision are stamped into the binaries and the labels.
	Version, Revision string
	// Source is the org.opencontainers.image.source label.
	Source string
	// Tag names the images inside the archives (<command>:<Tag>).
	Tag string
	// KubeVersion is stamped into k8s.io/component-base/version (the
	// Kubernetes version the scheduler reports); "" leaves it unset.
	KubeVersion string
	// Created is the images' creation time and every file's mtime
	// (fixed, so the same sources give the same image digests).
	Created time.Time
	// Go is the go command (default "go").
	Go string
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DefaultPlatforms are the platforms `make images` builds.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Built is one image archive written by Build.
type Built struct {
	Command string
	Archive string
	// Ref is the image name inside the archive, e.g. roam-scheduler:dev.
	Ref   string
	Index v1.ImageIndex
}

// Build compiles the commands for every platform and writes one OCI image
// archive per command.
func Build(ctx context.Context, o BuildOptions) ([]Built, error) {
	if err := o.complete(); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "roam-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// bins[platform][command] = path of the binary
	bins := map[string]map[string]string{}
	for _, p := range o.Platforms {
		dir := filepath.Join(work, p.OS+"_"+p.Architecture)
		start := time.Now()
		if err := o.compile(ctx, p, dir); err != nil {
			return nil, err
		}
		o.logf("compiled %s for %s in %s", strings.Join(o.Commands, ", "), p, time.Since(start).Round(time.Second))
		bins[p.String()] = map[string]string{}
		for _, c := range o.Commands {
			bins[p.String()][c] = filepath.Join(dir, c)
		}
	}
	base, err := baseLayer(o.Created)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	var out []Built
	for _, c := range o.Commands {
		start := time.Now()
		idx, err := o.index(c, base, func(p v1.Platform) string { return bins[p.String()][c] })
		if err != nil {
			return nil, err
		}
		b := Built{Command: c, Archive: filepath.Join(o.OutDir, c+".tar"), Ref: c + ":" + o.Tag, Index: idx}
		if err := WriteArchive(b.Archive, b.Ref, idx, o.DockerPlatform, o.Created); err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		d, _ := idx.Digest()
		o.logf("wrote %s (%s, %s) in %s", b.Archive, b.Ref, d, time.Since(start).Round(time.Second))
		out = append(out, b)
	}
	return out, nil
}

func (o *BuildOptions) complete() error {
	if o.Root == "" || o.OutDir == "" {
		return fmt.Errorf("the checkout root and the output directory are required")
	}
	if _, err := os.Stat(filepath.Join(o.Root, "go.mod")); err != nil {
		return fmt.Errorf("%s is not roam's checkout: %w", o.Root, err)
	}
	if len(o.Commands) == 0 {
		for _, c := range Commands {
			if fi, err := os.Stat(filepath.Join(o.Root, "cmd", c)); err == nil && fi.IsDir() {
				o.Commands = append(o.Commands, c)
			}
		}
		if len(o.Commands) == 0 {
			return fmt.Errorf("none of %s exists under %s/cmd", strings.Join(Commands, ", "), o.Root)
		}
	}
	for _, c := range o.Commands {
		if _, err := os.Stat(filepath.Join(o.Root, "cmd", c)); err != nil {
			return fmt.Errorf("command %s: %w", c, err)
		}
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if o.DockerPlatform.OS == "" {
		o.DockerPlatform = o.Platforms[0]
	}
	found := false
	for _, p := range o.Platforms {
		if p.OS != "linux" {
			return fmt.Errorf("platform %s: only linux images are built", p)
		}
		found = found || p.Equals(o.DockerPlatform)
	}
	if !found {
		return fmt.Errorf("docker platform %s is not one of the platforms built", o.DockerPlatform)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Tag == "" {
		o.Tag = "dev"
	}
	if o.Source == "" {
		o.Source = "https://github.com/roam-dev/roam"
	}
	if o.Go == "" {
		o.Go = "go"
	}
	return nil
}

func (o *BuildOptions) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// Ldflags are the linker flags of every image's binary: stripped, with
// roam's version (and the Kubernetes version when set) stamped in.
func (o *BuildOptions) Ldflags() string {
	f := []string{"-s", "-w",
		"-X", VersionPackage + ".version=" + o.Version,
		"-X", VersionPackage + ".revision=" + o.Revision,
	}
	if o.KubeVersion != "" {
		parts := strings.SplitN(strings.TrimPrefix(o.KubeVersion, "v"), ".", 3)
		f = append(f, "-X", KubeVersionPackage+".gitVersion="+o.KubeVersion,
			"-X", KubeVersionPackage+".gitTreeState=clean",
			"-X", KubeVersionPackage+".buildDate=1970-01-01T00:00:00Z")
		if len(parts) >= 2 {
			f = append(f, "-X", KubeVersionPackage+".gitMajor="+parts[0], "-X", KubeVersionPackage+".gitMinor="+parts[1])
		}
	}
	return strings.Join(f, " ")
}

// compile builds every command for p into dir: static (CGO_ENABLED=0),
// reproducible (-trimpath, no VCS stamp).
func (o *BuildOptions) compile(ctx context.Context, p v1.Platform, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", o.Ldflags(), "-o", dir + "/"}
	for _, c := range o.Commands {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, o.Go, args...)
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOFLAGS=-buildvcs=false")
	if p.Variant != "" && p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (GOOS=%s GOARCH=%s): %w\n%s", strings.Join(args, " "), p.OS, p.Architecture, err, stderr.String())
	}
	return nil
}

// labels are the OCI labels of c's image config.
func (o *BuildOptions) labels(c string) map[string]string {
	l := map[string]string{
		LabelSource:  o.Source,
		LabelVersion: o.Version,
		LabelTitle:   c,
	}
	if o.Revision != "" {
		l[LabelRevision] = o.Revision
	}
	return l
}

// annotations are the same keys on the image index, where registries and
// `crane manifest` show them without fetching a config.
func (o *BuildOptions) annotations(c string) map[string]string { return o.labels(c) }

// index assembles c's image index: one image per platform, the binary
// for p at bin(p).
func (o *BuildOptions) index(c string, base v1.Layer, bin func(p v1.Platform) string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		img, err := o.image(c, p, base, bin(p))
		if err != nil {
			return nil, fmt.Errorf("%s for %s: %w", c, p, err)
		}
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	return mutate.Annotations(idx, o.annotations(c)).(v1.ImageIndex), nil
}

// image assembles c's image for p: the base layer, then the binary.
func (o *BuildOptions) image(c string, p v1.Platform, base v1.Layer, bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	app, err := layer(o.Created, []file{
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(BinDir, "/") + "/" + c, mode: 0o755, data: data},
	})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Config: v1.Config{
			User:       User,
			Entrypoint: []string{BinDir + "/" + c},
			Env:        []string{"PATH=" + BinDir},
			WorkingDir: "/",
			Labels:     o.labels(c),
		},
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "roam images: /etc/passwd, /etc/group, /tmp", Comment: "base"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "roam images: " + BinDir + "/" + c, Comment: "go build -trimpath CGO_ENABLED=0"}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, created)
}

// baseLayer replaces a base image: the non-root user's passwd and group
// entries (so tools and libraries that look the user up find it) and a
// world-writable /tmp.
func baseLayer(created time.Time) (v1.Layer, error) {
	return layer(created, []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: 65532},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
}

type file struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// layer is an OCI layer (gzip) of files, every mtime at created.
func layer(created time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: created, Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
