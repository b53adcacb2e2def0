package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KubeconfigFile is the name, in the output directory, of the admin
// kubeconfig of the run's control plane. It exists while the control plane
// runs, so real clients (kubectl, roamctl) can watch the fleet.
const KubeconfigFile = "kubeconfig"

// publishKubeconfig copies the control plane's admin kubeconfig (src,
// inside a temporary directory) to outDir/KubeconfigFile and returns its
// absolute path and a function that removes it again.
func publishKubeconfig(src, outDir string) (string, func(), error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", nil, fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	dst, err := filepath.Abs(filepath.Join(outDir, KubeconfigFile))
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return "", nil, fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	return dst, func() { _ = os.Remove(dst) }, nil
}

// WatchCommands are the commands that watch the run's fleet with real
// clients, given the published kubeconfig and the directory of roam's
// binaries (roamctl, and kubectl-roam for `kubectl roam`).
func WatchCommands(kubeconfig, roamBinDir string) string {
	kc := shellQuote(kubeconfig)
	bin := shellQuote(roamBinDir)
	var b strings.Builder
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s get nodes -L roam.dev/context -w\n", kc)
	fmt.Fprintf(&b, "  %s/roamctl fleet --watch --kubeconfig %s\n", bin, kc)
	fmt.Fprintf(&b, "  PATH=%s:$PATH kubectl roam fleet --watch --kubeconfig %s\n", bin, kc)
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+:@%=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
