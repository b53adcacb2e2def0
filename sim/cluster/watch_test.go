package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPublishKubeconfig(t *testing.T) {
	src := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := os.WriteFile(src, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	path, unpublish, err := publishKubeconfig(src, out)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(out, KubeconfigFile) {
		t.Errorf("path %s, want %s", path, filepath.Join(out, KubeconfigFile))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v: an admin credential must be private", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(path); string(data) != "apiVersion: v1\nkind: Config\n" {
		t.Errorf("content %q", data)
	}
	unpublish()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("kubeconfig still there after the run: %v", err)
	}
	if _, _, err := publishKubeconfig(filepath.Join(out, "missing"), out); err == nil {
		t.Error("publishing a missing kubeconfig succeeded")
	}
}

func TestWatchCommands(t *testing.T) {
	got := WatchCommands("/tmp/out dir/kubeconfig", "/src/roam/bin")
	for _, want := range []string{
		"kubectl --kubeconfig '/tmp/out dir/kubeconfig' get nodes -L roam.dev/context -w\n",
		"/src/roam/bin/roamctl fleet --watch --kubeconfig '/tmp/out dir/kubeconfig'\n",
		"PATH=/src/roam/bin:$PATH kubectl roam fleet --watch --kubeconfig '/tmp/out dir/kubeconfig'\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("commands lack %q:\n%s", want, got)
		}
	}
	if q := shellQuote("it's"); q != `'it'\''s'` {
		t.Errorf("shellQuote = %s", q)
	}
}
