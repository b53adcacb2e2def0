package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations on index.json's entry that name the image for importers.
const (
	// AnnotationContainerdName is the full reference containerd (ctr
	// images import, kind load image-archive, Docker with the containerd
	// image store) gives the image.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationRefName is the OCI image-layout's reference name: the tag.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// dockerManifest is one entry of a docker-save manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes idx as an OCI image-layout tarball (oci-layout,
// index.json, blobs/sha256/...) naming it ref, plus a docker-save
// manifest.json listing the image of dockerPlatform under the same blobs —
// the layout `docker save` itself writes since Docker 25. Readers:
//   - ctr images import and kind load image-archive read index.json and
//     import every platform, named by io.containerd.image.name;
//   - docker load reads manifest.json (classic image store: one platform)
//     or index.json (containerd image store: every platform).
//
// Every tar entry's mtime is created, so equal inputs give equal bytes.
func WriteArchive(path, ref string, idx v1.ImageIndex, dockerPlatform v1.Platform, created time.Time) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	dir, err := os.MkdirTemp("", "roam-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationContainerdName: fullName(tag),
		AnnotationRefName:        tag.TagStr(),
	})); err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	dm, err := dockerEntry(idx, dockerPlatform, tag)
	if err != nil {
		return err
	}
	raw, err := json.Marshal([]dockerManifest{dm})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644); err != nil {
		return err
	}
	return tarDir(dir, path, created)
}

// dockerEntry is the manifest.json entry of idx's image for platform p.
func dockerEntry(idx v1.ImageIndex, p v1.Platform, tag name.Tag) (dockerManifest, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return dockerManifest{}, err
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || !d.Platform.Equals(p) {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return dockerManifest{}, err
		}
		m, err := img.Manifest()
		if err != nil {
			return dockerManifest{}, err
		}
		dm := dockerManifest{Config: blobPath(m.Config.Digest), RepoTags: []string{shortName(tag)}}
		for _, l := range m.Layers {
			dm.Layers = append(dm.Layers, blobPath(l.Digest))
		}
		return dm, nil
	}
	return dockerManifest{}, fmt.Errorf("the index has no image for %s", p)
}

// fullName is tag as containerd names images: docker.io/library/x:tag for
// a bare x:tag.
func fullName(tag name.Tag) string {
	reg := tag.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + tag.RepositoryStr() + ":" + tag.TagStr()
}

// shortName is tag as Docker prints it: x:tag for docker.io/library/x:tag.
func shortName(tag name.Tag) string {
	if tag.RegistryStr() != name.DefaultRegistry {
		return tag.Name()
	}
	return strings.TrimPrefix(tag.RepositoryStr(), "library/") + ":" + tag.TagStr()
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir writes dir's files, in lexical order, to the tarball path.
func tarDir(dir, path string, mtime time.Time) (err error) {
	var names []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	tw := tar.NewWriter(f)
	for _, p := range names {
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Size: fi.Size()}
		if fi.IsDir() {
			h.Name += "/"
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Archive is an image archive read back: its layout unpacked in Dir.
type Archive struct {
	Dir string
	// Ref is the name index.json gives the image (io.containerd.image.name).
	Ref string
	// Tag is its org.opencontainers.image.ref.name.
	Tag   string
	Index v1.ImageIndex
}

// ReadArchive unpacks the archive at path into a new directory under tmp
// and reads its one image index. The caller removes Dir.
func ReadArchive(path, tmp string) (*Archive, error) {
	dir, err := os.MkdirTemp(tmp, "roam-archive-")
	if err != nil {
		return nil, err
	}
	if err := untar(path, dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a, err := readLayout(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func readLayout(dir string) (*Archive, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	root, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("index.json lists %d entries, want 1 image index", len(im.Manifests))
	}
	d := im.Manifests[0]
	if !d.MediaType.IsIndex() {
		return nil, fmt.Errorf("index.json's entry is a %s, want an image index", d.MediaType)
	}
	idx, err := root.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	return &Archive{Dir: dir, Ref: d.Annotations[AnnotationContainerdName], Tag: d.Annotations[AnnotationRefName], Index: idx}, nil
}

// untar extracts regular files and directories of the tarball at path into
// dir, refusing any entry that would land outside it.
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(os.PathSeparator)) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
	}
}
