package main

import (
	"math"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/roam-dev/roam/policies"
)

func TestPairRatios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order []string
		rates []float64
		want  []float64
	}{
		{"ABBA twice", []string{"default", "roam", "roam", "default", "default", "roam", "roam", "default"},
			[]float64{100, 90, 99, 110, 120, 96, 95, 100}, []float64{0.90, 0.90, 0.80, 0.95}},
		{"same profile twice is no pair", []string{"roam", "roam", "default", "roam"},
			[]float64{90, 91, 100, 95}, []float64{0.95}},
		{"odd run left out", []string{"roam", "default", "roam"}, []float64{90, 100, 80}, []float64{0.90}},
		{"one run", []string{"default"}, []float64{100}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pairRatios(tc.order, tc.rates)
			if len(got) != len(tc.want) {
				t.Fatalf("pairRatios = %v, want %v", got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > 1e-9 {
					t.Fatalf("pairRatios = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestFormatRatios(t *testing.T) {
	if got, want := formatRatios([]float64{0.8949, 1}), "0.89, 1.00"; got != want {
		t.Fatalf("formatRatios = %q, want %q", got, want)
	}
}

func TestCheckOrder(t *testing.T) {
	for _, tc := range []struct {
		order   []string
		wantErr string
	}{
		{[]string{"default", "roam", "roam", "default"}, ""},
		{[]string{"roam", "default"}, ""},
		{[]string{"default", "raom"}, `run 2 names unknown profile "raom"`},
		{[]string{"roam", "roam"}, "must measure both default and roam"},
		{nil, "must measure both default and roam"},
	} {
		err := checkOrder(tc.order)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkOrder(%q) = %v, want nil", tc.order, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkOrder(%q) = %v, want an error containing %q", tc.order, err, tc.wantErr)
		}
	}
}

func TestCheckFleets(t *testing.T) {
	for _, tc := range []struct {
		fleets  []string
		wantErr string
	}{
		{[]string{"mixed", "homogeneous"}, ""},
		{[]string{"homogeneous"}, ""},
		{nil, "name at least one"},
		{[]string{"mixed", "mixed"}, `"mixed" is unknown or repeated`},
		{[]string{"mixd"}, `"mixd" is unknown or repeated`},
	} {
		err := checkFleets(tc.fleets)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkFleets(%q) = %v, want nil", tc.fleets, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkFleets(%q) = %v, want an error containing %q", tc.fleets, err, tc.wantErr)
		}
	}
}

// The mixed fleet spreads robots over three contexts with varying devices,
// the same for the same seed; a run with more pods than the hospital
// robots have cameras is refused before any cluster starts.
func TestMixedFleet(t *testing.T) {
	robots := fleetRobots(fleetMixed, 3000, 7)
	byContext, cameras := map[string]int{}, map[int]bool{}
	hospitalCameras := 0
	for _, r := range robots {
		byContext[r.context]++
		cameras[r.cameras] = true
		if r.context == hospital {
			hospitalCameras += r.cameras
		}
	}
	if byContext[hospital] != 1000 || byContext["store"] != 1000 || byContext["warehouse"] != 1000 {
		t.Fatalf("contexts %v, want a third each", byContext)
	}
	if len(cameras) < 10 || !cameras[0] {
		t.Fatalf("camera counts %v: want them to vary, some robots without any", cameras)
	}
	if again := fleetRobots(fleetMixed, 3000, 7); again[42] != robots[42] {
		t.Fatal("the same seed gave another fleet")
	}
	o := options{nodes: 3000, seed: 7, fleets: []string{fleetMixed}, pods: hospitalCameras}
	if err := checkCameras(o); err != nil {
		t.Fatalf("as many pods as cameras: %v", err)
	}
	o.pods++
	if err := checkCameras(o); err == nil || !strings.Contains(err.Error(), "fewer than -pods") {
		t.Fatalf("more pods than cameras: %v", err)
	}
	for _, r := range fleetRobots(fleetHomogeneous, 10, 7) {
		if r.context != hospital || r.cameras != 8 {
			t.Fatalf("homogeneous robot %+v", r)
		}
	}
}

// Stock kube-scheduler's pods carry the constraints it can express for
// the policy: the context as a nodeSelector and the target's zone as a
// preferred node affinity; roam's carry the policy's label and the target.
func TestBenchPods(t *testing.T) {
	target := point{x: 250, y: 10}
	stock := benchPod(3, "default-scheduler", target, true, false)
	if stock.Spec.NodeSelector[policies.ContextLabel] != hospital {
		t.Fatalf("stock pod's nodeSelector %v", stock.Spec.NodeSelector)
	}
	pref := stock.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(pref) != 1 || pref[0].Preference.MatchExpressions[0].Values[0] != "zone-2" {
		t.Fatalf("stock pod's preference %+v, want zone-2", pref)
	}
	roam := benchPod(3, "roam-scheduler", target, false, false)
	if roam.Spec.NodeSelector != nil || roam.Spec.Affinity != nil || roam.Labels["app"] != "medical-assistant" ||
		roam.Annotations[policies.TargetAnnotation] != "250.0,10.0" {
		t.Fatalf("roam pod %+v", roam)
	}
	for _, p := range []*v1.Pod{stock, roam} {
		if q := p.Spec.Containers[0].Resources.Requests["roam.dev/camera"]; q.Value() != 1 {
			t.Fatalf("%s requests %v cameras, want 1", p.Name, q.Value())
		}
	}
	if z := (point{x: siteSize, y: 0}).zone(); z != "zone-9" {
		t.Fatalf("the site's edge is in %s, want zone-9", z)
	}
}
