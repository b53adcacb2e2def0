package server_test

import (
	"os"
	"strings"
	"testing"

	"k8s.io/klog/v2/ktesting"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/scheduler/policy"
	"github.com/roam-dev/roam/scheduler/server"
)

// The manifest's configuration is what a cluster runs: one roam-scheduler
// profile with roam's plugins and Coscheduling, leader election on the
// roam-system/roam-scheduler Lease.
func TestManifestConfig(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	cfg, err := options.LoadConfigFromFile(logger, repoPath(t, "manifests/scheduler/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	le := cfg.LeaderElection
	if !le.LeaderElect || le.ResourceNamespace != "roam-system" || le.ResourceName != "roam-scheduler" {
		t.Fatalf("leader election %+v: want on, roam-system/roam-scheduler", le)
	}
	if len(cfg.Profiles) != 1 || cfg.Profiles[0].SchedulerName != "roam-scheduler" {
		t.Fatalf("profiles %+v: want one named roam-scheduler", cfg.Profiles)
	}
	p := cfg.Profiles[0]
	enabled := func(set config.PluginSet, name string) bool {
		for _, pl := range set.Enabled {
			if pl.Name == name {
				return true
			}
		}
		return false
	}
	for _, name := range []string{policy.Name, "Coscheduling"} {
		if !enabled(p.Plugins.MultiPoint, name) {
			t.Errorf("%s not enabled at multiPoint", name)
		}
	}
	if !enabled(p.Plugins.QueueSort, "Coscheduling") {
		t.Errorf("Coscheduling does not sort the queue")
	}
	args := map[string]bool{}
	for _, pc := range p.PluginConfig {
		args[pc.Name] = pc.Args != nil
	}
	for _, name := range []string{policy.Name, "Coscheduling"} {
		if !args[name] {
			t.Errorf("no pluginConfig args for %s", name)
		}
	}
}

func TestWriteConfigOverrides(t *testing.T) {
	off := false
	path, cleanup, err := server.WriteConfig(repoPath(t, "manifests/scheduler/config.yaml"),
		server.Overrides{Kubeconfig: "/tmp/kc", LeaderElect: &off, QPS: 500, Burst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ClientConnection struct {
			Kubeconfig string  `json:"kubeconfig"`
			QPS        float32 `json:"qps"`
			Burst      int32   `json:"burst"`
		} `json:"clientConnection"`
		LeaderElection struct {
			LeaderElect  bool   `json:"leaderElect"`
			ResourceName string `json:"resourceName"`
		} `json:"leaderElection"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.ClientConnection.Kubeconfig != "/tmp/kc" || doc.ClientConnection.QPS != 500 || doc.ClientConnection.Burst != 1000 ||
		doc.LeaderElection.LeaderElect || doc.LeaderElection.ResourceName != "roam-scheduler" {
		t.Fatalf("overridden config %+v", doc)
	}
	if _, _, err := server.WriteConfig("/nonexistent/config.yaml", server.Overrides{}); err == nil || !strings.Contains(err.Error(), "reading scheduler config") {
		t.Fatalf("missing file: %v", err)
	}
}
