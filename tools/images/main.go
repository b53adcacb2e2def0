// Command images builds roam's container images without a container
// engine, with go-containerregistry, and pushes them:
//
//	go run . build -root ../.. -out ../../bin/images [-version v0.1.0 -revision <commit>] [-tag dev]
//	go run . push -registry registry.example.com/roam [-tag v0.1.0] ../../bin/images/*.tar
//
// build cross-compiles roam-scheduler, roam-detector and roam-agent (those
// present in the checkout) as static binaries (CGO_ENABLED=0, -trimpath)
// for every platform, puts each on an empty base with a non-root user
// (65532) and OCI labels, and writes one multi-platform image index per
// binary as an OCI image-layout tarball, <out>/<binary>.tar, that docker
// load, ctr images import and kind load image-archive accept. push uploads
// those indexes unchanged. `make images` and `make push` run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const usage = `usage:
  images build -root DIR -out DIR [-version V] [-revision R] [-tag T] [-platforms linux/amd64,linux/arm64] [-commands a,b]
  images push -registry REGISTRY [-tag T] [-insecure] ARCHIVE...
`

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "build":
		err = runBuild(ctx, args[1:], stdout, stderr)
	case "push":
		err = runPush(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "images: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "images %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o BuildOptions
	fs.StringVar(&o.Root, "root", "", "roam checkout (directory of its go.mod)")
	fs.StringVar(&o.OutDir, "out", "", "directory for <binary>.tar")
	fs.StringVar(&o.Version, "version", "dev", "version stamped into the binaries and the org.opencontainers.image.version label")
	fs.StringVar(&o.Revision, "revision", "", "source revision (commit) for the binaries and the org.opencontainers.image.revision label")
	fs.StringVar(&o.Source, "source", "https://github.com/roam-dev/roam", "org.opencontainers.image.source label")
	fs.StringVar(&o.Tag, "tag", "dev", "tag of the images inside the archives (<binary>:<tag>)")
	fs.StringVar(&o.KubeVersion, "kube-version", "", "Kubernetes version stamped into k8s.io/component-base/version")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "platforms of each image index")
	dockerPlatform := fs.String("docker-platform", "linux/amd64", "platform listed in manifest.json (what docker load loads without the containerd image store)")
	commands := fs.String("commands", "", "binaries to build (default: every one of "+strings.Join(Commands, ", ")+" present)")
	epoch := fs.Int64("created", sourceDateEpoch(), "creation time of the images in Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	dp, err := v1.ParsePlatform(*dockerPlatform)
	if err != nil {
		return fmt.Errorf("-docker-platform: %w", err)
	}
	o.DockerPlatform = *dp
	if *commands != "" {
		o.Commands = strings.Split(*commands, ",")
	}
	o.Created = time.Unix(*epoch, 0).UTC()
	o.Log = stdout
	_, err = Build(ctx, o)
	return err
}

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o PushOptions
	fs.StringVar(&o.Registry, "registry", "", "repository prefix, e.g. registry.example.com/roam")
	fs.StringVar(&o.Tag, "tag", "", "tag to push (default: the archive's)")
	fs.BoolVar(&o.Insecure, "insecure", false, "allow a plain-HTTP registry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Log = stdout
	pushed, err := Push(ctx, o, fs.Args())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nto deploy these exact images:\n  cd manifests")
	for _, p := range pushed {
		fmt.Fprintf(stdout, "  kustomize edit set image %s=%s@%s\n", p.Command, p.Repository, p.Digest)
	}
	return nil
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, fmt.Errorf("-platforms %q: %w", f, err)
		}
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-platforms: none given")
	}
	return out, nil
}

func sourceDateEpoch() int64 {
	n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
