// Package policy is the RoamPolicy scheduler plugin: it places the pods
// that roam policies govern. PreFilter resolves a pod's policies once per
// scheduling cycle; Filter requires every governing policy's `require` and
// rejects robots tainted roam.dev/unreachable; Score adds the policies'
// scores by weight, normalized to 0..100. A pod no policy governs is
// skipped at every extension point, so roam-scheduler places it exactly as
// the default profile would.
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
	workers   sync.Pool             // *worker: Filter and Score run in parallel
	envs      envCache
	cycles    atomic.Uint64 // numbers the cycles PreFilter sees
}

// worker is one goroutine's evaluator and environment: evaluation
// allocates nothing.
type worker struct {
	ev  *policies.Evaluator
	env policies.Env
}

// State is what PreFilter leaves in the cycle state of a governed pod.
// Other roam plugins read it through Governing.
type State struct {
	// Policies govern the pod (sorted by key); all requires must hold.
	Policies []*policies.Policy
	pod      policies.PodEnv
	scoring  int // how many of Policies have a score
	envs     *envCache
	cycle    uint64 // this cycle's number (Filter's scores are for it)
}

// Clone implements fwk.StateData; State is read-only after PreFilter.
func (s *State) Clone() fwk.StateData { return s }

// Governing returns the policies governing the pod of this cycle, as
// RoamPolicy's PreFilter resolved them (nil when none, or when RoamPolicy
// is not enabled in the profile).
func Governing(state fwk.CycleState) []*policies.Policy {
	if s, ok := readState(state); ok {
		return s.Policies
	}
	return nil
}

// NodeEnv returns RoamPolicy's cached expression environment of nodeInfo's
// node when RoamPolicy governs the pod of this cycle (nil otherwise), so
// other roam plugins need not parse the node again. It is read-only.
func NodeEnv(state fwk.CycleState, nodeInfo fwk.NodeInfo) *policies.NodeEnv {
	if s, ok := readState(state); ok && s.envs != nil && nodeInfo.Node() != nil {
		return &s.envs.get(nodeInfo, s.Policies).env
	}
	return nil
}

// Device is a node's free units of one extended resource, its name
// interned so comparing names compares pointers.
type Device struct {
	Name unique.Handle[string]
	Free float64
}

// CachedNode is RoamPolicy's cached view of one node version: its
// expression environment and its free devices. It is read-only.
type CachedNode struct {
	Env *policies.NodeEnv
	// Location is Env.Location (a copy in the entry's first cache lines).
	Location policies.Point
	// Devices are Env.Devices as a slice (sorted by name): a scan reads no
	// map.
	Devices []Device
	dev0    Device // Devices[0], in the entry's first cache lines
}

// Free returns the free units of the extended resource name (0 when the
// node has none).
func (c CachedNode) Free(name unique.Handle[string]) float64 {
	if c.dev0.Name == name {
		return c.dev0.Free
	}
	for _, d := range c.Devices {
		if d.Name == name {
			return d.Free
		}
	}
	return 0
}

// Node returns RoamPolicy's cached view of nodeInfo's node when RoamPolicy
// governs the pod of this cycle (ok false otherwise), so other roam plugins
// need not parse the node again.
func Node(state fwk.CycleState, nodeInfo fwk.NodeInfo) (CachedNode, bool) {
	if s, ok := readState(state); ok && s.envs != nil && nodeInfo.Node() != nil {
		e := s.envs.peek(nodeInfo) // the environment is the same whatever the memos
		if e == nil {
			e = s.envs.get(nodeInfo, s.Policies)
		}
		return CachedNode{Env: &e.env, Location: e.location(), Devices: e.devices, dev0: e.dev0}, true
	}
	return CachedNode{}, false
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
	pl := &Plugin{handle: h, store: store, args: args, logger: logger, metrics: registerMetrics()}
	pl.workers.New = func() any { return &worker{ev: policies.NewEvaluator()} }
	pl.envs.metrics = pl.metrics
	pl.envs.evs.New = func() any { return policies.NewEvaluator() }
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
// reason; a pod no policy governs is skipped.
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
	s := &State{Policies: res.Policies, pod: policies.PodEnvFor(pod), envs: &pl.envs, cycle: pl.cycles.Add(1)}
	for _, p := range res.Policies {
		if p.HasScore {
			s.scoring++
		}
	}
	state.Write(stateKey, s)
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin: the state does
// not depend on other pods (node environments are rebuilt from the
// NodeInfo the framework passes, which includes added/removed pods).
func (pl *Plugin) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter requires every governing policy's require on nodeInfo's node.
func (pl *Plugin) Filter(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, ok := readState(state)
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
	e := pl.envs.get(nodeInfo, s.Policies)
	status := pl.require(s, e)
	if status.IsSuccess() && s.scoring > 0 {
		// Score the node now, while its entry is in the CPU cache: Score
		// (after all Filters, when it no longer is) reads the result.
		w := pl.getWorker()
		e.score, e.scoreCycle = pl.score(w, s, e), s.cycle
		pl.putWorker(w)
	}
	if sample {
		pl.metrics.duration.Observe(time.Since(start).Seconds())
	}
	return status
}

// require checks every policy's require on e's node: from the node's memo
// when the require reads only the node (evaluated, and counted, once per
// node version), else evaluated for the pod.
func (pl *Plugin) require(s *State, e *envEntry) *fwk.Status {
	var w *worker
	defer func() {
		if w != nil {
			pl.putWorker(w)
		}
	}()
	for _, p := range s.Policies {
		m := e.memo(p)
		ok, known := p.MemoRequire(m)
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

// PreScore skips scoring when no governing policy has a score.
func (pl *Plugin) PreScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	if s, ok := readState(state); !ok || s.scoring == 0 {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score is the weighted sum of the governing policies' scores. The raw
// float64 travels to NormalizeScore bit-for-bit in the int64 (the
// framework range-checks scores only after normalization); a node whose
// score fails to evaluate gets the lowest normalized score.
func (pl *Plugin) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s, ok := readState(state)
	if !ok {
		return 0, fwk.AsStatus(fmt.Errorf("%s: no cycle state (PreFilter did not run)", Name))
	}
	var start time.Time
	sample := state.ShouldRecordPluginMetrics()
	if sample {
		start = time.Now()
	}
	var total float64
	if e := pl.envs.peek(nodeInfo); e != nil && e.scoreCycle == s.cycle {
		total = e.score // Filter scored this node version in this cycle
	} else {
		w := pl.getWorker()
		total = pl.score(w, s, pl.envs.get(nodeInfo, s.Policies))
		pl.putWorker(w)
	}
	if sample {
		pl.metrics.duration.Observe(time.Since(start).Seconds())
	}
	return int64(math.Float64bits(total)), nil
}

// score returns the weighted sum on e's node, or NaN when a score fails
// to evaluate. Computed scores are counted in NormalizeScore, once per
// cycle rather than once per node.
func (pl *Plugin) score(w *worker, s *State, e *envEntry) float64 {
	total := 0.0
	for _, p := range s.Policies {
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

// NormalizeScore maps the raw weighted sums onto 0..100: it compresses
// each with the signed logarithm sign(s)·ln(1+|s|), so one huge penalty
// (say an unknown location's distance) does not flatten the differences
// between the others, then scales linearly: the best node 100, the worst
// 0, all equal 100. Non-finite sums (evaluation errors) get 0.
func (pl *Plugin) NormalizeScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, scores framework.NodeScoreList) *fwk.Status {
	lo, hi := math.Inf(1), math.Inf(-1)
	scored := 0
	for _, s := range scores {
		v := compress(math.Float64frombits(uint64(s.Score)))
		if math.IsNaN(v) {
			continue
		}
		scored++
		if math.IsInf(v, 0) {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if s, ok := readState(state); ok && scored > 0 {
		pl.metrics.scored.Add(float64(scored * s.scoring))
	}
	for i := range scores {
		v := compress(math.Float64frombits(uint64(scores[i].Score)))
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			scores[i].Score = framework.MinNodeScore
		case hi == lo:
			scores[i].Score = framework.MaxNodeScore
		default:
			scores[i].Score = int64(math.Round((v - lo) / (hi - lo) * float64(framework.MaxNodeScore)))
		}
	}
	return nil
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
	// front is a direct-mapped cache in front of m, by NodeInfo
	// generation (a counter global to all NodeInfos, bumped on every
	// change): one load from a small array instead of a lock and a hash
	// map probe. A miss, or a slot another node version took, falls back
	// to m.
	front [frontSize]atomic.Pointer[envEntry]
}

const frontSize = 1 << 14

// At 5,000 nodes the entries do not stay in the CPU caches between
// cycles, and every cache line Filter and Score touch costs a trip to
// memory. So what Score and RoamCapability's Score read sits in the
// entry's first 64 bytes (one cache line), what Filter reads in the first
// 128 (one pair: entries are sized to a multiple of 128 bytes, which the
// allocator aligns), the rest after.
//
// An entry is immutable once in the map but for the score Filter leaves
// for Score: a node is filtered and scored by one goroutine at a time, and
// cycles do not overlap.
type envEntry struct {
	envHot
	_     [64 - unsafe.Sizeof(envHot{})]byte // does not compile if envHot outgrows a cache line
	memo0 policies.NodeMemo                  // the first policy's memo
	envCold
	_ [entrySize - 64 - unsafe.Sizeof(policies.NodeMemo{}) - unsafe.Sizeof(envCold{})]byte
}

// entrySize is a multiple of 128 and one of the allocator's size classes.
const entrySize = 384

type envHot struct {
	gen  int64
	node *v1.Node // the node object this version was built from
	// score is the policies' weighted score Filter computed in cycle
	// scoreCycle.
	scoreCycle uint64
	score      float64
	locX, locY float64 // env.Location; locX is NaN when it is unknown
	dev0       Device  // devices[0]
}

func (h *envHot) location() policies.Point {
	if math.IsNaN(h.locX) {
		return policies.Point{}
	}
	return policies.Point{X: h.locX, Y: h.locY, Known: true}
}

type envCold struct {
	env     policies.NodeEnv
	devices []Device
	more    []policies.NodeMemo // the other policies' memos
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
	slot := &c.front[uint64(gen)&(frontSize-1)]
	if e := slot.Load(); e != nil && e.gen == gen && e.node == node && e.hasAll(ps) {
		return e
	}
	return c.getSlow(ni, node, gen, slot, ps)
}

// peek returns the front cache's entry of ni's node version, with
// whatever memos it has, or nil: it reads only the entry's first cache
// line.
func (c *envCache) peek(ni fwk.NodeInfo) *envEntry {
	node, gen := ni.Node(), ni.GetGeneration()
	if e := c.front[uint64(gen)&(frontSize-1)].Load(); e != nil && e.gen == gen && e.node == node {
		return e
	}
	return nil
}

func (c *envCache) getSlow(ni fwk.NodeInfo, node *v1.Node, gen int64, slot *atomic.Pointer[envEntry], ps []*policies.Policy) *envEntry {
	c.mu.RLock()
	e := c.m[node.Name]
	c.mu.RUnlock()
	if e != nil && e.gen == gen && e.node == node && e.hasAll(ps) {
		slot.Store(e)
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
	c.m[node.Name] = next
	c.mu.Unlock()
	if prev != nil && prev.gen != gen {
		// The node's previous version leaves the front cache too, so the
		// front holds at most the current version of each node (and no
		// stale node objects).
		c.front[uint64(prev.gen)&(frontSize-1)].CompareAndSwap(prev, nil)
	}
	slot.Store(next)
	return next
}

func devicesOf(free map[string]float64) []Device {
	if len(free) == 0 {
		return nil
	}
	out := make([]Device, 0, len(free))
	for _, name := range slices.Sorted(maps.Keys(free)) {
		out = append(out, Device{Name: unique.Make(name), Free: free[name]})
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
			c.front[uint64(e.gen)&(frontSize-1)].CompareAndSwap(e, nil)
		}
		delete(c.m, n.Name)
		c.mu.Unlock()
	}
}
