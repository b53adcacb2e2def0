package capability

import (
	"math"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/policies"
)

func TestCombine(t *testing.T) {
	target := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policies.TargetAnnotation: "0,0"}}}
	want := WantOf(target, DefaultWeights(), true) // location only: weight 2
	near := want.Measure(policies.Point{X: 3, Y: 4, Known: true}, nil, nil)
	far := want.Measure(policies.Point{X: 30, Y: 40, Known: true}, nil, nil)
	unknown := want.Measure(policies.Point{}, nil, nil)

	for _, tc := range []struct {
		name         string
		policyWeight int64
		policy       []float64
		want         *Want
		raws         []Raw
		out          []int64
	}{
		// Policies alone: compressed, then scaled to 0..100 over the nodes.
		{"policies", 8, []float64{19, -55, math.Log(20) - 1 /* between */}, nil, nil, nil},
		{"equal policies", 8, []float64{3, 3}, nil, nil, []int64{100, 100}},
		{"failed policy", 8, []float64{1, math.NaN(), 2}, nil, nil, []int64{0, 0, 100}},
		// Built-in alone: nearest 100, farthest 0, unknown 0.
		{"built-in", 0, []float64{0, 0, 0}, want, []Raw{near, far, unknown}, []int64{100, 0, 0}},
		// Both: (8·policy + 2·built-in) / 10.
		{"both", 8, []float64{-55, 19}, want, []Raw{near, far}, []int64{(8*0 + 2*100) / 10, (8*100 + 2*0) / 10}},
		{"nothing scores", 0, []float64{1, 2}, nil, nil, []int64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]int64, len(tc.policy))
			Combine(tc.policyWeight, append([]float64(nil), tc.policy...), tc.want, tc.raws, out)
			if tc.out == nil { // policies: best 100, worst 0, the middle one in between
				if out[0] != 100 || out[1] != 0 || out[2] <= 0 || out[2] >= 100 {
					t.Fatalf("Combine = %v, want [100 0 (0..100)]", out)
				}
				// sign(s)·ln(1+|s|): (ln(ln 20) - (-ln 56)) / (ln 20 + ln 56)
				lo, hi, mid := -math.Log1p(55), math.Log1p(19), math.Log1p(math.Log(20)-1)
				if w := int64(math.Round((mid - lo) / (hi - lo) * 100)); out[2] != w {
					t.Errorf("middle node = %d, want %d", out[2], w)
				}
				return
			}
			for i := range out {
				if out[i] != tc.out[i] {
					t.Fatalf("Combine = %v, want %v", out, tc.out)
				}
			}
		})
	}
}

func TestRawAccessors(t *testing.T) {
	r := pack(125, 3, 2)
	if d, ok := r.Distance(); !ok || d != 12.5 {
		t.Errorf("Distance = %v, %v; want 12.5, true", d, ok)
	}
	if _, ok := pack(maxDist, 0, 0).Distance(); ok {
		t.Error("an unknown location reads as known")
	}
	if r.FreeDevices() != 3 || r.MatchedFeatures() != 2 {
		t.Errorf("FreeDevices, MatchedFeatures = %d, %d; want 3, 2", r.FreeDevices(), r.MatchedFeatures())
	}
}
