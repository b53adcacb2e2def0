package cluster

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/yaml"
)

func TestSchedulerConfigAddsDefaultProfile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "in.yaml")
	in := `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection: {leaderElect: true}
profiles:
- schedulerName: roam-scheduler
  plugins:
    queueSort:
      enabled: [{name: Coscheduling}]
      disabled: [{name: "*"}]
    multiPoint:
      enabled: [{name: Coscheduling}, {name: RoamPolicy}]
  pluginConfig:
  - name: Coscheduling
    args: {permitWaitingTimeSeconds: 10}
  - name: RoamPolicy
    args: {globalNamespace: roam-system}
`
	if err := os.WriteFile(src, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out.yaml")
	if err := schedulerConfig(src, "/k/admin.kubeconfig", dst); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(dst)
	var doc struct {
		LeaderElection   struct{ LeaderElect bool }  `json:"leaderElection"`
		ClientConnection struct{ Kubeconfig string } `json:"clientConnection"`
		Profiles         []struct {
			SchedulerName string         `json:"schedulerName"`
			Plugins       map[string]any `json:"plugins"`
			PluginConfig  []struct {
				Name string `json:"name"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.LeaderElection.LeaderElect || doc.ClientConnection.Kubeconfig != "/k/admin.kubeconfig" {
		t.Errorf("leader election %v, kubeconfig %q: want off and the admin kubeconfig", doc.LeaderElection.LeaderElect, doc.ClientConnection.Kubeconfig)
	}
	if len(doc.Profiles) != 2 || doc.Profiles[1].SchedulerName != "default-scheduler" {
		t.Fatalf("profiles %+v: want roam-scheduler then default-scheduler", doc.Profiles)
	}
	stock := doc.Profiles[1]
	if _, ok := stock.Plugins["multiPoint"]; ok {
		t.Errorf("default profile enables roam plugins: %v", stock.Plugins)
	}
	if _, ok := stock.Plugins["queueSort"]; !ok {
		t.Errorf("default profile must share the queue sort: %v", stock.Plugins)
	}
	if len(stock.PluginConfig) != 1 || stock.PluginConfig[0].Name != "Coscheduling" {
		t.Errorf("default profile plugin config %+v: want only the queue sort's args", stock.PluginConfig)
	}
	if err := schedulerConfig(dst, "x", filepath.Join(t.TempDir(), "again.yaml")); err == nil || !strings.Contains(err.Error(), "default-scheduler") {
		t.Errorf("a config that already has default-scheduler: err %v", err)
	}
}

func TestFleetIsSeededAndDevicesAreCounted(t *testing.T) {
	a, b := newFleet(3, 50, DefaultDevices()), newFleet(3, 50, DefaultDevices())
	cameras := map[string]int{}
	for i := range a {
		if a[i].Context != b[i].Context || a[i].X != b[i].X || len(a[i].Devices) != len(b[i].Devices) {
			t.Fatalf("robot %d differs between runs with the same seed", i)
		}
		if a[i].Devices["roam.dev/camera"] > 0 {
			cameras[a[i].Context]++
		}
	}
	// ceil(0.4 × 17) = 7 in hospital and store, ceil(0.4 × 16) = 7 in warehouse.
	for _, c := range Contexts() {
		if cameras[c] != 7 {
			t.Errorf("%s: %d camera robots, want 7", c, cameras[c])
		}
	}
}

func TestHeadlineLowerBounds(t *testing.T) {
	start := time.Unix(1000, 0)
	r := &Result{Start: start, End: start.Add(180 * time.Second), Samples: []Sample{
		{Kind: "loss", Copy: Roam, Seconds: 5.5, Replaced: true},
		{Kind: "loss", Copy: Roam, Seconds: 6.25, Replaced: true},
		{Kind: "loss", Copy: Stock, Seconds: 150, Replaced: false},
		{Kind: "loss", Copy: Stock, Seconds: 120, Replaced: false},
		{Kind: "context", Copy: Roam, Seconds: 11.5, Replaced: true},
	}}
	got := r.Headline()
	want := []string{"redeploy p99: roam 6.2 s, stock > 150.0 s, ratio > 24.0", "context redeploy p99: 11.5 s"}
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Headline = %q, want %q", got, want)
	}
	r.Samples[2].Replaced, r.Samples[3].Replaced = true, true
	if got := r.Headline()[0]; got != "redeploy p99: roam 6.2 s, stock 150.0 s, ratio 24.0" {
		t.Errorf("all replaced: %q", got)
	}
	r.Samples = r.Samples[:4]
	if got := r.Headline()[1]; got != "context redeploy p99: n/a" {
		t.Errorf("no context samples: %q", got)
	}
}

// wellFormedSVG fails when svg is not well-formed XML or an element repeats
// an attribute (which browsers refuse to render).
func wellFormedSVG(t *testing.T, name, svg string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			seen := map[string]bool{}
			for _, a := range se.Attr {
				if seen[a.Name.Local] {
					t.Fatalf("%s: <%s> repeats attribute %s", name, se.Name.Local, a.Name.Local)
				}
				seen[a.Name.Local] = true
			}
		}
	}
}

func TestChartsAreWellFormedAndLabelled(t *testing.T) {
	start := time.Unix(1000, 0)
	cfg := DefaultConfig()
	cfg.Seed = 42
	r := &Result{Config: cfg, Start: start, End: start.Add(180 * time.Second),
		Samples: []Sample{
			{Kind: "loss", Copy: Roam, Seconds: 6, Replaced: true},
			{Kind: "loss", Copy: Stock, Seconds: 150},
		},
		Lost: []LostRobot{{Name: "robot-01", Context: "hospital", Link: "clean", RoamPods: 1, StockPods: 1, Marks: []Mark{
			{"robot", 0, "last heartbeat"}, {"roam", 3, "roam: suspected"}, {"roam", 6, "pod <x> Running"}, {"stock", 150, "run ends"},
		}}},
	}
	for name, svg := range map[string]string{"cdf": r.CDFChart(), "timeline": r.TimelineChart()} {
		wellFormedSVG(t, name, svg)
		if !strings.Contains(svg, "seed 42") || !strings.Contains(svg, "50 robots") {
			t.Errorf("%s chart is not labelled with its parameters and seed", name)
		}
	}
}

// TestDeletionReasonIsTheLastOneSeen: the API server's Eviction sets its
// own DisruptionTarget reason; roam-detector restores RoamContextChanged
// on the terminating pod; the report counts the pod once, under the last.
func TestDeletionReasonIsTheLastOneSeen(t *testing.T) {
	s := &sim{clock: clocktesting.NewFakeClock(time.Unix(0, 0)), bound: map[types.UID]time.Time{},
		podsSeen: map[types.UID]*podInfo{}, evictions: map[string]int{}}
	now := metav1.Now()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Name: "p", Namespace: "ns",
		Labels: map[string]string{CopyLabel: string(Roam), WorkloadLabel: "w"}}}
	withReason := func(reason string) *corev1.Pod {
		p := pod.DeepCopy()
		p.DeletionTimestamp = &now
		if reason != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: reason}}
		}
		return p
	}
	s.observePod(pod, false) // running: no deletion
	if len(s.evictions) != 0 {
		t.Fatalf("a running pod counted as deleted: %v", s.evictions)
	}
	s.observePod(withReason("EvictionByEvictionAPI"), false)
	s.observePod(withReason("RoamContextChanged"), false)
	s.observePod(withReason("RoamContextChanged"), false)
	s.observePod(withReason(""), true) // the final delete event may carry no condition
	want := map[string]int{string(Roam) + "/RoamContextChanged": 1}
	if len(s.evictions) != 1 || s.evictions[string(Roam)+"/RoamContextChanged"] != 1 {
		t.Errorf("deletions = %v, want %v", s.evictions, want)
	}
}

// TestInterruptedReportSaysSo: a run cut short by Ctrl-C still reports,
// and says how much of the planned run its figures cover.
func TestInterruptedReportSaysSo(t *testing.T) {
	start := time.Unix(1000, 0)
	r := &Result{Config: DefaultConfig(), Start: start, End: start.Add(58 * time.Second), Deletions: map[string]int{},
		Samples: []Sample{{Kind: "loss", Copy: Roam, Seconds: 5.5, Replaced: true}, {Kind: "loss", Copy: Stock, Seconds: 28, Replaced: false}}}
	var full strings.Builder
	if err := r.WriteMarkdown(&full, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(full.String(), "Interrupted") {
		t.Errorf("a complete run's report says it was interrupted")
	}
	r.Interrupted = true
	var cut strings.Builder
	if err := r.WriteMarkdown(&cut, nil); err != nil {
		t.Fatal(err)
	}
	if want := "**Interrupted after 58s of the planned 3m0s**"; !strings.Contains(cut.String(), want) {
		t.Errorf("interrupted report lacks %q:\n%s", want, cut.String())
	}
}

// The p99 of 200 replaced samples is the 198th smallest, not the largest;
// other kinds and copies do not count, and one unreplaced sample marks it a
// lower bound.
func TestP99NearestRank(t *testing.T) {
	var r Result
	for i := 200; i >= 1; i-- {
		r.Samples = append(r.Samples, Sample{Kind: "loss", Copy: Roam, Seconds: float64(i), Replaced: true})
	}
	r.Samples = append(r.Samples, Sample{Kind: "loss", Copy: Stock, Seconds: 1000, Replaced: true},
		Sample{Kind: "context", Copy: Roam, Seconds: 1000, Replaced: true})
	if f := r.P99("loss", Roam); f.Seconds != 198 || f.N != 200 || f.Lower {
		t.Errorf("p99 = %+v, want 198 s over 200 samples", f)
	}
	r.Samples[0].Replaced = false
	if f := r.P99("loss", Roam); !f.Lower || f.Pending != 1 {
		t.Errorf("with one sample not replaced: %+v, want a lower bound", f)
	}
}
