package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/agent/fence"
	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/fence/lease"
	"github.com/roam-dev/roam/agent/metrics"
	"github.com/roam-dev/roam/agent/state"
	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/policies"
)

// FenceOptions configure fencing (docs/fencing.md).
type FenceOptions struct {
	// After is fenceAfter: the robot's governed pods are frozen this long
	// after the send time of the newest acknowledged heartbeat (0: the
	// robot is unfenced).
	After time.Duration
	// CgroupDir is where the host's cgroup filesystem is mounted
	// (/sys/fs/cgroup).
	CgroupDir string
	// KubeletCgroupRoot is the kubelet's --cgroup-root as name components
	// (empty: "/").
	KubeletCgroupRoot []string
	// StateDir keeps the newest acknowledgement and the freezable pods
	// across agent restarts (/run/roam, a tmpfs on the host).
	StateDir string
	// LeaseNamespace holds the robot's fence Lease.
	LeaseNamespace string
	// PolicyNamespace holds the policies that govern every namespace.
	PolicyNamespace string
	// Cgroups, when set, is used instead of detecting the hierarchy under
	// CgroupDir (tests lay out pod cgroups under a directory of their own).
	Cgroups *cgroup.Hierarchy
}

// fencing is the assembled fencing of one robot.
type fencing struct {
	fencer  *fence.Fencer
	renewer *fence.Renewer
	pods    *podSource
}

// setupFencing verifies that this agent can freeze the kubelet's pod
// cgroups and assembles the lease, the renewer and the fencer. It restores
// the lease first: a lease that ran out while no agent ran is acted on
// before anything else. An error means the robot is unfenced.
func setupFencing(ctx context.Context, client kubernetes.Interface, node string, o FenceOptions, m *metrics.Metrics,
	recorder record.EventRecorder, nodeRef *corev1.ObjectReference) (*fencing, error) {
	var h cgroup.Hierarchy
	if o.Cgroups != nil {
		h = *o.Cgroups
	} else {
		var err error
		if h, err = cgroup.Detect(o.CgroupDir, "/proc/self/mountinfo"); err != nil {
			return nil, err
		}
		h.Root = o.KubeletCgroupRoot
	}
	if err := h.Check(); err != nil {
		return nil, err
	}
	store := &lease.Store{Path: filepath.Join(o.StateDir, "fence-lease"), Boot: lease.BootTime}
	if err := store.MkdirAll(); err != nil {
		return nil, fmt.Errorf("fence state directory: %w", err)
	}
	lastAck, err := store.Restore(time.Now())
	if err != nil {
		// Unknown: count as expired, the safe side.
		klog.FromContext(ctx).Error(err, "Cannot restore the fence lease; fencing at once")
		lastAck = time.Time{}
	}
	l, err := lease.New(o.After, lastAck)
	if err != nil {
		return nil, fmt.Errorf("--fence-after: %w", err)
	}
	pods, err := newPodSource(client, node, o)
	if err != nil {
		return nil, err
	}
	obs := &fenceObserver{metrics: m, recorder: recorder, node: nodeRef, pods: pods, logger: klog.FromContext(ctx)}
	f := &fencing{
		pods:   pods,
		fencer: fence.New(l, h, pods, fence.Options{Observer: obs}),
		renewer: &fence.Renewer{Client: client, Namespace: o.LeaseNamespace, Node: node, Lease: l, Store: store,
			OnAck: func() { m.FenceAcks.Inc() }},
	}
	return f, nil
}

// run runs every part of the fencing until ctx ends; the fencer first.
func (f *fencing) run(ctx context.Context, spawn func(name string, fn func(context.Context) error)) {
	spawn("fencer", func(ctx context.Context) error { f.fencer.Run(ctx); return nil })
	f.pods.start(ctx.Done())
	spawn("fence pods snapshot", func(ctx context.Context) error { f.pods.keepSnapshot(ctx); return nil })
	spawn("fence lease", func(ctx context.Context) error { f.renewer.Run(ctx); return nil })
}

// withFence adds the roam.dev/fence annotation (value "": none) to a state
// the publisher writes.
func withFence(st state.State, value string) state.State {
	if value == "" {
		return st
	}
	ann := make(map[string]string, len(st.Annotations)+1)
	for k, v := range st.Annotations {
		ann[k] = v
	}
	ann[policies.FenceAnnotation] = value
	st.Annotations = ann
	return st
}

// podSource is the robot's pods as the fencer sees them: governed pods
// that roam moves on node failure may be frozen. Until its informers have
// synced (an agent restarted while the robot is cut off) it answers from
// the snapshot its predecessor kept.
type podSource struct {
	client   kubernetes.Interface
	node     string
	snapshot string
	pods     cache.Indexer
	synced   []cache.InformerSynced
	store    *policies.Store
	start    func(<-chan struct{})

	mu   sync.Mutex
	eval *policies.Evaluator
	refs map[string]*corev1.Pod // uid → pod, for events
	last []fence.Pod
}

func newPodSource(client kubernetes.Interface, node string, o FenceOptions) (*podSource, error) {
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}))
	policyFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = policies.PolicyLabel + "=true"
	}))
	store, err := policies.NewStore(policyFactory, policies.StoreOptions{GlobalNamespace: o.PolicyNamespace})
	if err != nil {
		return nil, fmt.Errorf("policy store: %w", err)
	}
	podInformer := podFactory.Core().V1().Pods().Informer()
	s := &podSource{client: client, node: node, snapshot: filepath.Join(o.StateDir, "fence-pods.json"),
		pods: podInformer.GetIndexer(), synced: []cache.InformerSynced{podInformer.HasSynced, store.HasSynced},
		store: store, eval: policies.NewEvaluator(), refs: map[string]*corev1.Pod{}}
	s.start = func(stop <-chan struct{}) {
		podFactory.Start(stop)
		policyFactory.Start(stop)
	}
	return s, nil
}

func (s *podSource) hasSynced() bool {
	for _, f := range s.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Cached implements fence.Pods.
func (s *podSource) Cached() []fence.Pod {
	if !s.hasSynced() {
		return s.loadSnapshot()
	}
	var pods []*corev1.Pod
	for _, o := range s.pods.List() {
		pods = append(pods, o.(*corev1.Pod))
	}
	return s.convert(pods)
}

// Fresh implements fence.Pods: a quorum list of the robot's pods.
func (s *podSource) Fresh(ctx context.Context) ([]fence.Pod, error) {
	list, err := s.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", s.node).String()})
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return s.convert(pods), nil
}

func (s *podSource) convert(pods []*corev1.Pod) []fence.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs = make(map[string]*corev1.Pod, len(pods)) // every caller passes all of the robot's pods
	out := make([]fence.Pod, 0, len(pods))
	for _, p := range pods {
		fp := fence.Pod{UID: string(p.UID), Name: p.Namespace + "/" + p.Name, Removed: removed(p)}
		if evict.Unmovable(p) == "" {
			f := policies.OnNodeFailure(s.store.ForPod(s.eval, p))
			fp.Freeze = f.Move && f.Freeze
		}
		s.refs[fp.UID] = p
		out = append(out, fp)
	}
	return out
}

// removed: roam removed the pod or is removing it.
func removed(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return true
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == evict.ReasonNodeUnreachable {
			return true
		}
	}
	return false
}

func (s *podSource) ref(uid string) *corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refs[uid]
}

// keepSnapshot writes the freezable pods to the snapshot whenever they
// change, for an agent that restarts while the robot is cut off.
func (s *podSource) keepSnapshot(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if s.hasSynced() {
			var keep []fence.Pod
			for _, p := range s.Cached() {
				if p.Freeze {
					keep = append(keep, p)
				}
			}
			if !slices.Equal(keep, s.last) {
				if err := writeJSON(s.snapshot, keep); err != nil {
					klog.FromContext(ctx).Error(err, "Cannot keep the freezable pods for a restart")
				} else {
					s.last = keep
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *podSource) loadSnapshot() []fence.Pod {
	b, err := os.ReadFile(s.snapshot)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "Cannot read the freezable pods kept by the previous agent")
		}
		return nil
	}
	var pods []fence.Pod
	if err := json.Unmarshal(b, &pods); err != nil {
		klog.ErrorS(err, "Cannot read the freezable pods kept by the previous agent", "file", s.snapshot)
		return nil
	}
	return pods
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fenceObserver turns the fencer's actions into metrics, Events and logs.
type fenceObserver struct {
	metrics  *metrics.Metrics
	recorder record.EventRecorder
	node     *corev1.ObjectReference
	pods     *podSource
	logger   klog.Logger
}

func (o *fenceObserver) podEvent(p fence.Pod, kind, reason, msg string) {
	if ref := o.pods.ref(p.UID); ref != nil {
		o.recorder.Event(ref, kind, reason, msg)
	}
}

func (o *fenceObserver) Fenced(revoked bool) {
	msg := "no heartbeat acknowledged within fenceAfter: freezing the pods roam would move"
	if revoked {
		msg = "roam-detector revoked the fence lease: freezing the pods roam would move"
	}
	o.recorder.Event(o.node, corev1.EventTypeWarning, "Fenced", msg)
}

func (o *fenceObserver) Frozen(p fence.Pod) {
	o.logger.Info("Froze pod", "pod", p.Name)
	o.podEvent(p, corev1.EventTypeWarning, "Frozen", "roam-agent froze the pod: its robot has lost the cluster")
}

func (o *fenceObserver) Thawed(p fence.Pod) {
	o.logger.Info("Thawed pod", "pod", p.Name)
	o.metrics.Fences.WithLabelValues("thawed").Inc()
	o.podEvent(p, corev1.EventTypeNormal, "Thawed", "roam-agent thawed the pod: its robot is back and the pod was not removed")
}

func (o *fenceObserver) Killed(p fence.Pod) {
	o.logger.Info("Killed frozen pod", "pod", p.Name)
	o.metrics.Fences.WithLabelValues("killed").Inc()
	o.podEvent(p, corev1.EventTypeNormal, "Killed", "roam-agent killed the frozen pod without letting it run again: roam removed it")
}

func (o *fenceObserver) Failed(p fence.Pod, op string, err error) {
	o.logger.Error(err, "Fencing a pod failed; it is unfenced", "pod", p.Name, "op", op)
	o.metrics.FenceErrors.WithLabelValues(op).Inc()
	o.podEvent(p, corev1.EventTypeWarning, "FenceFailed", fmt.Sprintf("roam-agent could not %s the pod: %v", op, err))
}

func (o *fenceObserver) FrozenPods(n int) { o.metrics.FencedPods.Set(float64(n)) }
