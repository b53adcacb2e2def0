// Package capability is the RoamCapability scheduler plugin: roam's
// built-in device-capability and location scores. For a pod that roam
// governs (a policy governs it) or that carries roam's annotations, it
// prefers nodes with more free units of the extended resources the pod
// requests, more of the NFD features it lists in roam.dev/prefer-features,
// and a roam.dev/location nearer its roam.dev/target. Each component is
// normalized over the feasible nodes and weighted by the plugin's args;
// the result is 0..100. Other pods are skipped, so they are placed exactly
// as the default profile would place them.
package capability

import (
	"context"
	"math"
	"strings"
	"unique"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	resourcehelper "k8s.io/component-helpers/resource"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/policy"
)

// Name is the plugin's name in the registry and in configurations.
const Name = "RoamCapability"

const stateKey fwk.StateKey = "roam.dev/" + Name

var (
	_ framework.PreScorePlugin    = (*Plugin)(nil)
	_ framework.ScorePlugin       = (*Plugin)(nil)
	_ framework.ScoreExtensions   = (*Plugin)(nil)
	_ framework.EnqueueExtensions = (*Plugin)(nil)
)

// Plugin is the RoamCapability plugin.
type Plugin struct {
	deviceW, featureW, locationW int64
}

// New builds the plugin from its args.
func New(_ context.Context, obj runtime.Object, _ framework.Handle) (framework.Plugin, error) {
	args, err := decodeArgs(obj)
	if err != nil {
		return nil, err
	}
	return &Plugin{deviceW: *args.DeviceWeight, featureW: *args.FeatureWeight, locationW: *args.LocationWeight}, nil
}

// Name implements framework.Plugin.
func (pl *Plugin) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions: a score plugin
// never rejects a pod, so no event needs to requeue one.
func (pl *Plugin) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return nil, nil
}

// scoreState is the per-cycle input of Score: what the pod asks for.
type scoreState struct {
	requests []request // extended resources the pod requests
	features []string  // preferred NFD feature labels
	target   policies.Point
}

type request struct {
	name   v1.ResourceName
	handle unique.Handle[string] // name interned, as policy.CachedNode's devices
	q      int64
}

func (s *scoreState) Clone() fwk.StateData { return s }

// PreScore decides which components apply to pod, and skips scoring when
// none does.
func (pl *Plugin) PreScore(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	s := &scoreState{}
	if pl.locationW > 0 {
		s.target = policies.ParsePoint(pod.Annotations[policies.TargetAnnotation])
	}
	if pl.featureW > 0 {
		for _, f := range strings.Split(pod.Annotations[policies.PreferFeaturesAnnotation], ",") {
			if f = strings.TrimSpace(f); f != "" {
				s.features = append(s.features, f)
			}
		}
	}
	// Device scoring changes placement of pods requesting extended
	// resources, so only pods that opted into roam get it.
	optedIn := s.target.Known || len(s.features) > 0 || len(policy.Governing(state)) > 0
	if pl.deviceW > 0 && optedIn {
		for name, q := range resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}) {
			if policies.IsExtendedResourceName(name) {
				s.requests = append(s.requests, request{name: name, handle: unique.Make(string(name)), q: q.Value()})
			}
		}
	}
	if !s.target.Known && len(s.features) == 0 && len(s.requests) == 0 {
		return fwk.NewStatus(fwk.Skip)
	}
	state.Write(stateKey, s)
	return nil
}

// Raw scores pack the three components into one non-negative int64 for
// NormalizeScore, which needs each one's range over all nodes:
// bits 0..30 distance in decimetres (maxDist: the node's location is
// unknown), 31..52 free device units, 53..62 matched features.
const (
	distBits, devBits, featBits = 31, 22, 10
	maxDist                     = 1<<distBits - 1
	maxDev                      = 1<<devBits - 1
	maxFeat                     = 1<<featBits - 1
)

func pack(distDM, dev, feat int64) int64 {
	return clamp(distDM, maxDist) | clamp(dev, maxDev)<<distBits | clamp(feat, maxFeat)<<(distBits+devBits)
}

func unpack(v int64) (distDM, dev, feat int64) {
	return v & maxDist, (v >> distBits) & maxDev, (v >> (distBits + devBits)) & maxFeat
}

func clamp(v, hi int64) int64 {
	if v < 0 {
		return 0
	}
	return min(v, hi)
}

// Score computes the raw components for one node.
func (pl *Plugin) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	v, err := state.Read(stateKey)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	s := v.(*scoreState)
	node := nodeInfo.Node()
	var dist, dev, feat int64
	cached, ok := policy.Node(state, nodeInfo) // parsed once per node version when a policy governs the pod
	if s.target.Known {
		var loc policies.Point
		if ok {
			loc = cached.Location
		} else {
			loc = policies.ParsePoint(node.Annotations[policies.LocationAnnotation])
		}
		dist = maxDist // unknown location: the farthest of all
		if loc.Known {
			dist = min(int64(math.Round(policies.Distance(loc, s.target)*10)), maxDist-1)
		}
	}
	if len(s.requests) > 0 {
		if ok {
			for _, r := range s.requests {
				dev += max(int64(cached.Free(r.handle))-r.q, 0)
			}
		} else {
			alloc := nodeInfo.GetAllocatable().GetScalarResources()
			used := nodeInfo.GetRequested().GetScalarResources()
			for _, r := range s.requests {
				dev += max(alloc[r.name]-used[r.name]-r.q, 0)
			}
		}
	}
	for _, f := range s.features {
		if val, ok := node.Labels[f]; ok && val != "false" {
			feat++
		}
	}
	return pack(dist, dev, feat), nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (pl *Plugin) ScoreExtensions() framework.ScoreExtensions { return pl }

// NormalizeScore normalizes each component over the nodes (nearest, most
// free units, most features: 100) and combines them by weight into 0..100.
func (pl *Plugin) NormalizeScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, scores framework.NodeScoreList) *fwk.Status {
	v, err := state.Read(stateKey)
	if err != nil {
		return fwk.AsStatus(err)
	}
	s := v.(*scoreState)
	type rng struct{ lo, hi int64 }
	dr, vr, fr := rng{math.MaxInt64, -1}, rng{math.MaxInt64, -1}, rng{math.MaxInt64, -1}
	widen := func(r *rng, x int64) { r.lo, r.hi = min(r.lo, x), max(r.hi, x) }
	for _, sc := range scores {
		d, dv, f := unpack(sc.Score)
		if d != maxDist { // unknown locations score 0 and do not stretch the range
			widen(&dr, d)
		}
		widen(&vr, dv)
		widen(&fr, f)
	}
	norm := func(r rng, x int64, lowerIsBetter bool) int64 {
		if r.hi == r.lo {
			return framework.MaxNodeScore
		}
		n := (x - r.lo) * framework.MaxNodeScore / (r.hi - r.lo)
		if lowerIsBetter {
			n = framework.MaxNodeScore - n
		}
		return n
	}
	var wSum int64
	if s.target.Known {
		wSum += pl.locationW
	}
	if len(s.requests) > 0 {
		wSum += pl.deviceW
	}
	if len(s.features) > 0 {
		wSum += pl.featureW
	}
	for i := range scores {
		d, dv, f := unpack(scores[i].Score)
		var total int64
		if s.target.Known && d != maxDist {
			total += pl.locationW * norm(dr, d, true)
		}
		if len(s.requests) > 0 {
			total += pl.deviceW * norm(vr, dv, false)
		}
		if len(s.features) > 0 {
			total += pl.featureW * norm(fr, f, false)
		}
		if wSum > 0 {
			total /= wSum
		}
		scores[i].Score = total
	}
	return nil
}
