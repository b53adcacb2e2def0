// Package capability is roam's built-in placement preference, which
// RoamPolicy scores together with the policies' scores: more free units of
// the extended resources a pod requests (devices), more of the NFD
// features it lists in roam.dev/prefer-features, and a roam.dev/location
// nearer its roam.dev/target. Each component is normalized over the
// feasible nodes and weighted; the result is 0..100.
//
// The package knows nothing of the scheduler framework's cycle: a Want is
// what one pod asks (built once per cycle), Raw is one node's measure of
// it (packed into an int64), Normalize turns the feasible nodes' Raws into
// scores.
package capability

import (
	"fmt"
	"math"
	"strings"
	"unique"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/roam-dev/roam/policies"
)

// MaxWeight bounds each component weight.
const MaxWeight = 100

// Weights weigh the components (0 turns one off).
type Weights struct {
	Device, Feature, Location int64
}

// Validate reports every weight outside 0..MaxWeight under path, naming
// the field (deviceWeight, featureWeight, locationWeight).
func (w Weights) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, c := range []struct {
		name string
		v    int64
	}{{"deviceWeight", w.Device}, {"featureWeight", w.Feature}, {"locationWeight", w.Location}} {
		if c.v < 0 || c.v > MaxWeight {
			errs = append(errs, field.Invalid(path.Child(c.name), c.v, fmt.Sprintf("must be in 0..%d", MaxWeight)))
		}
	}
	return errs
}

// Want is what one pod asks of a node. It is read-only once built.
type Want struct {
	w        Weights
	requests []Request // extended resources the pod requests
	features []string  // preferred NFD feature labels
	target   policies.Point
}

// Request is the pod's request of one extended resource.
type Request struct {
	Name   v1.ResourceName
	Handle unique.Handle[string] // Name interned: comparing handles compares pointers
	Units  int64
}

// WantOf returns what pod asks for under weights w, or nil when no
// component applies. A roam.dev/target or roam.dev/prefer-features
// annotation opts a pod in; device requests count only for a pod that
// opted in or that a policy governs, so other pods requesting extended
// resources are placed as the default profile would place them.
func WantOf(pod *v1.Pod, w Weights, governed bool) *Want {
	want := &Want{w: w}
	if w.Location > 0 {
		want.target = policies.ParsePoint(pod.Annotations[policies.TargetAnnotation])
	}
	if w.Feature > 0 {
		for _, f := range strings.Split(pod.Annotations[policies.PreferFeaturesAnnotation], ",") {
			if f = strings.TrimSpace(f); f != "" {
				want.features = append(want.features, f)
			}
		}
	}
	optedIn := governed || want.target.Known || len(want.features) > 0
	if w.Device > 0 && optedIn {
		for name, q := range resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}) {
			if policies.IsExtendedResourceName(name) {
				want.requests = append(want.requests, Request{Name: name, Handle: unique.Make(string(name)), Units: q.Value()})
			}
		}
	}
	if want.Weight() == 0 {
		return nil
	}
	return want
}

// Requests are the extended resources the pod requests (when scored).
func (w *Want) Requests() []Request { return w.requests }

// Weight is the sum of the weights of the components that apply (0 for a
// nil Want).
func (w *Want) Weight() int64 {
	if w == nil {
		return 0
	}
	var sum int64
	if w.target.Known {
		sum += w.w.Location
	}
	if len(w.requests) > 0 {
		sum += w.w.Device
	}
	if len(w.features) > 0 {
		sum += w.w.Feature
	}
	return sum
}

// Raw packs one node's components into one non-negative int64 (so a
// scheduler's per-cycle table of measures stays small): bits
// 0..30 the distance in decimetres (maxDist: the node's location is
// unknown), 31..52 the free device units after placing the pod, 53..62
// the matched features.
type Raw int64

const (
	distBits, devBits, featBits = 31, 22, 10
	maxDist                     = 1<<distBits - 1
	maxDev                      = 1<<devBits - 1
	maxFeat                     = 1<<featBits - 1
)

func pack(distDM, dev, feat int64) Raw {
	return Raw(clamp(distDM, maxDist) | clamp(dev, maxDev)<<distBits | clamp(feat, maxFeat)<<(distBits+devBits))
}

func (r Raw) unpack() (distDM, dev, feat int64) {
	v := int64(r)
	return v & maxDist, (v >> distBits) & maxDev, (v >> (distBits + devBits)) & maxFeat
}

func clamp(v, hi int64) int64 {
	if v < 0 {
		return 0
	}
	return min(v, hi)
}

// Measure measures one node for w: its location, its labels (read only
// when the pod prefers features, so the node object need not be loaded
// otherwise) and its free units of the pod's requests.
func (w *Want) Measure(location policies.Point, labels func() map[string]string, free FreeUnits) Raw {
	var dist, dev, feat int64
	if w.target.Known {
		dist = maxDist // unknown location: the farthest of all
		if location.Known {
			dist = min(int64(math.Round(policies.Distance(location, w.target)*10)), maxDist-1)
		}
	}
	for i := range w.requests {
		dev += max(free.FreeUnits(&w.requests[i])-w.requests[i].Units, 0)
	}
	if len(w.features) > 0 {
		l := labels()
		for _, f := range w.features {
			if val, ok := l[f]; ok && val != "false" {
				feat++
			}
		}
	}
	return pack(dist, dev, feat)
}

// FreeUnits reports a node's free units of one requested extended
// resource (allocatable minus requested, before placing the pod).
type FreeUnits interface {
	FreeUnits(r *Request) int64
}

// Normalize scores raws (one per feasible node) into out: each component
// normalized over the nodes (nearest, most free units, most features:
// 100; all equal: 100; an unknown location: 0 and not stretching the
// range), combined by weight into 0..100.
func (w *Want) Normalize(raws []Raw, out []int64) {
	type rng struct{ lo, hi int64 }
	dr, vr, fr := rng{math.MaxInt64, -1}, rng{math.MaxInt64, -1}, rng{math.MaxInt64, -1}
	widen := func(r *rng, x int64) { r.lo, r.hi = min(r.lo, x), max(r.hi, x) }
	for _, r := range raws {
		d, dv, f := r.unpack()
		if d != maxDist {
			widen(&dr, d)
		}
		widen(&vr, dv)
		widen(&fr, f)
	}
	norm := func(r rng, x int64, lowerIsBetter bool) int64 {
		if r.hi == r.lo {
			return 100
		}
		n := (x - r.lo) * 100 / (r.hi - r.lo)
		if lowerIsBetter {
			n = 100 - n
		}
		return n
	}
	wSum := w.Weight()
	for i, r := range raws {
		d, dv, f := r.unpack()
		var total int64
		if w.target.Known && d != maxDist {
			total += w.w.Location * norm(dr, d, true)
		}
		if len(w.requests) > 0 {
			total += w.w.Device * norm(vr, dv, false)
		}
		if len(w.features) > 0 {
			total += w.w.Feature * norm(fr, f, false)
		}
		if wSum > 0 {
			total /= wSum
		}
		out[i] = total
	}
}

// NormalizeSigned scores vs (one per feasible node) into out, 0..100: each
// value compressed with the signed logarithm sign(v)·ln(1+|v|), so one huge
// penalty (say an unknown location's distance) does not flatten the
// differences between the others, then scaled linearly over the finite
// results (the highest 100, the lowest 0, all equal 100); a NaN or
// infinite value scores 0. It compresses vs in place.
func NormalizeSigned(vs []float64, out []int64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, v := range vs {
		vs[i] = math.Copysign(math.Log1p(math.Abs(v)), v)
		if finite(vs[i]) {
			lo, hi = min(lo, vs[i]), max(hi, vs[i])
		}
	}
	for i, v := range vs {
		switch {
		case !finite(v):
			out[i] = 0
		case hi == lo:
			out[i] = 100
		default:
			out[i] = int64(math.Round((v - lo) / (hi - lo) * 100))
		}
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
