package contextcheck_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
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
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/contextcheck"
	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/server"
)

const camera corev1.ResourceName = "roam.dev/camera"

func repoPath(t *testing.T, rel string) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", rel)
}

// must panics (the testing package reports it with the stack) when a
// setup call fails.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("test setup: %v", err))
	}
	return v
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// robots play the kubelets: renew each robot's node Lease every second
// and mark pods bound to a robot Running.
func robots(ctx context.Context, cs kubernetes.Interface, names ...string) {
	go func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if i%5 == 0 {
				for _, n := range names {
					l, err := cs.CoordinationV1().Leases(detector.NodeLeaseNamespace).Get(ctx, n, metav1.GetOptions{})
					if err != nil {
						continue
					}
					now := metav1.NewMicroTime(time.Now())
					l.Spec.RenewTime = &now
					_, _ = cs.CoordinationV1().Leases(detector.NodeLeaseNamespace).Update(ctx, l, metav1.UpdateOptions{})
				}
			}
			pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodRunning {
					continue
				}
				now := metav1.Now()
				p.Status.Phase = corev1.PodRunning
				p.Status.StartTime = &now
				p.Status.Conditions = append(p.Status.Conditions,
					corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now})
				_, _ = cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
	}()
}

func addRobot(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, sensed string) {
	t.Helper()
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110"), camera: resource.MustParse("1")}
	n := must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{policies.ContextLabel: sensed, corev1.LabelHostname: name}},
	}, metav1.CreateOptions{}))
	// admission adds node.kubernetes.io/not-ready; a ready robot's lifecycle controller removes it
	n = must(cptest.UpdateNode(ctx, cs, n.Name, func(n *corev1.Node) { n.Spec.Taints = nil }))
	now := metav1.Now()
	n = must(cptest.UpdateNodeStatus(ctx, cs, n.Name, func(n *corev1.Node) {
		n.Status = corev1.NodeStatus{Capacity: alloc, Allocatable: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady,
			Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}}
	}))
	dur, holder, rt := int32(4), name, metav1.NewMicroTime(time.Now())
	must(cs.CoordinationV1().Leases(detector.NodeLeaseNamespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: detector.NodeLeaseNamespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: n.UID}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &rt},
	}, metav1.CreateOptions{}))
}

func deployment(ns, app string, requests corev1.ResourceList) *appsv1.Deployment {
	one, grace := int32(1), int64(30)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{SchedulerName: "roam-scheduler", TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{Name: app, Image: "example.invalid/" + app + ":1",
						Resources: corev1.ResourceRequirements{Requests: requests, Limits: corev1.ResourceList{camera: requests[camera]}}}}},
			},
		},
	}
}

func podsOf(ctx context.Context, cs kubernetes.Interface, ns, app string) []corev1.Pod {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil
	}
	return l.Items
}

// TestContextRedeploy runs context redeployment against a real
// kube-apiserver and kube-controller-manager with roam-scheduler
// in-process (manifests/scheduler/config.yaml); the test plays the robots'
// kubelets. Robot r1 (hospital) runs the medical assistant; r1 drives into
// the store; after settle (2 s) the pod is evicted through the Eviction API
// with DisruptionTarget/RoamContextChanged, its replacement runs on r2
// (hospital), and the shelf scanner, Pending for lack of a store robot,
// lands on r1.
func TestContextRedeploy(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{ControllerManager: true})
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	defer cancel()
	if err := controlplane.InstallCRDs(ctx, cp.Config, repoPath(t, "manifests/crds/scheduling.x-k8s.io_podgroups.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{policies.DefaultGlobalNamespace, "hospital-apps", "store-apps"} {
		must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "medical-assistant", Namespace: "hospital-apps", Labels: map[string]string{policies.PolicyLabel: "true"}},
			Data: map[string]string{"match": `pod.labels["app"] == "medical-assistant"`,
				"require": `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`, "onContextChange": "reschedule", "settle": "2s"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shelf-scanner", Namespace: "store-apps", Labels: map[string]string{policies.PolicyLabel: "true"}},
			Data: map[string]string{"match": `pod.labels["app"] == "shelf-scanner"`, "require": `node.context == "store"`, "settle": "2s"}},
	} {
		must(cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}))
	}

	off := false
	sched, err := server.Start(ctx, server.Config{ConfigFile: repoPath(t, "manifests/scheduler/config.yaml"),
		Overrides: server.Overrides{Kubeconfig: cp.Kubeconfig, LeaderElect: &off}})
	if err != nil {
		t.Fatalf("starting roam-scheduler: %v", err)
	}
	defer func() {
		if err := sched.Stop(); err != nil {
			t.Errorf("roam-scheduler: %v", err)
		}
	}()

	// The context controller, wired as in cmd/roam-detector.
	reg := prometheus.NewRegistry()
	metrics := must(detector.NewMetrics(reg))
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "roam-detector"})
	policyFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = policies.PolicyLabel + "=true"
	}))
	store := must(policies.NewStore(policyFactory, policies.StoreOptions{Events: recorder}))
	evictor := must(evict.New(cs, evict.Options{Limits: evict.DefaultLimits(), Recorder: recorder,
		Metrics: evict.Metrics{Evictions: metrics.Evictions, Redeploy: metrics.Redeploy}}))
	ctrl := must(contextcheck.NewController(cs, informers.NewSharedInformerFactory(cs, 0), contextcheck.Options{
		Policies: store, Evictor: evictor, Recorder: recorder, WaitFor: []cache.InformerSynced{store.HasSynced}}))
	policyFactory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()

	addRobot(ctx, t, cs, "r1", "hospital")
	robots(ctx, cs, "r1", "r2")
	must(cs.AppsV1().Deployments("hospital-apps").Create(ctx, deployment("hospital-apps", "medical-assistant",
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), camera: resource.MustParse("1")}), metav1.CreateOptions{}))
	var first corev1.Pod
	waitFor(ctx, t, "medical-assistant Running on r1", func(ctx context.Context) (bool, error) {
		for _, p := range podsOf(ctx, cs, "hospital-apps", "medical-assistant") {
			if p.Spec.NodeName == "r1" && p.Status.Phase == corev1.PodRunning {
				first = p
				return true, nil
			}
		}
		return false, nil
	})
	addRobot(ctx, t, cs, "r2", "hospital")
	must(cs.AppsV1().Deployments("store-apps").Create(ctx, deployment("store-apps", "shelf-scanner",
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}), metav1.CreateOptions{}))
	waitFor(ctx, t, "shelf-scanner Pending: no store robot", func(ctx context.Context) (bool, error) {
		for _, p := range podsOf(ctx, cs, "store-apps", "shelf-scanner") {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && p.Spec.NodeName == "" {
					return true, nil
				}
			}
		}
		return false, nil
	})

	// r1 drives into the store.
	must(cptest.UpdateNode(ctx, cs, "r1", func(n *corev1.Node) { n.Labels[policies.ContextLabel] = "store" }))
	changed := time.Now()

	var evictedAt time.Time
	waitFor(ctx, t, "the medical assistant evicted with DisruptionTarget/RoamContextChanged", func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("hospital-apps").Get(ctx, first.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Reason == contextcheck.ReasonContextChanged && p.DeletionTimestamp != nil {
				evictedAt = c.LastTransitionTime.Time // set by the evictor as it evicts
				return true, nil
			}
		}
		return false, nil
	})
	// The condition's time is the eviction's own (the pod's
	// DeletionTimestamp would add its 30 s grace); it has second precision,
	// so allow 1 s of the 2 s settle.
	if d := evictedAt.Sub(changed); d < time.Second {
		t.Errorf("evicted %v after the context change, before the 2s settle", d)
	}
	// The test-kubelet finishes the pod's termination.
	zero := int64(0)
	_ = cs.CoreV1().Pods("hospital-apps").Delete(ctx, first.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})

	waitFor(ctx, t, "the replacement Running on r2", func(ctx context.Context) (bool, error) {
		for _, p := range podsOf(ctx, cs, "hospital-apps", "medical-assistant") {
			if p.UID != first.UID && p.Spec.NodeName == "r2" && p.Status.Phase == corev1.PodRunning {
				return true, nil
			}
		}
		return false, nil
	})
	waitFor(ctx, t, "the shelf scanner Running on r1", func(ctx context.Context) (bool, error) {
		for _, p := range podsOf(ctx, cs, "store-apps", "shelf-scanner") {
			if p.Spec.NodeName == "r1" && p.Status.Phase == corev1.PodRunning {
				return true, nil
			}
		}
		return false, nil
	})
	waitFor(ctx, t, "roam_redeploy_seconds{reason=context}", func(context.Context) (bool, error) {
		return testutil.CollectAndCount(metrics.Redeploy) == 1, nil
	})
	if got := testutil.ToFloat64(metrics.Evictions.WithLabelValues(detector.ReasonContext)); got != 1 {
		t.Errorf("roam_evictions_total{reason=context} = %v, want 1", got)
	}
	waitFor(ctx, t, "the RoamContextChanged event", func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events("hospital-apps").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Reason == contextcheck.ReasonContextChanged && e.InvolvedObject.Name == first.Name {
				return true, nil
			}
		}
		return false, nil
	})
	// The replacement is not evicted in turn (r2 still qualifies), and
	// nothing else was.
	if got := testutil.ToFloat64(metrics.Evictions.WithLabelValues(detector.ReasonContext)); got != 1 {
		t.Errorf("roam_evictions_total{reason=context} = %v, want 1", got)
	}
}
