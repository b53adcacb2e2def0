package capability

import (
	"github.com/roam-dev/roam/policies"
)

// Default weights of RoamPolicy's score: a policy's score counts as much as
// the built-in preferences together, twice over (8 : 1 + 1 + 2).
const (
	DefaultPolicyWeight   = 8
	DefaultDeviceWeight   = 1
	DefaultFeatureWeight  = 1
	DefaultLocationWeight = 2
)

// DefaultWeights are the built-in components' default weights.
func DefaultWeights() Weights {
	return Weights{Device: DefaultDeviceWeight, Feature: DefaultFeatureWeight, Location: DefaultLocationWeight}
}

// MaxScore is the best node score (the scheduler framework's MaxNodeScore).
const MaxScore = 100

// Combine computes RoamPolicy's 0..MaxScore score of each feasible node
// into out, from the governing policies' weighted sums (policy[i], NaN when
// one failed to evaluate) and the built-in preference's measures (raws[i];
// ignored when want is nil). The policies' sums are compressed with the
// signed logarithm sign(s)·ln(1+|s|), so one huge penalty (say an unknown
// location's distance) does not flatten the differences between the
// others, then scaled linearly (the best node MaxScore, the worst 0, all
// equal MaxScore, a failed sum 0); the built-in preference is normalized by
// Want.Normalize; the two are averaged with weights policyWeight (0: the
// policies do not score) and want.Weight(). policy is overwritten.
func Combine(policyWeight int64, policy []float64, want *Want, raws []Raw, out []int64) {
	polScores, capScores := make([]int64, len(out)), make([]int64, len(out))
	if policyWeight > 0 {
		NormalizeSigned(policy, polScores)
	}
	capW := want.Weight()
	if capW > 0 {
		want.Normalize(raws, capScores)
	}
	for i := range out {
		if out[i] = policyWeight*polScores[i] + capW*capScores[i]; policyWeight+capW > 0 {
			out[i] /= policyWeight + capW
		}
	}
}

// Features are the preferred NFD feature labels the pod lists (when
// scored).
func (w *Want) Features() []string { return w.features }

// Target is the pod's roam.dev/target (Known false when not scored).
func (w *Want) Target() policies.Point { return w.target }

// Distance is the node's distance to the pod's target in metres (to the
// decimetre); known is false when the node's location is unknown or the
// pod has no target.
func (r Raw) Distance() (metres float64, known bool) {
	d, _, _ := r.unpack()
	return float64(d) / 10, d != maxDist
}

// FreeDevices are the node's free units of the pod's requested extended
// resources, summed, after placing the pod.
func (r Raw) FreeDevices() int64 {
	_, dev, _ := r.unpack()
	return dev
}

// MatchedFeatures is how many of the pod's preferred features the node
// carries.
func (r Raw) MatchedFeatures() int64 {
	_, _, feat := r.unpack()
	return feat
}
