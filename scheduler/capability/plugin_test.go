package capability

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
)

func newPlugin(t *testing.T, obj runtime.Object) *Plugin {
	t.Helper()
	pl, err := New(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pl.(*Plugin)
}

func robot(name, location string, cameras string, labels map[string]string) *framework.NodeInfo {
	w := st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{
		v1.ResourceCPU: "4", v1.ResourceMemory: "8Gi", v1.ResourcePods: "110", "roam.dev/camera": cameras,
	})
	if location != "" {
		w = w.Annotation(policies.LocationAnnotation, location)
	}
	for k, v := range labels {
		w = w.Label(k, v)
	}
	ni := framework.NewNodeInfo()
	ni.SetNode(w.Obj())
	return ni
}

// scores runs PreScore, Score and NormalizeScore over nodes.
func scores(t *testing.T, pl *Plugin, pod *v1.Pod, nodes ...*framework.NodeInfo) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	state := framework.NewCycleState()
	if s := pl.PreScore(ctx, state, pod, nil); !s.IsSuccess() {
		t.Fatalf("PreScore: %v", s)
	}
	var list framework.NodeScoreList
	for _, ni := range nodes {
		s, status := pl.Score(ctx, state, pod, ni)
		if !status.IsSuccess() {
			t.Fatal(status)
		}
		list = append(list, framework.NodeScore{Name: ni.Node().Name, Score: s})
	}
	if s := pl.NormalizeScore(ctx, state, pod, list); !s.IsSuccess() {
		t.Fatal(s)
	}
	out := map[string]int64{}
	for _, s := range list {
		if s.Score < 0 || s.Score > framework.MaxNodeScore {
			t.Fatalf("%s: %d outside 0..100", s.Name, s.Score)
		}
		out[s.Name] = s.Score
	}
	return out
}

func TestLocation(t *testing.T) {
	pl := newPlugin(t, nil)
	pod := st.MakePod().Name("p").Annotation(policies.TargetAnnotation, "10,10").Obj()
	got := scores(t, pl, pod,
		robot("near", "12,9", "0", nil), robot("mid", "30,-20", "0", nil),
		robot("far", "100,100", "0", nil), robot("lost", "", "0", nil))
	if !(got["near"] == 100 && got["near"] > got["mid"] && got["mid"] > got["far"] && got["far"] == 0 && got["lost"] == 0) {
		t.Fatalf("scores %v: want near 100 > mid > far 0, unknown location 0", got)
	}
}

func TestDevicesAndFeatures(t *testing.T) {
	pl := newPlugin(t, &RoamCapabilityArgs{LocationWeight: new(int64)})
	pod := st.MakePod().Name("p").Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).
		Annotation(policies.PreferFeaturesAnnotation, "feature.node.kubernetes.io/usb, feature.node.kubernetes.io/gpu").Obj()
	got := scores(t, pl, pod,
		robot("one-cam-both", "", "1", map[string]string{"feature.node.kubernetes.io/usb": "true", "feature.node.kubernetes.io/gpu": "true"}),
		robot("three-cams-none", "", "3", nil),
		robot("three-cams-usb", "", "3", map[string]string{"feature.node.kubernetes.io/usb": "true", "feature.node.kubernetes.io/gpu": "false"}))
	// devices: 0, 2, 2 free after placing; features: 2, 0, 1.
	want := map[string]int64{"one-cam-both": 50, "three-cams-none": 50, "three-cams-usb": 75}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("scores %v, want %v", got, want)
		}
	}
}

// A pod that neither opts into roam nor is governed is skipped, even when
// it requests extended resources: the default profile places it.
func TestSkip(t *testing.T) {
	pl := newPlugin(t, nil)
	pod := st.MakePod().Name("p").Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj()
	if s := pl.PreScore(context.Background(), framework.NewCycleState(), pod, nil); !s.IsSkip() {
		t.Fatalf("PreScore = %v, want Skip", s)
	}
}

func TestArgs(t *testing.T) {
	a, err := decodeArgs(&runtime.Unknown{Raw: []byte(`{"deviceWeight":3}`)})
	if err != nil || *a.DeviceWeight != 3 || *a.FeatureWeight != 1 || *a.LocationWeight != 1 {
		t.Fatalf("decoded %+v, %v", a, err)
	}
	for raw, want := range map[string]string{
		`{"locationWeight":-1}`: "locationWeight: Invalid value: -1: must be in 0..100",
		`{"featureWeight":101}`: "featureWeight: Invalid value",
		`{"weight":1}`:          `unknown field "weight"`,
	} {
		if _, err := decodeArgs(&runtime.Unknown{Raw: []byte(raw)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", raw, err, want)
		}
	}
}
