package cluster

import (
	"context"
	"fmt"
	"github.com/roam-dev/roam/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2/ktesting"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// buildRoamBinaries builds roam-scheduler and roam-detector from this
// checkout into a temporary directory, so the test works from a clean clone.
func buildRoamBinaries(t *testing.T) (root, binDir string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root = filepath.Dir(strings.TrimSpace(string(out)))
	binDir = t.TempDir()
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/roam-scheduler", "./cmd/roam-detector")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building roam-scheduler and roam-detector: %v\n%s", err, out)
	}
	return root, binDir
}

// TestClusterSmoke runs a small fleet against a real control plane with
// stock kube-controller-manager: one robot running pods of both copies is
// lost; roam's replacement must be Running by the end of the run, while the
// stock pod (50 s grace + 300 s toleration) must not be replaced yet.
func TestClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a control plane and builds roam binaries (skipped with -short)")
	}
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime
	root, binDir := buildRoamBinaries(t)
	cfg := DefaultConfig()
	cfg.Seed = 7
	cfg.Robots = 6
	cfg.Duration = 45 * time.Second
	cfg.LossAt = []time.Duration{20 * time.Second}
	cfg.SwitchAt = nil
	cfg.StartDelay = time.Second
	// Two hospital robots with three cameras each: two roam and two stock
	// pods spread over both, and the survivor has room for roam's replacement.
	cfg.Devices = []Device{{Resource: "roam.dev/camera", Share: 1, Units: 3}}
	cfg.Workloads = DefaultWorkloads(2, 1)[:1]
	cfg.RoamBinDir = binDir
	cfg.OutDir = t.TempDir()
	cfg.WithRepoPaths(root)
	var status testutil.SyncBuffer
	cfg.Status = &status
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// While the run lasts, its published kubeconfig serves real clients.
	kubeconfig := filepath.Join(cfg.OutDir, KubeconfigFile)
	listed := make(chan error, 1)
	go func() { listed <- listNodesWith(ctx, kubeconfig) }()
	res, err := Run(ctx, cfg)
	if err != nil {
		for _, f := range []string{"roam-detector.log", "roam-scheduler.log"} {
			if data, rerr := os.ReadFile(filepath.Join(cfg.OutDir, f)); rerr == nil && len(data) > 0 {
				t.Logf("%s (tail):\n%s", f, tail(string(data), 3000))
			}
		}
		t.Fatalf("Run: %v", err)
	}
	if err := <-listed; err != nil {
		t.Errorf("listing nodes with the published kubeconfig during the run: %v", err)
	}
	if _, err := os.Stat(kubeconfig); !os.IsNotExist(err) {
		t.Errorf("the kubeconfig of a stopped control plane is still published: %v", err)
	}
	if !strings.Contains(status.String(), WatchCommands(kubeconfig, binDir)) {
		t.Errorf("the run did not print the watch commands; status:\n%s", status.String())
	}
	var roamReplaced, stock, stockReplaced int
	for _, s := range res.Samples {
		t.Logf("sample: %+v", s)
		if s.Kind != "loss" {
			continue
		}
		switch s.Copy {
		case Roam:
			if s.Replaced {
				roamReplaced++
				// The steps happen in order: evicted, replacement created,
				// bound, Running.
				if !(0 <= s.Evicted && s.Evicted <= s.Created && s.Created <= s.Bound && s.Bound <= s.Seconds) {
					t.Errorf("%s: steps evicted %.2f, created %.2f, bound %.2f, running %.2f: want them in order", s.Pod, s.Evicted, s.Created, s.Bound, s.Seconds)
				}
			}
		case Stock:
			stock++
			if s.Replaced {
				stockReplaced++
			}
		}
	}
	if len(res.Lost) != 1 {
		t.Fatalf("lost robots = %d, want 1", len(res.Lost))
	}
	if roamReplaced == 0 {
		t.Errorf("no roam pod of the lost robot %s was replaced by a Running pod", res.Lost[0].Name)
	}
	if stock == 0 {
		t.Errorf("the lost robot %s ran no stock pod: the comparison is not on the same failure", res.Lost[0].Name)
	}
	if stockReplaced != 0 {
		t.Errorf("%d stock pods were replaced within %s; stock Kubernetes needs 50 s + 300 s", stockReplaced, cfg.Duration)
	}
	head := res.Headline()
	t.Logf("headline:\n%s", strings.Join(head, "\n"))
	if !strings.HasPrefix(head[0], "redeploy p99: roam ") || !strings.Contains(head[0], "stock > ") || !strings.Contains(head[0], "ratio > ") {
		t.Errorf("headline %q: want a roam figure and a lower-bound stock figure and ratio", head[0])
	}
	path, err := res.WriteFiles(cfg.OutDir)
	if err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	report, _ := os.ReadFile(path)
	if !strings.Contains(string(report), head[0]) {
		t.Errorf("report %s lacks the headline %q", path, head[0])
	}
	// Every robot's sensed state reached its Node through its agent.
	if n := res.AgentWrites["labels"]; n < cfg.Robots {
		t.Errorf("agent label writes %d, want at least one per robot (%d)", n, cfg.Robots)
	}
	if !strings.Contains(string(report), "agent node writes: ") {
		t.Errorf("report %s does not say what sensing cost", path)
	}
	t.Log(res.AgentWritesLine())
	for _, svg := range []string{"redeploy-cdf.svg", "lost-robot-timeline.svg"} {
		data, err := os.ReadFile(filepath.Join(cfg.OutDir, svg))
		if err != nil || !strings.Contains(string(data), "<svg") || !strings.Contains(string(data), "seed 7") {
			t.Errorf("chart %s missing or unlabelled: %v", svg, err)
		}
	}
}

// listNodesWith waits for kubeconfig to appear and lists nodes with it
// until it sees one (the sim's robots).
func listNodesWith(ctx context.Context, kubeconfig string) error {
	var last error
	for ctx.Err() == nil {
		if _, err := os.Stat(kubeconfig); err == nil {
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err == nil && len(nodes.Items) > 0 {
				return nil
			}
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no node listed before the run ended (last error: %v)", last)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
