package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushOptions say where `push` sends the archives.
type PushOptions struct {
	// Registry is the repository prefix, e.g. registry.example.com/roam:
	// roam-scheduler.tar goes to registry.example.com/roam/roam-scheduler.
	Registry string
	// Tag overrides the archive's own tag ("" keeps it).
	Tag string
	// Insecure allows plain HTTP (a local registry).
	Insecure bool
	// Remote are extra options (authentication, transport); default: the
	// Docker config's credentials (~/.docker/config.json, credential helpers).
	Remote []remote.Option
	Log    io.Writer
}

// Pushed is one image index pushed.
type Pushed struct {
	Command string
	// Ref is the tag pushed, Repository the same without the tag, Digest
	// the index's digest.
	Ref, Repository, Digest string
}

// Push uploads the image index of every archive, unchanged (same digests
// as in the archive), to o.Registry/<command>:<tag>.
func Push(ctx context.Context, o PushOptions, archives []string) ([]Pushed, error) {
	if o.Registry == "" {
		return nil, fmt.Errorf("no registry: set REGISTRY, e.g. make push REGISTRY=registry.example.com/roam")
	}
	if len(archives) == 0 {
		return nil, fmt.Errorf("no image archives to push: run make images first")
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if len(o.Remote) == 0 {
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	opts = append(opts, o.Remote...)
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	tmp, err := os.MkdirTemp("", "roam-push-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var out []Pushed
	for _, path := range archives {
		a, err := ReadArchive(path, tmp)
		if err != nil {
			return nil, err
		}
		cmd := strings.TrimSuffix(filepath.Base(path), ".tar")
		tag := o.Tag
		if tag == "" {
			tag = a.Tag
		}
		if tag == "" {
			return nil, fmt.Errorf("%s: the archive names no tag; pass one", path)
		}
		ref, err := name.NewTag(strings.TrimSuffix(o.Registry, "/")+"/"+cmd+":"+tag, nameOpts...)
		if err != nil {
			return nil, fmt.Errorf("image reference for %s: %w", path, err)
		}
		if err := remote.WriteIndex(ref, a.Index, opts...); err != nil {
			return nil, fmt.Errorf("pushing %s to %s: %w", path, ref, err)
		}
		d, err := a.Index.Digest()
		if err != nil {
			return nil, err
		}
		os.RemoveAll(a.Dir)
		p := Pushed{Command: cmd, Ref: ref.Name(), Repository: ref.Context().Name(), Digest: d.String()}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "pushed %s@%s\n", p.Ref, p.Digest)
		}
		out = append(out, p)
	}
	return out, nil
}
