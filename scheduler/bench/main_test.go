package main

import (
	"math"
	"strings"
	"testing"
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
