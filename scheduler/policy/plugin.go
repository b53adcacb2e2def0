// Package policy is the RoamPolicy scheduler plugin: it places the pods
// that roam policies govern. PreFilter resolves a pod's policies once per
// scheduling cycle; Filter requires every governing policy's `require` and
// rejects robots tainted roam.dev/unreachable; Score adds the policies'
// scores by weight and roam's built-in preferences (package capability:
// free devices, preferred NFD features, nearness to the pod's target),
// normalized to 0..100. Filter decides (from a policy's verdict table
// when its require reads only the node, see verdicts.go), PreScore
// measures every feasible node once (in passes that keep many memory loads
// in flight), and NormalizeScore turns the measures into scores. A
// pod no policy governs and that carries no roam annotation is skipped at
// every extension point, so roam-scheduler places it exactly as the
// default profile would.
package policy

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// Name is the plugin's name in the registry and in configurations.
const Name = "RoamPolicy"

// stateKey is where PreFilter leaves the pod's State.
const stateKey fwk.StateKey = "roam.dev/" + Name

// ReasonUnreachable is the Filter reason for a robot roam-detector suspects.
const ReasonUnreachable = "node(s) had taint " + policies.UnreachableTaint

// ReasonRequireFalse is the Filter reason when policy key's require does not
// hold on a node; the scheduler counts identical reasons across nodes, so
// `kubectl describe pod` reads e.g. "9 policy ns/name: require false".
func ReasonRequireFalse(key string) string { return "policy " + key + ": require false" }

var (
	_ framework.PreFilterPlugin   = (*Plugin)(nil)
	_ framework.FilterPlugin      = (*Plugin)(nil)
	_ framework.PreScorePlugin    = (*Plugin)(nil)
	_ framework.ScorePlugin       = (*Plugin)(nil)
	_ framework.ScoreExtensions   = (*Plugin)(nil)
	_ framework.EnqueueExtensions = (*Plugin)(nil)
)

// Plugin is the RoamPolicy plugin.
type Plugin struct {
	handle    framework.Handle
	store     *policies.Store
	args      RoamPolicyArgs
	logger    klog.Logger
	metrics   *counters
	podLister corelisters.PodLister // the scheduler's pods (nil without an informer factory)
	podsSync  cache.InformerSynced  // true once the scheduler runs
	workers   sync.Pool             // *worker: Filter runs in parallel
	envs      *envCache
	verdicts  verdictTables
	weights   capability.Weights // the built-in preferences' weights (args)
	measures  measurePool
	// current is the State of the cycle that wrote one last, so Filter,
	// called for every node, finds it with one load instead of a lookup
	// in the cycle state's sync.Map.
	current atomic.Pointer[cycleState]
}

// cycleState pairs a cycle's state with the State RoamPolicy wrote in it.
type cycleState struct {
	state fwk.CycleState
	s     *State
}

// worker is one goroutine's evaluator and environment: evaluation
// allocates nothing.
type worker struct {
	ev  *policies.Evaluator
	env policies.Env
}

// State is what PreFilter (or, for a pod no policy governs, PreScore)
// leaves in the cycle state.
type State struct {
	policies []*policies.Policy // govern the pod (sorted by key); all requires must hold
	// verdicts are the policies' verdict tables (nil for a policy without
	// require), or nil when a require reads the pod.
	verdicts []*verdictTable
	pod      policies.PodEnv
	scoring  int              // how many of policies have a score (0 when policyWeight is 0)
	want     *capability.Want // roam's built-in preferences (nil: none apply)
	measures *measures        // PreScore's, for NormalizeScore
}

// scores reports whether anything scores the pod.
func (s *State) scores() bool { return s.scoring > 0 || s.want != nil }

// Clone implements fwk.StateData; State is read-only after PreFilter but
// for its measures, which one cycle's PreScore fills and NormalizeScore
// reads.
func (s *State) Clone() fwk.StateData { return s }

// device is a node's free units of one extended resource, its name
// interned so comparing names compares pointers.
type device struct {
	name unique.Handle[string]
	free float64
}

// writeState leaves s in state and remembers it as the current cycle's.
func (pl *Plugin) writeState(state fwk.CycleState, s *State) {
	state.Write(stateKey, s)
	pl.current.Store(&cycleState{state: state, s: s})
}

// stateOf returns the State in state: the current cycle's without a
// lookup, any other (a clone the framework made for preemption or
// nominated pods) from the cycle state.
func (pl *Plugin) stateOf(state fwk.CycleState) (*State, bool) {
	if c := pl.current.Load(); c != nil && c.state == state {
		return c.s, true
	}
	return readState(state)
}

func readState(state fwk.CycleState) (*State, bool) {
	if state == nil {
		return nil, false
	}
	v, err := state.Read(stateKey)
	if err != nil {
		return nil, false
	}
	s, ok := v.(*State)
	return s, ok
}

// New builds the plugin: it watches policy ConfigMaps (labelled
// roam.dev/policy=true) with its own filtered informer, waits for their
// initial list, and requeues governed pods whenever a policy changes.
func New(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
	args, err := decodeArgs(obj)
	if err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx).WithValues("plugin", Name)
	if h.ClientSet() == nil {
		return nil, fmt.Errorf("%s: the framework handle has no clientset", Name)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(h.ClientSet(), 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = policies.PolicyLabel + "=true" }))
	store, err := policies.NewStore(factory, policies.StoreOptions{GlobalNamespace: args.GlobalNamespace, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, args.PolicySyncTimeout.Duration)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), store.HasSynced) {
		return nil, fmt.Errorf("%s: policy ConfigMaps did not sync within %s (can the scheduler list and watch ConfigMaps?)",
			Name, args.PolicySyncTimeout.Duration)
	}
	pl := newPlugin(h, store, *args, logger)
	store.AddChangeHandler(pl.onPolicyChange)
	return pl, nil
}

// newPlugin wires a plugin around store (unit tests pass their own).
func newPlugin(h framework.Handle, store *policies.Store, args RoamPolicyArgs, logger klog.Logger) *Plugin {
	pl := &Plugin{handle: h, store: store, args: args, logger: logger, metrics: registerMetrics(),
		weights: capability.Weights{Device: *args.DeviceWeight, Feature: *args.FeatureWeight, Location: *args.LocationWeight}}
	pl.workers.New = func() any { return &worker{ev: policies.NewEvaluator()} }
	pl.envs = newEnvCache(pl.metrics)
	if h != nil && h.SharedInformerFactory() != nil {
		pods := h.SharedInformerFactory().Core().V1().Pods()
		pl.podLister = pods.Lister()
		pl.podsSync = pods.Informer().HasSynced
		// Forget the cached environment of deleted nodes.
		_, _ = h.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: pl.envs.forget,
		})
	}
	return pl
}

// Name implements framework.Plugin.
func (pl *Plugin) Name() string { return Name }

func (pl *Plugin) getWorker() *worker  { return pl.workers.Get().(*worker) }
func (pl *Plugin) putWorker(w *worker) { w.env = policies.Env{}; pl.workers.Put(w) }

// PreFilter resolves the policies governing pod. A pod that names a
// missing or never-valid policy is UnschedulableAndUnresolvable with the
// reason; a pod no policy governs is skipped (Filter does not run; PreScore
// decides whether roam's built-in preferences score it).
func (pl *Plugin) PreFilter(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	w := pl.getWorker()
	res := pl.store.ForPod(w.ev, pod)
	pl.putWorker(w)
	if res.Blocked != "" {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, res.Blocked)
	}
	if len(res.Policies) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	s := &State{policies: res.Policies, verdicts: pl.verdicts.forPolicies(res.Policies),
		pod: policies.PodEnvFor(pod), want: capability.WantOf(pod, pl.weights, true)}
	if *pl.args.PolicyWeight > 0 {
		for _, p := range res.Policies {
			if p.HasScore {
				s.scoring++
			}
		}
	}
	pl.writeState(state, s)
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin: the state does
// not depend on other pods (node environments are rebuilt from the
// NodeInfo the framework passes, which includes added/removed pods).
func (pl *Plugin) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter requires every governing policy's require on nodeInfo's node.
func (pl *Plugin) Filter(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, ok := pl.stateOf(state)
	if !ok {
		return fwk.AsStatus(fmt.Errorf("%s: no cycle state (PreFilter did not run)", Name))
	}
	node := nodeInfo.Node()
	if node == nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "node not found")
	}
	if *pl.args.RejectUnreachable && hasUnreachableTaint(node) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ReasonUnreachable)
	}
	var start time.Time
	sample := state.ShouldRecordPluginMetrics()
	if sample {
		start = time.Now()
	}
	status, known := s.verdict(nodeInfo.GetGeneration())
	if !known {
		status = pl.require(s, pl.envs.get(nodeInfo, s.policies))
	}
	if sample {
		pl.metrics.duration.Observe(time.Since(start).Seconds())
	}
	return status
}

// verdict answers Filter from the verdict tables, when every policy's
// result on node version gen is recorded there.
func (s *State) verdict(gen int64) (status *fwk.Status, known bool) {
	if s.verdicts == nil {
		return nil, false
	}
	for _, t := range s.verdicts {
		if t == nil {
			continue
		}
		ok, known := t.lookup(gen)
		if !known {
			return nil, false
		}
		if !ok {
			return fwk.NewStatus(fwk.Unschedulable, t.reason), true
		}
	}
	return nil, true
}

// require checks every policy's require on e's node: from the node's memo
// when the require reads only the node (evaluated, and counted, once per
// node version, and recorded in the policy's verdict table), else
// evaluated for the pod.
func (pl *Plugin) require(s *State, e *envEntry) *fwk.Status {
	var w *worker
	defer func() {
		if w != nil {
			pl.putWorker(w)
		}
	}()
	for i, p := range s.policies {
		m := e.memo(p)
		ok, known := p.MemoRequire(m)
		if known && s.verdicts != nil && s.verdicts[i] != nil {
			s.verdicts[i].record(e.gen, e.replaced, ok)
		}
		if !known {
			if w == nil {
				w = pl.getWorker()
			}
			var err error
			ok, err = p.RequireWith(w.ev, m, &e.env, &s.pod)
			switch {
			case err != nil:
				pl.metrics.err.Inc()
				return fwk.NewStatus(fwk.Unschedulable, err.Error())
			case ok:
				pl.metrics.pass.Inc()
			default:
				pl.metrics.fail.Inc()
			}
		}
		if !ok {
			return fwk.NewStatus(fwk.Unschedulable, ReasonRequireFalse(p.Key()))
		}
	}
	return nil
}

func hasUnreachableTaint(node *v1.Node) bool {
	for i := range node.Spec.Taints {
		if node.Spec.Taints[i].Key == policies.UnreachableTaint {
			return true
		}
	}
	return false
}

// PreScore decides what scores the pod, its policies' scores and roam's
// built-in preferences, and measures every feasible node for
// NormalizeScore. A pod no policy governs gets the built-in preferences
// when it opted in (roam.dev/target or roam.dev/prefer-features); with
// nothing to score, Score is skipped.
func (pl *Plugin) PreScore(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	s, ok := pl.stateOf(state)
	if !ok {
		want := capability.WantOf(pod, pl.weights, false)
		if want == nil {
			return fwk.NewStatus(fwk.Skip)
		}
		s = &State{want: want}
		pl.writeState(state, s)
	}
	if !s.scores() {
		return fwk.NewStatus(fwk.Skip)
	}
	t, err := pl.measureAll(state, s, nodes)
	if err != nil {
		return fwk.AsStatus(err)
	}
	s.measures = t
	return nil
}

// measureAll measures nodes: it finds all their cache entries first
// (envCache.getAll), then measures each.
func (pl *Plugin) measureAll(state fwk.CycleState, s *State, nodes []fwk.NodeInfo) (*measures, error) {
	var start time.Time
	sample := state.ShouldRecordPluginMetrics()
	if sample {
		start = time.Now()
	}
	t := pl.measures.get()
	for _, ni := range nodes {
		node := ni.Node()
		if node == nil {
			pl.measures.put(t)
			return nil, fmt.Errorf("%s: node not found", Name)
		}
		t.nodes = append(t.nodes, node)
	}
	t.gens, t.entries = slices.Grow(t.gens[:0], len(nodes))[:len(nodes)], slices.Grow(t.entries[:0], len(nodes))[:len(nodes)]
	pl.envs.getAll(nodes, s.policies, t.gens, t.entries)
	w := pl.getWorker()
	defer pl.putWorker(w)
	for _, e := range t.entries {
		t.ms = append(t.ms, pl.measure(w, s, e))
	}
	if sample && len(nodes) > 0 {
		pl.metrics.duration.Observe(time.Since(start).Seconds() / float64(len(nodes)))
	}
	return t, nil
}

// Score does nothing: PreScore measured every feasible node, and
// NormalizeScore turns the measures into scores.
func (pl *Plugin) Score(context.Context, fwk.CycleState, *v1.Pod, fwk.NodeInfo) (int64, *fwk.Status) {
	return 0, nil
}

// measure is what NormalizeScore needs of e's node: the weighted sum of
// the policies' scores (NaN when one fails to evaluate) and the built-in
// preferences' raw components.
func (pl *Plugin) measure(w *worker, s *State, e *envEntry) measure {
	var m measure
	if s.scoring > 0 {
		m.policy = pl.score(w, s, e)
	}
	if s.want != nil {
		m.capability = s.want.Measure(e.location(), e.labels, e)
	}
	return m
}

// score returns the weighted sum on e's node, or NaN when a score fails
// to evaluate. Computed scores are counted in NormalizeScore, once per
// cycle rather than once per node.
func (pl *Plugin) score(w *worker, s *State, e *envEntry) float64 {
	total := 0.0
	for _, p := range s.policies {
		if !p.HasScore {
			continue
		}
		v, err := p.ScoreWith(w.ev, e.memo(p), &e.env, &s.pod)
		if err != nil {
			pl.metrics.err.Inc()
			pl.logger.V(4).Info("Policy score failed", "node", e.env.Name, "err", err)
			return math.NaN()
		}
		total += p.Weight * v
	}
	return total
}

// ScoreExtensions implements framework.ScorePlugin.
func (pl *Plugin) ScoreExtensions() framework.ScoreExtensions { return pl }

// NormalizeScore turns PreScore's measures into 0..100: the
// policies' weighted sums, compressed with the signed logarithm
// sign(s)·ln(1+|s|) so one huge penalty (say an unknown location's
// distance) does not flatten the differences between the others, then
// scaled linearly (the best node 100, the worst 0, all equal 100; a sum
// that failed to evaluate 0); roam's built-in preferences normalized by
// capability.Want.Normalize; the two combined by policyWeight and the
// built-in components' weights.
func (pl *Plugin) NormalizeScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, scores framework.NodeScoreList) *fwk.Status {
	s, ok := pl.stateOf(state)
	if !ok || s.measures == nil {
		return fwk.AsStatus(fmt.Errorf("%s: no cycle state (PreScore did not run)", Name))
	}
	t := s.measures
	s.measures = nil // this cycle is done with them
	defer pl.measures.put(t)
	n := len(scores)
	t.raws, t.pol, t.capab = slices.Grow(t.raws[:0], n)[:n], slices.Grow(t.pol[:0], n)[:n], slices.Grow(t.capab[:0], n)[:n]
	for i := range scores {
		j, ok := t.find(i, scores[i].Name)
		if !ok {
			return fwk.AsStatus(fmt.Errorf("%s: node %s has no measure in this cycle", Name, scores[i].Name))
		}
		t.raws[i], t.pol[i] = t.ms[j].capability, t.ms[j].policy
	}
	var policyW int64
	var lo, hi float64
	if s.scoring > 0 {
		policyW = *pl.args.PolicyWeight
		var scored int
		lo, hi, scored = compressAll(t.pol)
		if scored > 0 {
			pl.metrics.scored.Add(float64(scored * s.scoring))
		}
	}
	capW := s.want.Weight()
	if capW > 0 {
		s.want.Normalize(t.raws, t.capab)
	}
	for i := range scores {
		var total int64
		if policyW > 0 {
			switch v := t.pol[i]; {
			case math.IsNaN(v) || math.IsInf(v, 0):
			case hi == lo:
				total += policyW * framework.MaxNodeScore
			default:
				total += policyW * int64(math.Round((v-lo)/(hi-lo)*float64(framework.MaxNodeScore)))
			}
		}
		if capW > 0 {
			total += capW * t.capab[i]
		}
		if policyW+capW > 0 {
			total /= policyW + capW
		}
		scores[i].Score = total
	}
	return nil
}

// compressAll compresses vs in place and returns the range of the finite
// results and how many are not NaN (scores that evaluated).
func compressAll(vs []float64) (lo, hi float64, scored int) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i, v := range vs {
		v = compress(v)
		vs[i] = v
		if math.IsNaN(v) {
			continue
		}
		scored++
		if !math.IsInf(v, 0) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	return lo, hi, scored
}

// compress is the signed logarithm sign(v)·ln(1+|v|).
func compress(v float64) float64 {
	if v < 0 {
		return -math.Log1p(-v)
	}
	return math.Log1p(v)
}

// envCache keeps each node's expression environment, and the memos of
// the policies evaluated on it (policies.NodeMemo: the node-only parts of
// their expressions), for as long as its NodeInfo generation (bumped on
// every node or pod change) stays the same, so Filter and Score of one
// cycle, and later cycles, build them once. A plain map under a read lock:
// Filter reads it for every node of every cycle, and it is faster there
// than sync.Map. Entries are immutable once in the map: a policy seen for
// the first time on a node version gets a new entry.
type envCache struct {
	mu      sync.RWMutex
	m       map[string]*envEntry // by node name
	evs     sync.Pool            // *policies.Evaluator for memoizing
	metrics *counters
	// front is a four-way set-associative cache in front of m, by NodeInfo
	// generation (a counter global to all NodeInfos, bumped on every
	// change): one cache line read from an array instead of a lock and a
	// hash map probe. A set is one 64-byte line of frontWays slots, each a
	// generation and its entry, so a lookup picks the way without reading
	// the entries of other versions. A miss falls back to m.
	front []frontSlot
}

const (
	frontBits = 12
	frontSets = 1 << frontBits
	frontWays = 4
)

// frontSlot is one way of the front: the node version's generation and
// its entry, written entry first and read generation first, each whole; a
// reader that sees a generation with another version's entry finds the
// mismatch in the entry (e.gen) and takes the slow path.
type frontSlot struct {
	gen atomic.Int64 // 0: empty
	e   atomic.Pointer[envEntry]
}

// newEnvCache returns an empty cache. Its front, 256 KiB, is one large
// allocation, which the Go allocator aligns to a page, so each set is
// one cache line.
func newEnvCache(metrics *counters) *envCache {
	c := &envCache{metrics: metrics, front: make([]frontSlot, frontSets*frontWays)}
	c.evs.New = func() any { return policies.NewEvaluator() }
	return c
}

// frontSetOf returns the front's ways for node version gen.
func (c *envCache) frontSetOf(gen int64) []frontSlot {
	i := setIndex(gen, frontBits, frontWays)
	return c.front[i : i+frontWays : i+frontWays]
}

// lookup returns the front's entry for node version gen, or nil; it reads
// the set's line and not the entries (callers check the entry).
func (c *envCache) lookup(gen int64) *envEntry {
	set := c.frontSetOf(gen)
	for i := range set {
		if set[i].gen.Load() == gen {
			return set[i].e.Load()
		}
	}
	return nil
}

// At 5,000 nodes the entries do not stay in the CPU caches between
// cycles, and every cache line Filter touches costs a trip to memory. So
// what Filter reads sits in the entry's first 128 bytes (one pair of
// cache lines: entries are sized to a multiple of 128 bytes, which the
// allocator aligns), the rest after. Entries are immutable once in the
// map.
type envEntry struct {
	envHot
	memo0 policies.NodeMemo                                                        // the first policy's memo
	_     [128 - unsafe.Sizeof(envHot{}) - unsafe.Sizeof(policies.NodeMemo{})]byte // does not compile if the hot part outgrows 128 bytes
	envCold
	_ [entrySize - 128 - unsafe.Sizeof(envCold{})]byte
}

// entrySize is a multiple of 128 and one of the allocator's size classes.
const entrySize = 384

type envHot struct {
	gen        int64
	node       *v1.Node // the node object this version was built from
	locX, locY float64  // env.Location; locX is NaN when it is unknown
	dev0       device   // devices[0]
}

func (h *envHot) location() policies.Point {
	if math.IsNaN(h.locX) {
		return policies.Point{}
	}
	return policies.Point{X: h.locX, Y: h.locY, Known: true}
}

func (e *envEntry) labels() map[string]string { return e.node.Labels }

// FreeUnits implements capability.FreeUnits: the node's free units of r
// (before placing the pod).
func (e *envEntry) FreeUnits(r *capability.Request) int64 {
	if e.dev0.name == r.Handle {
		return int64(e.dev0.free)
	}
	for _, d := range e.devices {
		if d.name == r.Handle {
			return int64(d.free)
		}
	}
	return 0
}

type envCold struct {
	env     policies.NodeEnv
	devices []device            // env.Devices as a slice sorted by name: a scan reads no map
	more    []policies.NodeMemo // the other policies' memos
	// replaced is the generation of the node's version before this one (0:
	// none), whose verdicts are stale once this version's are recorded.
	replaced int64
}

// maxMemos bounds the policies memoized per node version (pods governed
// by more distinct policies than this evaluate the rest in full).
const maxMemos = 8

// memo returns p's memo on e's node (nil when not memoized: RequireWith
// and ScoreWith then evaluate in full).
func (e *envEntry) memo(p *policies.Policy) *policies.NodeMemo {
	if e.memo0.Policy() == p && p != nil {
		return &e.memo0
	}
	for i := range e.more {
		if e.more[i].Policy() == p {
			return &e.more[i]
		}
	}
	return nil
}

func (e *envEntry) memos() int {
	if e.memo0.Policy() == nil {
		return 0
	}
	return 1 + len(e.more)
}

func (e *envEntry) add(m policies.NodeMemo) {
	if e.memo0.Policy() == nil {
		e.memo0 = m
	} else {
		e.more = append(e.more, m)
	}
}

func (e *envEntry) hasAll(ps []*policies.Policy) bool {
	for _, p := range ps {
		if e.memo(p) == nil {
			return false
		}
	}
	return true
}

// get returns the entry of ni's node version with the memos of ps.
func (c *envCache) get(ni fwk.NodeInfo, ps []*policies.Policy) *envEntry {
	node, gen := ni.Node(), ni.GetGeneration()
	if e := c.lookup(gen); e != nil && e.gen == gen && e.node == node && e.hasAll(ps) {
		return e
	}
	return c.getSlow(ni, node, gen, ps)
}

// getAll is get for each of nodes (into out; gens is scratch space), in
// passes whose memory loads do not depend on each other, so that the CPU
// has many cache misses in flight at once instead of one after another:
// the front sets of all nodes, then the entries they point to.
func (c *envCache) getAll(nodes []fwk.NodeInfo, ps []*policies.Policy, gens []int64, out []*envEntry) {
	for i, ni := range nodes {
		gen := ni.GetGeneration()
		gens[i] = gen
		out[i] = c.lookup(gen)
	}
	for i, ni := range nodes {
		if e := out[i]; e == nil || e.gen != gens[i] || e.node != ni.Node() || !e.hasAll(ps) {
			out[i] = c.getSlow(ni, ni.Node(), gens[i], ps)
		}
	}
}

// remember puts e in the front: in the way that holds its version (the
// same version with more memos), else an empty way, else the oldest
// version's.
func (c *envCache) remember(e *envEntry) {
	set := c.frontSetOf(e.gen)
	slot := &set[wayFor(e.gen, frontWays, func(way int) int64 { return set[way].gen.Load() })]
	slot.e.Store(e)
	slot.gen.Store(e.gen)
}

// dropFront removes e (a node version no longer current) from the front.
func (c *envCache) dropFront(e *envEntry) {
	set := c.frontSetOf(e.gen)
	for i := range set {
		if set[i].e.Load() == e {
			set[i].gen.CompareAndSwap(e.gen, 0)
			set[i].e.CompareAndSwap(e, nil)
		}
	}
}

func (c *envCache) getSlow(ni fwk.NodeInfo, node *v1.Node, gen int64, ps []*policies.Policy) *envEntry {
	c.mu.RLock()
	e := c.m[node.Name]
	c.mu.RUnlock()
	if e != nil && e.gen == gen && e.node == node && e.hasAll(ps) {
		c.remember(e)
		return e
	}
	next := &envEntry{envHot: envHot{gen: gen, node: node}}
	if e != nil && e.gen == gen && e.node == node {
		next.env, next.devices, next.locX, next.locY, next.dev0 = e.env, e.devices, e.locX, e.locY, e.dev0
	} else {
		var requested map[v1.ResourceName]int64
		if r := ni.GetRequested(); r != nil {
			requested = r.GetScalarResources()
		}
		next.env = policies.NodeEnvFor(node, requested)
		next.devices = devicesOf(next.env.Devices)
		next.locX, next.locY = next.env.Location.X, next.env.Location.Y
		if !next.env.Location.Known {
			next.locX = math.NaN()
		}
		if len(next.devices) > 0 {
			next.dev0 = next.devices[0]
		}
		e = nil
	}
	ev := c.evs.Get().(*policies.Evaluator)
	for _, p := range ps {
		if next.memos() == maxMemos {
			break
		}
		m := policies.NodeMemo{}
		if e != nil {
			if old := e.memo(p); old != nil {
				m = *old
			}
		}
		if m.Policy() == nil {
			m = p.Memoize(ev, &next.env)
			if ok, known := p.MemoRequire(&m); known && c.metrics != nil && p.HasRequire() {
				if ok {
					c.metrics.pass.Inc()
				} else {
					c.metrics.fail.Inc()
				}
			}
		}
		next.add(m)
	}
	c.evs.Put(ev)
	if e != nil { // keep the memos of other policies, up to maxMemos
		for _, m := range append([]policies.NodeMemo{e.memo0}, e.more...) {
			if m.Policy() != nil && next.memos() < maxMemos && next.memo(m.Policy()) == nil {
				next.add(m)
			}
		}
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*envEntry)
	}
	prev := c.m[node.Name]
	if prev != nil {
		next.replaced = prev.replaced
		if prev.gen != gen {
			next.replaced = prev.gen
		}
	}
	c.m[node.Name] = next
	c.mu.Unlock()
	if prev != nil && prev.gen != gen {
		// The node's previous version leaves the front cache too, so the
		// front holds at most the current version of each node (and no
		// stale node objects).
		c.dropFront(prev)
	}
	c.remember(next)
	return next
}

func devicesOf(free map[string]float64) []device {
	if len(free) == 0 {
		return nil
	}
	out := make([]device, 0, len(free))
	for _, name := range slices.Sorted(maps.Keys(free)) {
		out = append(out, device{name: unique.Make(name), free: free[name]})
	}
	return out
}

func (c *envCache) forget(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(*v1.Node); ok {
		c.mu.Lock()
		if e := c.m[n.Name]; e != nil {
			c.dropFront(e)
		}
		delete(c.m, n.Name)
		c.mu.Unlock()
	}
}
