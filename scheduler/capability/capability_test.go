package capability

import (
	"math"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
)

var defaultWeights = Weights{Device: 1, Feature: 1, Location: 1}

// robot is one node as Measure sees it.
type robot struct {
	name     string
	location string
	cameras  int64
	labels   map[string]string
}

// FreeUnits implements FreeUnits: only cameras.
func (r robot) FreeUnits(req *Request) int64 {
	if req.Name == "roam.dev/camera" {
		return r.cameras
	}
	return 0
}

// scores measures and normalizes robots for pod's want.
func scores(t *testing.T, w Weights, pod *v1.Pod, robots ...robot) map[string]int64 {
	t.Helper()
	want := WantOf(pod, w, false)
	if want == nil {
		t.Fatal("WantOf = nil, want a Want")
	}
	raws := make([]Raw, len(robots))
	for i, r := range robots {
		raws[i] = want.Measure(policies.ParsePoint(r.location), func() map[string]string { return r.labels }, r)
	}
	out := make([]int64, len(robots))
	want.Normalize(raws, out)
	got := map[string]int64{}
	for i, r := range robots {
		if out[i] < 0 || out[i] > 100 {
			t.Fatalf("%s: %d outside 0..100", r.name, out[i])
		}
		got[r.name] = out[i]
	}
	return got
}

func TestLocation(t *testing.T) {
	pod := st.MakePod().Name("p").Annotation(policies.TargetAnnotation, "10,10").Obj()
	got := scores(t, defaultWeights, pod,
		robot{name: "near", location: "12,9"}, robot{name: "mid", location: "30,-20"},
		robot{name: "far", location: "100,100"}, robot{name: "lost"})
	if !(got["near"] == 100 && got["near"] > got["mid"] && got["mid"] > got["far"] && got["far"] == 0 && got["lost"] == 0) {
		t.Fatalf("scores %v: want near 100 > mid > far 0, unknown location 0", got)
	}
}

func TestDevicesAndFeatures(t *testing.T) {
	pod := st.MakePod().Name("p").Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).
		Annotation(policies.PreferFeaturesAnnotation, "feature.node.kubernetes.io/usb, feature.node.kubernetes.io/gpu").Obj()
	got := scores(t, Weights{Device: 1, Feature: 1}, pod,
		robot{name: "one-cam-both", cameras: 1, labels: map[string]string{"feature.node.kubernetes.io/usb": "true", "feature.node.kubernetes.io/gpu": "true"}},
		robot{name: "three-cams-none", cameras: 3},
		robot{name: "three-cams-usb", cameras: 3, labels: map[string]string{"feature.node.kubernetes.io/usb": "true", "feature.node.kubernetes.io/gpu": "false"}})
	// devices: 0, 2, 2 free after placing; features: 2, 0, 1.
	want := map[string]int64{"one-cam-both": 50, "three-cams-none": 50, "three-cams-usb": 75}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("scores %v, want %v", got, want)
		}
	}
}

// A pod that neither opts into roam nor is governed wants nothing, even
// when it requests extended resources: the default profile places it.
// Governed, its device requests count.
func TestWantOf(t *testing.T) {
	pod := st.MakePod().Name("p").Req(map[v1.ResourceName]string{"roam.dev/camera": "2", v1.ResourceCPU: "1"}).Obj()
	if w := WantOf(pod, defaultWeights, false); w != nil {
		t.Fatalf("WantOf(not governed) = %+v, want nil", w)
	}
	w := WantOf(pod, defaultWeights, true)
	if w == nil || len(w.Requests()) != 1 || w.Requests()[0].Name != "roam.dev/camera" || w.Requests()[0].Units != 2 || w.Weight() != 1 {
		t.Fatalf("WantOf(governed) = %+v, want the camera request alone, weight 1", w)
	}
	// A zero weight turns its component off.
	targeted := st.MakePod().Name("t").Annotation(policies.TargetAnnotation, "1,2").Obj()
	if w := WantOf(targeted, Weights{Device: 1, Feature: 1}, false); w != nil {
		t.Fatalf("WantOf with locationWeight 0 = %+v, want nil", w)
	}
	if w := WantOf(targeted, defaultWeights, false); w.Weight() != 1 {
		t.Fatalf("Weight = %d, want 1 (location alone)", w.Weight())
	}
}

func TestWeightsValidate(t *testing.T) {
	if errs := defaultWeights.Validate(field.NewPath("args")); len(errs) != 0 {
		t.Fatalf("valid weights: %v", errs)
	}
	errs := Weights{Device: -1, Feature: 101, Location: 3}.Validate(nil)
	got := errs.ToAggregate().Error()
	for _, want := range []string{"deviceWeight: Invalid value: -1: must be in 0..100", "featureWeight: Invalid value: 101"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q, want them to contain %q", got, want)
		}
	}
	if len(errs) != 2 {
		t.Errorf("%d errors, want 2: %v", len(errs), errs)
	}
}

// NormalizeSigned keeps the order of the values, gives the highest 100 and
// the lowest 0, and a huge penalty does not squeeze the others together:
// on the signed logarithmic scale 0, 10 and 100 stay apart.
func TestNormalizeSigned(t *testing.T) {
	out := make([]int64, 5)
	NormalizeSigned([]float64{100, 10, 0, -1e6, math.NaN()}, out)
	if out[0] != 100 || out[3] != 0 || out[4] != 0 || !(out[0] > out[1] && out[1] > out[2] && out[2] > out[3]) {
		t.Fatalf("scores %v: want 100 > 10's > 0's > 0 = the penalty's, and 0 for NaN", out)
	}
	if out[1]-out[2] < 10 {
		t.Fatalf("scores %v: the penalty flattened 10 and 0 together", out)
	}
	NormalizeSigned([]float64{-3, -3}, out[:2])
	if out[0] != 100 || out[1] != 100 {
		t.Fatalf("equal values scored %v, want 100 each", out[:2])
	}
}
