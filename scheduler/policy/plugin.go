// Package policy is the RoamPolicy scheduler plugin: it places the pods
// that roam policies govern.
//
//   - PreFilter (prefilter.go) resolves the pod's policies into read-only
//     cycle state and, when a policy's require has a node-object part,
//     returns the nodes where it holds (the framework filters no others);
//   - Filter (filter.go) requires every governing policy's require and
//     rejects robots tainted roam.dev/unreachable;
//   - PreScore, Score and NormalizeScore (score.go) add the policies'
//     scores by weight and roam's built-in preferences (package
//     capability: free devices, preferred NFD features, nearness to the
//     pod's target), normalized to 0..100;
//   - EnqueueExtensions (hints.go) requeue a rejected pod only after a
//     change that can make it pass, and a policy change requeues the pods
//     it governs.
//
// The node-only parts of policies are evaluated once per node version
// (package nodecache). A pod no policy governs and that carries no roam
// annotation is skipped at every extension point, so roam-scheduler places
// it exactly as the default profile would.
package policy

import (
	"context"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/parallelize"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
	"github.com/roam-dev/roam/scheduler/policy/nodecache"
)

// Name is the plugin's name in the registry and in configurations.
const Name = "RoamPolicy"

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
	handle       framework.Handle
	store        *policies.Store
	args         RoamPolicyArgs
	weights      capability.Weights // the built-in preferences' weights (args)
	logger       klog.Logger
	metrics      *counters
	nodes        nodecache.Cache
	narrowings   narrowings // PreFilter's last narrowings
	parallelizer parallelize.Parallelizer
	// evaluators hold one policies.Evaluator (a reusable expression VM) per
	// goroutine evaluating at a time: Filter and narrowing run in parallel.
	evaluators sync.Pool
	podLister  corelisters.PodLister // the scheduler's pods (nil without an informer factory)
	podsSync   cache.InformerSynced  // true once the scheduler runs
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

// newPlugin wires a plugin around store (unit tests pass their own, and
// a nil handle).
func newPlugin(h framework.Handle, store *policies.Store, args RoamPolicyArgs, logger klog.Logger) *Plugin {
	pl := &Plugin{handle: h, store: store, args: args, logger: logger, metrics: registerMetrics(),
		weights:      capability.Weights{Device: *args.DeviceWeight, Feature: *args.FeatureWeight, Location: *args.LocationWeight},
		parallelizer: parallelize.NewParallelizer(parallelize.DefaultParallelism)}
	pl.evaluators.New = func() any { return policies.NewEvaluator() }
	opts := nodecache.Options{Memoized: pl.countMemo}
	if h != nil {
		pl.parallelizer = h.Parallelizer()
		if h.SnapshotSharedLister() != nil {
			opts.Authoritative = pl.inSnapshot
		}
	}
	pl.nodes = nodecache.New(opts)
	if h != nil && h.SharedInformerFactory() != nil {
		pods := h.SharedInformerFactory().Core().V1().Pods()
		pl.podLister = pods.Lister()
		pl.podsSync = pods.Informer().HasSynced
		// Forget the cached versions of deleted nodes.
		_, _ = h.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: pl.forgetNode,
		})
	}
	return pl
}

// Name implements framework.Plugin.
func (pl *Plugin) Name() string { return Name }

// inSnapshot reports whether ni is the scheduler snapshot's NodeInfo of
// its node, rather than a copy preemption or nominated pods made.
func (pl *Plugin) inSnapshot(ni fwk.NodeInfo) bool {
	got, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(ni.Node().Name)
	return err == nil && got == ni
}

func (pl *Plugin) forgetNode(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(interface{ GetName() string }); ok {
		pl.nodes.Forget(n.GetName())
	}
}

// countMemo counts a node-only require evaluated while memoizing (once
// per node version).
func (pl *Plugin) countMemo(p *policies.Policy, m *policies.NodeMemo) {
	if ok, known := p.MemoRequire(m); known && p.HasRequire() {
		if ok {
			pl.metrics.pass.Inc()
		} else {
			pl.metrics.fail.Inc()
		}
	}
}

// evaluator lends the calling goroutine an Evaluator; release returns it.
func (pl *Plugin) evaluator() *policies.Evaluator { return pl.evaluators.Get().(*policies.Evaluator) }
func (pl *Plugin) release(ev *policies.Evaluator) { pl.evaluators.Put(ev) }

func hasUnreachableTaint(node *v1.Node) bool {
	for i := range node.Spec.Taints {
		if node.Spec.Taints[i].Key == policies.UnreachableTaint {
			return true
		}
	}
	return false
}
