package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
