package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/roam-dev/roam/scheduler/capability"
)

// scoreWeights are roam-scheduler's RoamPolicy score weights
// (policyWeight, deviceWeight, featureWeight, locationWeight of its
// plugin args), set with --score-weights when the scheduler does not run
// with its defaults.
type scoreWeights struct {
	set                               bool
	Policy, Device, Feature, Location int64
}

// orDefault is w, or the scheduler's defaults when w was not set.
func (w scoreWeights) orDefault() scoreWeights {
	if w.set {
		return w
	}
	d := capability.DefaultWeights()
	return scoreWeights{set: true, Policy: capability.DefaultPolicyWeight, Device: d.Device, Feature: d.Feature, Location: d.Location}
}

func (w scoreWeights) builtin() capability.Weights {
	return capability.Weights{Device: w.Device, Feature: w.Feature, Location: w.Location}
}

func (w *scoreWeights) String() string {
	d := w.orDefault()
	return fmt.Sprintf("policy=%d,device=%d,feature=%d,location=%d", d.Policy, d.Device, d.Feature, d.Location)
}

// Set parses "policy=8,device=1,feature=1,location=2"; unnamed components
// keep their defaults.
func (w *scoreWeights) Set(s string) error {
	*w = w.orDefault()
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("%q: want name=weight (names: policy, device, feature, location)", kv)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 || n > capability.MaxWeight {
			return fmt.Errorf("%s=%s: the weight must be an integer in 0..%d", k, v, capability.MaxWeight)
		}
		switch strings.TrimSpace(k) {
		case "policy":
			w.Policy = n
		case "device":
			w.Device = n
		case "feature":
			w.Feature = n
		case "location":
			w.Location = n
		default:
			return fmt.Errorf("%q: unknown weight (names: policy, device, feature, location)", k)
		}
	}
	return nil
}
