package daemon

import (
	"context"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/fence/cgroup/cgrouptest"
	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/internal/testutil"
	"github.com/roam-dev/roam/policies"
)

// firstTime records the first time something was seen.
type firstTime struct {
	mu sync.Mutex
	at time.Time
}

func (f *firstTime) mark() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at.IsZero() {
		f.at = time.Now()
	}
}

func (f *firstTime) get() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}

// TestFencingAgainstTheControlPlane runs the assembled agent (fencing real
// processes in real cgroups) and roam-detector's controller against a real
// API server. The robot — its "kubelet" renewing the node Lease and its
// agent — reaches the API server through a TCP proxy the test cuts:
//   - a short cut freezes the robot's governed pod; when the robot is back
//     before roam removes anything, the pod is thawed;
//   - a long cut freezes it before roam-detector's removal of the pod is
//     observed (monotonic times on one machine), and on return the removed
//     pod's process is killed without having run after its freeze;
//   - the same across a detector leader change in the middle of the
//     silence: the new leader, with no warm-up, removes the pod only after
//     the agent froze it.
func TestFencingAgainstTheControlPlane(t *testing.T) {
	h := cgrouptest.Hierarchy(t, cgroup.V2)
	cp, cs := cptest.Start(t, controlplane.Options{})
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	ctx, cancel := context.WithTimeout(klog.NewContext(context.Background(), logger), 5*time.Minute)
	defer cancel()
	for _, ns := range []string{"roam-system", policies.FenceLeaseNamespace, "apps"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(t, err)
	}
	_, err := cs.CoreV1().ConfigMaps("apps").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data:       map[string]string{"match": `pod.labels["app"] == "web"`, "onNodeFailure": "reschedule"},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "robot-1"}}, metav1.CreateOptions{})
	must(t, err)
	web1 := startFencedPod(ctx, t, cs, h, "web-1")

	// The robot's side of the network.
	u, err := url.Parse(cp.Config.Host)
	must(t, err)
	px := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(cp.Config)
	cfg.Host = "https://" + px.Addr()
	cfg.TLSClientConfig.ServerName = u.Hostname()
	cfg.Timeout = 2 * time.Second
	robotCS, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	go renewNodeLease(ctx, robotCS, "robot-1")

	const fenceAfter = time.Second
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- Run(ctx, robotCS, Options{NodeName: "robot-1", ConfigFile: filepath.Join(t.TempDir(), "absent.yaml"),
			Limits: publish.DefaultLimits(), Fence: FenceOptions{After: fenceAfter, Cgroups: &h, StateDir: t.TempDir(),
				LeaseNamespace: policies.FenceLeaseNamespace, PolicyNamespace: "roam-system"}})
	}()
	defer func() {
		cancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	poll(ctx, t, "roam.dev/fence on the Node", nodeHas(cs, policies.FenceAnnotation, fenceAfter.String()))

	leaderCtx, loseLeadership := context.WithCancel(ctx)
	defer loseLeadership()
	ctrl := startDetector(leaderCtx, t, cs, 2*time.Second)
	waitFencedAndAlive(ctx, t, ctrl)

	// A short cut: frozen, then thawed when the robot is back in time.
	px.SetUp(false)
	cgrouptest.Eventually(t, "the pod frozen after a short cut", func() bool { f, _ := web1.cg.Frozen(); return f })
	px.SetUp(true)
	web1.proc.WaitCounting(t)
	if p, err := cs.CoreV1().Pods("apps").Get(ctx, "web-1", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("after a short cut the pod is gone or going (%v)", err)
	}
	waitFencedAndAlive(ctx, t, ctrl)

	// A long cut: frozen before the removal is observed; killed on return.
	web1.cutUntilRemoved(ctx, t, cs, px, nil)
	web1.killedOnReturn(t, px)

	// The same across a leader change half a second into the silence; the
	// new leader has no warm-up.
	web2 := startFencedPod(ctx, t, cs, h, "web-2")
	waitFencedAndAlive(ctx, t, ctrl)
	web2.cutUntilRemoved(ctx, t, cs, px, func() {
		time.Sleep(500 * time.Millisecond)
		loseLeadership()
		ctrl = startDetector(ctx, t, cs, 0)
	})
	web2.killedOnReturn(t, px)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fencedPod is a governed pod on robot-1 with a real process in its
// kubelet-style cgroup.
type fencedPod struct {
	name          string
	cg            *cgroup.Pod
	proc          *cgrouptest.Proc
	countAtFreeze int
}

func startFencedPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, h cgroup.Hierarchy, name string) *fencedPod {
	t.Helper()
	pod, err := cs.CoreV1().Pods("apps").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "robot-1", Containers: []corev1.Container{{Name: "app", Image: "web"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	_, ctrs := cgrouptest.MakePod(t, h, cgrouptest.Systemd, "besteffort", string(pod.UID), "app")
	p := &fencedPod{name: name, proc: cgrouptest.Start(t, ctrs[0])}
	p.proc.WaitCounting(t)
	p.cg, err = h.Find(string(pod.UID))
	must(t, err)
	return p
}

// cutUntilRemoved cuts the robot off, runs during (if any), and waits until
// roam-detector removes the pod; the pod must have been frozen before its
// removal was observed.
func (p *fencedPod) cutUntilRemoved(ctx context.Context, t *testing.T, cs kubernetes.Interface, px *testutil.Proxy, during func()) {
	t.Helper()
	var frozenAt, markedAt, deletedAt firstTime
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			if f, _ := p.cg.Frozen(); f && frozenAt.get().IsZero() {
				p.countAtFreeze = p.proc.Count()
				frozenAt.mark()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		for watchCtx.Err() == nil {
			pod, err := cs.CoreV1().Pods("apps").Get(watchCtx, p.name, metav1.GetOptions{})
			if err == nil {
				for _, c := range pod.Status.Conditions {
					if c.Type == corev1.DisruptionTarget && c.Reason == detector.ReasonNodeUnreachable {
						markedAt.mark()
					}
				}
			}
			if err == nil && pod.DeletionTimestamp != nil || apierrors.IsNotFound(err) {
				deletedAt.mark()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	cutAt := time.Now()
	px.SetUp(false)
	if during != nil {
		during()
	}
	poll(ctx, t, "roam-detector removing "+p.name, func(context.Context) (bool, error) { return !deletedAt.get().IsZero(), nil })
	stopWatch()
	f, m, d := frozenAt.get(), markedAt.get(), deletedAt.get()
	t.Logf("%s after the cut: frozen %v, DisruptionTarget %v, deletion observed %v", p.name, f.Sub(cutAt), m.Sub(cutAt), d.Sub(cutAt))
	if f.IsZero() || !f.Before(d) {
		t.Fatalf("%s was not frozen before its removal was observed (frozen %v, removed %v after the cut)", p.name, f.Sub(cutAt), d.Sub(cutAt))
	}
	if !m.IsZero() && !f.Before(m) {
		t.Errorf("%s was frozen %v after the cut, after roam marked it for removal (%v)", p.name, f.Sub(cutAt), m.Sub(cutAt))
	}
}

// killedOnReturn restores the robot's connection and waits until the
// removed pod's process is killed, checking it never ran after its freeze.
func (p *fencedPod) killedOnReturn(t *testing.T, px *testutil.Proxy) {
	t.Helper()
	px.SetUp(true)
	select {
	case <-p.proc.Done():
	case <-time.After(time.Minute):
		t.Fatalf("%s's process was not killed after the robot came back", p.name)
	}
	if n := p.proc.Count(); n != p.countAtFreeze {
		t.Errorf("%s ran after its freeze: counter %d, %d when frozen", p.name, n, p.countAtFreeze)
	}
}

// startDetector runs roam-detector's controller in-process, wired like
// cmd/roam-detector, until ctx ends (a lost leadership).
func startDetector(ctx context.Context, t *testing.T, cs kubernetes.Interface, warmup time.Duration) *detector.Controller {
	t.Helper()
	factory := informers.NewSharedInformerFactory(cs, 0)
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(detector.NodeLeaseNamespace))
	fenceFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(policies.FenceLeaseNamespace))
	policyFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = policies.PolicyLabel + "=true"
	}))
	store, err := policies.NewStore(policyFactory, policies.StoreOptions{})
	must(t, err)
	core := detector.DefaultCoreConfig()
	core.Warmup = warmup
	ctrl, err := detector.NewController(cs, factory, leaseFactory, detector.Options{Core: core, Policies: store,
		FenceLeases: fenceFactory, WaitFor: []cache.InformerSynced{store.HasSynced}})
	must(t, err)
	policyFactory.Start(ctx.Done())
	go func() { _ = ctrl.Run(ctx) }()
	return ctrl
}

func waitFencedAndAlive(ctx context.Context, t *testing.T, ctrl *detector.Controller) {
	t.Helper()
	poll(ctx, t, "the detector counting robot-1 as fenced and alive", func(context.Context) (bool, error) {
		_, mode := ctrl.Core().FenceFloor("robot-1")
		return mode == detector.FenceFenced && ctrl.Core().Status("robot-1", time.Now()).Phase == detector.PhaseAlive, nil
	})
}

// renewNodeLease plays the robot's kubelet: it renews the node Lease every
// second (nodeLeaseDurationSeconds 4) through the robot's connection.
func renewNodeLease(ctx context.Context, cs kubernetes.Interface, node string) {
	leases := cs.CoordinationV1().Leases(detector.NodeLeaseNamespace)
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		l, err := leases.Get(rctx, node, metav1.GetOptions{})
		switch {
		case err == nil:
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_, _ = leases.Update(rctx, l, metav1.UpdateOptions{})
		case apierrors.IsNotFound(err):
			_, _ = leases.Create(rctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: detector.NodeLeaseNamespace},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(4)),
					RenewTime: &metav1.MicroTime{Time: time.Now()}}}, metav1.CreateOptions{})
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
