package detector

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
)

const (
	appsNS     = "apps"
	robotLabel = "roam.test/robot"
)

// fleet plays the robots' kubelets and a trivial scheduler: it renews each
// robot's node Lease every second (unless paused), binds pending pods
// through the pods/binding subresource and marks bound pods Running.
type fleet struct {
	t       *testing.T
	cs      kubernetes.Interface
	robots  []string
	mu      sync.Mutex
	paused  map[string]time.Time // robot → time of its last renewal
	renewed map[string]time.Time // robot → time of its last renewal
	rounds  int                  // renewal rounds finished
}

// pause stops renewing robots' Leases and returns the time of the latest
// of their last renewals: it waits for the renewal round under way, if
// any, to finish, so no renewal lands after it returns.
func (f *fleet) pause(robots ...string) time.Time {
	f.mu.Lock()
	for _, r := range robots {
		f.paused[r] = time.Time{}
	}
	round := f.rounds
	f.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		done := f.rounds > round
		f.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, r := range robots {
		if t := f.renewed[r]; t.After(last) {
			last = t
		}
		f.paused[r] = last
	}
	return last
}

func (f *fleet) resume(robots ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range robots {
		delete(f.paused, r)
	}
}

func (f *fleet) isPaused(r string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.paused[r]
	return ok
}

func (f *fleet) run(ctx context.Context) {
	leases := f.cs.CoordinationV1().Leases(NodeLeaseNamespace)
	// One loop renews every live robot each second, so robots paused
	// together had their last renewals within milliseconds of each other
	// (as when a site's uplink fails), however loaded the machine is.
	// Each robot's clock is off by a different amount (robot-3 by two
	// hours): the detector must not care.
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for i, r := range f.robots {
				if f.isPaused(r) {
					continue
				}
				l, err := leases.Get(ctx, r, metav1.GetOptions{})
				if err != nil {
					continue
				}
				skew := time.Duration(i*i) * 30 * time.Minute
				now := metav1.NewMicroTime(time.Now().Add(-skew))
				l.Spec.RenewTime = &now
				if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err == nil {
					f.mu.Lock()
					f.renewed[r] = time.Now()
					f.mu.Unlock()
				}
			}
			f.mu.Lock()
			f.rounds++
			f.mu.Unlock()
		}
	}()
	go func() {
		for ctx.Err() == nil {
			f.schedule(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func tainted(n *corev1.Node) bool { return hasTaint(n) }

// schedule binds pending pods to the robot with the fewest pods that is
// neither paused nor tainted (or to the robot its nodeSelector names), and
// marks bound pods of live robots Running.
func (f *fleet) schedule(ctx context.Context) {
	pods, err := f.cs.CoreV1().Pods(appsNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	load := map[string]int{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			load[p.Spec.NodeName]++
		}
	}
	usable := map[string]bool{}
	for _, r := range f.robots {
		n, err := f.cs.CoreV1().Nodes().Get(ctx, r, metav1.GetOptions{})
		usable[r] = err == nil && !tainted(n) && !f.isPaused(r)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Spec.NodeName == "" {
			target := ""
			if want := p.Spec.NodeSelector[robotLabel]; want != "" {
				if usable[want] {
					target = want
				}
			} else {
				cands := append([]string(nil), f.robots...)
				sort.SliceStable(cands, func(a, b int) bool { return load[cands[a]] < load[cands[b]] })
				for _, r := range cands {
					if usable[r] {
						target = r
						break
					}
				}
			}
			if target == "" {
				continue
			}
			err := f.cs.CoreV1().Pods(appsNS).Bind(ctx, &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
				Target:     corev1.ObjectReference{Kind: "Node", Name: target},
			}, metav1.CreateOptions{})
			if err == nil {
				load[target]++
			}
			continue
		}
		if p.Status.Phase != corev1.PodRunning && !f.isPaused(p.Spec.NodeName) {
			now := metav1.Now()
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			}
			p.Status.StartTime = &now
			_, _ = f.cs.CoreV1().Pods(appsNS).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		}
	}
}

// must fails the test (by panicking, which the testing package reports
// with the stack) when a setup call fails.
func must[T any](obj T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("test setup: %v", err))
	}
	return obj
}

func createRobot(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	now := metav1.Now()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			policies.ZoneLabel: "site-a", robotLabel: name, corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}
	n := must(cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}))
	must(cptest.UpdateNodeStatus(ctx, cs, name, func(n *corev1.Node) {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
	}))
	dur := int32(4) // nodeLeaseDurationSeconds: 4 → renew every 1 s
	holder := name
	rt := metav1.NewMicroTime(time.Now())
	must(cs.CoordinationV1().Leases(NodeLeaseNamespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: NodeLeaseNamespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: n.UID}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &rt},
	}, metav1.CreateOptions{}))
}

func policyCM(name, match string, extra map[string]string) *corev1.ConfigMap {
	// The test's robots run no agent (unfenced): duplicates accepted, or
	// their pods would wait for the unfenced timeout.
	data := map[string]string{"match": match, "onNodeFailure": "reschedule", "acceptDuplicates": "true"}
	for k, v := range extra {
		data[k] = v
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appsNS,
		Labels: map[string]string{policies.PolicyLabel: "true"}}, Data: data}
}

func podTemplate(app string, selector map[string]string) corev1.PodTemplateSpec {
	grace := int64(30)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			SchedulerName:                 "roam-test-binder", // no scheduler runs: the test binds
			NodeSelector:                  selector,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func podsOf(ctx context.Context, cs kubernetes.Interface, app string) []corev1.Pod {
	l, err := cs.CoreV1().Pods(appsNS).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil
	}
	return l.Items
}

func disruption(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.DisruptionTarget {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func nodeMarked(ctx context.Context, cs kubernetes.Interface, name string) (bool, *corev1.NodeCondition) {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, nil
	}
	return hasTaint(n), condition(n)
}

// TestIntegration runs the detector against a real kube-apiserver and
// kube-controller-manager (ReplicaSet and StatefulSet controllers), with the
// test playing three robots' kubelets.
func TestIntegration(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{ControllerManager: true})
	_ = cp
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	defer cancel()

	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appsNS}}, metav1.CreateOptions{}))
	robots := []string{"robot-1", "robot-2", "robot-3"}
	for _, r := range robots {
		createRobot(ctx, t, cs, r)
	}
	f := &fleet{t: t, cs: cs, robots: robots, paused: map[string]time.Time{}, renewed: map[string]time.Time{}}
	f.run(ctx)

	for _, cm := range []*corev1.ConfigMap{
		policyCM("web", `pod.labels["app"] == "web"`, nil),
		policyCM("db-soft", `pod.labels["app"] == "db-soft"`, map[string]string{"forceDelete": "false"}),
		policyCM("db-hard", `pod.labels["app"] == "db-hard"`, map[string]string{"forceDelete": "true"}),
	} {
		must(cs.CoreV1().ConfigMaps(appsNS).Create(ctx, cm, metav1.CreateOptions{}))
	}

	// The detector, in-process, wired like cmd/roam-detector.
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "roam-detector"})
	factory := informers.NewSharedInformerFactory(cs, 0)
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(NodeLeaseNamespace))
	policyFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = policies.PolicyLabel + "=true"
	}))
	store, err := policies.NewStore(policyFactory, policies.StoreOptions{Events: recorder})
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := NewController(cs, factory, leaseFactory, Options{
		// 2 of 3 robots lost must brake in this small fleet (the default
		// needs 3 suspected nodes).
		Core:     integrationCore(),
		Metrics:  metrics,
		Recorder: recorder,
		Policies: store,
		WaitFor:  nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	policyFactory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	waitFor(ctx, t, "policies", 30*time.Second, func(context.Context) (bool, error) {
		return store.HasSynced() && len(store.List()) == 3, nil
	})

	// Workloads: web (Deployment, 2 pods) lands on robot-1 and robot-2; the
	// two single-pod StatefulSets are pinned to robot-3.
	two, one := int32(2), int32(1)
	must(cs.AppsV1().Deployments(appsNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate("web", nil)},
	}, metav1.CreateOptions{}))
	waitFor(ctx, t, "web pods running", 60*time.Second, func(ctx context.Context) (bool, error) {
		pods := podsOf(ctx, cs, "web")
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 2, nil
	})
	for _, app := range []string{"db-soft", "db-hard"} {
		must(cs.AppsV1().StatefulSets(appsNS).Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: app},
			Spec: appsv1.StatefulSetSpec{Replicas: &one, ServiceName: app,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
				Template: podTemplate(app, map[string]string{robotLabel: "robot-3"})},
		}, metav1.CreateOptions{}))
	}
	waitFor(ctx, t, "StatefulSet pods running", 60*time.Second, func(ctx context.Context) (bool, error) {
		for _, app := range []string{"db-soft", "db-hard"} {
			pods := podsOf(ctx, cs, app)
			if len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
	var victim corev1.Pod
	for _, p := range podsOf(ctx, cs, "web") {
		if p.Spec.NodeName == "robot-1" {
			victim = p
		}
	}
	if victim.Name == "" {
		t.Fatalf("no web pod on robot-1: %+v", podsOf(ctx, cs, "web"))
	}
	// Let the detector finish its warm-up with everyone alive.
	time.Sleep(4 * time.Second)
	if n := testutil.ToFloat64(metrics.Suspicions); n != 0 {
		t.Fatalf("%v suspicions while every robot renews", n)
	}

	t.Run("lost robot's pod is replaced", func(t *testing.T) {
		stopped := f.pause("robot-1")
		var replacedAfter time.Duration
		waitFor(ctx, t, "DisruptionTarget, deletion and a replacement", 60*time.Second, func(ctx context.Context) (bool, error) {
			pods := podsOf(ctx, cs, "web")
			gone, replaced := true, false
			for _, p := range pods {
				if p.UID == victim.UID {
					c := disruption(&p)
					gone = p.DeletionTimestamp != nil && c != nil && c.Reason == ReasonNodeUnreachable
				} else if p.CreationTimestamp.After(stopped.Add(-time.Second)) {
					replaced = true
				}
			}
			if gone && replaced && replacedAfter == 0 {
				replacedAfter = time.Since(stopped)
			}
			return gone && replaced, nil
		})
		// The redeploy time roam aims at is measured by the simulator; here
		// a generous bound catches a regression to minutes (stock's grace
		// period) on a loaded machine.
		t.Logf("robot-1's last renewal to its web pod marked, deleted and replaced by the ReplicaSet: %v", replacedAfter.Round(10*time.Millisecond))
		if replacedAfter > 30*time.Second {
			t.Errorf("replacement %v after robot-1's last renewal, want well under 30 s", replacedAfter)
		}
		if tnt, c := nodeMarked(ctx, cs, "robot-1"); !tnt || c == nil || c.Status != corev1.ConditionFalse {
			t.Errorf("robot-1 taint %v, condition %+v; want tainted, RoamReachable=False", tnt, c)
		}
		if v := testutil.ToFloat64(metrics.Evictions.WithLabelValues(ReasonUnreachable)); v != 1 {
			t.Errorf("roam_evictions_total{reason=unreachable} = %v, want 1", v)
		}
		if n := testutil.ToFloat64(metrics.Suspicions); n != 1 {
			t.Errorf("roam_suspicions_total = %v, want 1", n)
		}

		// The robot comes back: taint gone, condition True; its kubelet
		// finishes the pod's deletion. It stays away longer than its lease
		// (4 s), so the outage is not learned as jitter: a silence between
		// the suspicion point and the lease duration would enter its window
		// and make its next loss slower to detect (and the brake test below
		// needs both robots suspected within one eviction delay).
		time.Sleep(time.Until(stopped.Add(5 * time.Second)))
		f.resume("robot-1")
		waitFor(ctx, t, "robot-1 untainted", 60*time.Second, func(ctx context.Context) (bool, error) {
			tnt, c := nodeMarked(ctx, cs, "robot-1")
			return !tnt && c != nil && c.Status == corev1.ConditionTrue, nil
		})
		zero := int64(0)
		_ = cs.CoreV1().Pods(appsNS).Delete(ctx, victim.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		waitFor(ctx, t, "web running again", 60*time.Second, func(ctx context.Context) (bool, error) {
			running := 0
			for _, p := range podsOf(ctx, cs, "web") {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					running++
				}
			}
			return running == 2, nil
		})
		// The replacement ran: roam_redeploy_seconds{reason="unreachable"} has
		// it once the detector's pod informer has seen it Running (the API
		// server showed it to this test first).
		waitFor(ctx, t, "roam_redeploy_seconds observed", 30*time.Second, func(context.Context) (bool, error) {
			return histCount(metrics) > 0, nil
		})
		if n := histCount(metrics); n != 1 {
			t.Errorf("roam_redeploy_seconds observations = %d, want 1", n)
		}
	})

	t.Run("partition brake", func(t *testing.T) {
		before := map[string]bool{}
		for _, p := range podsOf(ctx, cs, "web") {
			before[string(p.UID)] = true
		}
		evictions := testutil.ToFloat64(metrics.Evictions.WithLabelValues(ReasonUnreachable))
		f.pause("robot-1", "robot-2")
		waitFor(ctx, t, "both robots suspected", 60*time.Second, func(ctx context.Context) (bool, error) {
			t1, _ := nodeMarked(ctx, cs, "robot-1")
			t2, _ := nodeMarked(ctx, cs, "robot-2")
			return t1 && t2, nil
		})
		// Several eviction delays later still nothing is deleted.
		time.Sleep(5 * time.Second)
		if v := testutil.ToFloat64(metrics.BrakeActive); v != 1 {
			t.Errorf("roam_eviction_brake_active = %v, want 1", v)
		}
		if v := testutil.ToFloat64(metrics.Evictions.WithLabelValues(ReasonUnreachable)); v != evictions {
			t.Errorf("evictions under the brake: %v → %v", evictions, v)
		}
		for _, p := range podsOf(ctx, cs, "web") {
			if p.DeletionTimestamp != nil || !before[string(p.UID)] {
				t.Errorf("pod %s changed under the brake (deleting %v)", p.Name, p.DeletionTimestamp != nil)
			}
		}
		for _, r := range []string{"robot-1", "robot-2"} {
			if _, c := nodeMarked(ctx, cs, r); c == nil || c.Status != corev1.ConditionUnknown || c.Reason != ReasonEvictionBrake {
				t.Errorf("%s condition %+v, want Unknown/%s", r, c, ReasonEvictionBrake)
			}
		}
		f.resume("robot-1", "robot-2")
		waitFor(ctx, t, "robots untainted", 60*time.Second, func(ctx context.Context) (bool, error) {
			t1, _ := nodeMarked(ctx, cs, "robot-1")
			t2, _ := nodeMarked(ctx, cs, "robot-2")
			return !t1 && !t2, nil
		})
		if v := testutil.ToFloat64(metrics.BrakeActive); v != 0 {
			t.Errorf("brake still active after the robots returned")
		}
	})

	t.Run("StatefulSet pods force-deleted only with forceDelete", func(t *testing.T) {
		soft, hard := podsOf(ctx, cs, "db-soft")[0], podsOf(ctx, cs, "db-hard")[0]
		f.pause("robot-3")
		waitFor(ctx, t, "db-hard replaced", 60*time.Second, func(ctx context.Context) (bool, error) {
			pods := podsOf(ctx, cs, "db-hard")
			return len(pods) == 1 && pods[0].UID != hard.UID, nil
		})
		waitFor(ctx, t, "db-soft marked and terminating", 30*time.Second, func(ctx context.Context) (bool, error) {
			pods := podsOf(ctx, cs, "db-soft")
			return len(pods) == 1 && pods[0].UID == soft.UID && pods[0].DeletionTimestamp != nil && disruption(&pods[0]) != nil, nil
		})
		time.Sleep(3 * time.Second)
		pods := podsOf(ctx, cs, "db-soft")
		if len(pods) != 1 || pods[0].UID != soft.UID {
			t.Errorf("db-soft-0 (forceDelete: false) was removed: %+v", pods)
		} else if g := pods[0].DeletionGracePeriodSeconds; g == nil || *g == 0 {
			t.Errorf("db-soft-0 deleted with grace %v, want its own 30 s", g)
		}
		f.resume("robot-3")
	})
}

// integrationCore is the default configuration with a short warm-up, and a
// brake that engages with 2 of 3 robots lost (the default needs 3 suspected
// nodes).
func integrationCore() CoreConfig {
	c := DefaultCoreConfig()
	c.Warmup, c.BrakeMinNodes = 3*time.Second, 2
	return c
}
