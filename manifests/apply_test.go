package manifests_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

const fieldManager = "roam-manifests-test"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
var podGroupGVR = schema.GroupVersionResource{Group: "scheduling.x-k8s.io", Version: "v1alpha1", Resource: "podgroups"}

// warnings collects the apiserver's warning headers (Pod Security admission
// reports a violating Deployment template as a warning).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// applier server-side applies built manifests, CRDs first.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config, cs kubernetes.Interface) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))}
}

// rank orders objects the way `kubectl apply` needs them to land: CRDs,
// then Namespaces, then everything else.
func rank(o *unstructured.Unstructured) int {
	switch o.GetKind() {
	case "CustomResourceDefinition":
		return 0
	case "Namespace":
		return 1
	}
	return 2
}

// apply server-side applies objs with strict field validation and waits for
// every CRD to be Established before applying what might use it.
func (a *applier) apply(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	objs = slices.Clone(objs)
	slices.SortStableFunc(objs, func(x, y *unstructured.Unstructured) int { return rank(x) - rank(y) })
	crdsPending := false
	for _, o := range objs {
		if rank(o) > 0 && crdsPending {
			a.mapper.Reset()
			crdsPending = false
		}
		a.applyOne(ctx, t, o)
		if o.GetKind() == "CustomResourceDefinition" {
			a.waitEstablished(ctx, t, o.GetName())
			crdsPending = true
		}
	}
}

func (a *applier) resource(t *testing.T, gvk schema.GroupVersionKind, namespace string) dynamic.ResourceInterface {
	t.Helper()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("no REST mapping for %s: %v", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(namespace)
	}
	return a.dyn.Resource(m.Resource)
}

func (a *applier) applyOne(ctx context.Context, t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	data, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	_, err = a.resource(t, o.GroupVersionKind(), o.GetNamespace()).Patch(ctx, o.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager, Force: ptr.To(true), FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Errorf("server-side apply of %s refused: %v", id, err)
	}
}

func (a *applier) waitEstablished(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd, err := a.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s not Established: %v", name, err)
	}
}

// TestApplyToAPIServer builds the base, the examples and the monitoring
// kustomization with kustomize's Go API and server-side applies every object
// to a real kube-apiserver (strict field validation); then checks the RBAC
// of both ServiceAccounts by impersonating them.
func TestApplyToAPIServer(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	w := &warnings{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = w
	a := newApplier(t, cfg, cs)

	base := build(t, baseDir)
	examples := build(t, examplesDir)
	monitoring := build(t, monitoringDir)

	t.Run("base", func(t *testing.T) {
		a.apply(ctx, t, base)
		// The roam-system namespace enforces the restricted Pod Security
		// Standard; a Deployment whose pod template violates it draws a
		// warning on apply.
		if ws := w.take(); len(ws) > 0 {
			t.Errorf("applying the base drew warnings: %q", ws)
		}
		for _, o := range base {
			if _, err := a.resource(t, o.GroupVersionKind(), o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
				t.Errorf("%s %s/%s not there after apply: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
		// Apply is idempotent: a second apply changes nothing and is accepted.
		a.apply(ctx, t, base)
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("restricted pods", func(t *testing.T) {
		// Create (dry run) the Deployments' pods in roam-system: Pod Security
		// admission (enforce: restricted) rejects a pod that is not hardened.
		for _, name := range []string{schedulerName, detectorName} {
			d, err := cs.AppsV1().Deployments(systemNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-dry-run", Namespace: systemNamespace, Labels: d.Spec.Template.Labels}, Spec: d.Spec.Template.Spec}
			if _, err := cs.CoreV1().Pods(systemNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("a %s pod is refused in %s: %v", name, systemNamespace, err)
			}
		}
		// The check has teeth: a pod that may escalate privileges is refused.
		bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "not-hardened", Namespace: systemNamespace},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := cs.CoreV1().Pods(systemNamespace).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
			t.Errorf("an unhardened pod in %s: err %v, want Forbidden by Pod Security admission", systemNamespace, err)
		}
	})

	t.Run("examples", func(t *testing.T) {
		a.apply(ctx, t, examples)
		w.take()
		pg, err := a.dyn.Resource(podGroupGVR).Namespace("warehouse-apps").Get(ctx, "pallet-team", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("PodGroup: %v", err)
		}
		if n, _, _ := unstructured.NestedInt64(pg.Object, "spec", "minMember"); n != 3 {
			t.Errorf("PodGroup minMember %d, want 3", n)
		}
	})

	t.Run("monitoring", func(t *testing.T) {
		raw, err := os.ReadFile("testdata/prometheus-operator-crds-subset.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var crds []*unstructured.Unstructured
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatal(err)
			}
			crds = append(crds, &unstructured.Unstructured{Object: m})
		}
		a.apply(ctx, t, append(crds, monitoring...))
	})

	t.Run("agent", func(t *testing.T) { testAgent(ctx, t, a, cp.Config, cs, w) })
	t.Run("detector RBAC", func(t *testing.T) { testDetectorRBAC(ctx, t, cp.Config, cs) })
	t.Run("scheduler RBAC", func(t *testing.T) { testSchedulerRBAC(ctx, t, cp.Config, cs) })

	// The real binaries, with the manifests' config and flags, as their
	// ServiceAccounts: the RBAC is not only tight but sufficient.
	bins := buildBinaries(t)
	t.Run("roam-scheduler runs as its ServiceAccount", func(t *testing.T) {
		testSchedulerRuns(ctx, t, bins, cp.Kubeconfig, cs, base)
	})
	t.Run("roam-detector runs as its ServiceAccount", func(t *testing.T) {
		testDetectorRuns(ctx, t, bins, cp.Kubeconfig, cs)
	})
}

// as returns clients that act as user (impersonation by the admin).
func as(t *testing.T, admin *rest.Config, user string) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

// allowed fails unless err is nil; forbidden fails unless err is Forbidden.
func allowed(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v, want allowed", what, err)
	}
}

func forbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: err %v, want Forbidden", what, err)
	}
}

// can asks the apiserver whether the impersonated user may do attrs.
func can(ctx context.Context, t *testing.T, cs kubernetes.Interface, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectAccessReview %+v: %v", attrs, err)
	}
	return r.Status.Allowed
}

func testPod(name, namespace, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": "medical-assistant"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "example"}}},
	}
}

func testDetectorRBAC(ctx context.Context, t *testing.T, admin *rest.Config, cs kubernetes.Interface) {
	const ns = "hospital-apps" // from the examples
	// Objects to act on, created as admin.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "robot-1", Labels: map[string]string{"roam.dev/context": "hospital"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "robot-credentials", Namespace: systemNamespace}, StringData: map[string]string{"token": "x"}}
	if _, err := cs.CoreV1().Secrets(systemNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"doomed", "evicted"} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, testPod(name, ns, "robot-1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nodeLease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "robot-1", Namespace: "kube-node-lease"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("robot-1"), LeaseDurationSeconds: ptr.To[int32](40)}}
	if _, err := cs.CoordinationV1().Leases("kube-node-lease").Create(ctx, nodeLease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	det, _ := as(t, admin, detectorSA)

	// No Secrets, anywhere, in any way.
	_, err := det.CoreV1().Secrets(systemNamespace).Get(ctx, "robot-credentials", metav1.GetOptions{})
	forbidden(t, "get a Secret in roam-system", err)
	_, err = det.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden(t, "list Secrets in all namespaces", err)
	for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
		if can(ctx, t, det, authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets"}) {
			t.Errorf("the detector may %s secrets", verb)
		}
	}

	// Nodes: read, taint, condition; never delete.
	_, err = det.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	allowed(t, "list Nodes", err)
	_, err = det.CoreV1().Nodes().Patch(ctx, "robot-1", types.StrategicMergePatchType,
		[]byte(`{"spec":{"taints":[{"key":"roam.dev/unreachable","effect":"NoSchedule"}]}}`), metav1.PatchOptions{})
	allowed(t, "patch a Node (taint)", err)
	if n, err := det.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{}); err == nil {
		n.Spec.Unschedulable = false
		_, err = det.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		allowed(t, "update a Node (taint list with resourceVersion)", err)
	} else {
		t.Errorf("get a Node: %v", err)
	}
	_, err = det.CoreV1().Nodes().Patch(ctx, "robot-1", types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"RoamReachable","status":"False","reason":"PhiAboveThreshold","message":"phi 9.1"}]}}`), metav1.PatchOptions{}, "status")
	allowed(t, "patch nodes/status (RoamReachable)", err)
	forbidden(t, "delete a Node", det.CoreV1().Nodes().Delete(ctx, "robot-1", metav1.DeleteOptions{}))

	// Heartbeats: node Leases, read only, only in kube-node-lease.
	_, err = det.CoordinationV1().Leases("kube-node-lease").List(ctx, metav1.ListOptions{})
	allowed(t, "list Leases in kube-node-lease", err)
	_, err = det.CoordinationV1().Leases("kube-node-lease").Get(ctx, "robot-1", metav1.GetOptions{})
	allowed(t, "get a node Lease", err)
	if can(ctx, t, det, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease", Name: "robot-1"}) {
		t.Errorf("the detector may update a robot's node Lease (it would forge heartbeats)")
	}
	_, err = det.CoordinationV1().Leases("default").List(ctx, metav1.ListOptions{})
	forbidden(t, "list Leases in default", err)

	// Its own leader Lease in roam-system, and only that one.
	leader := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: detectorName, Namespace: systemNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("roam-detector-0"), LeaseDurationSeconds: ptr.To[int32](15)}}
	got, err := det.CoordinationV1().Leases(systemNamespace).Create(ctx, leader, metav1.CreateOptions{})
	allowed(t, "create the leader Lease roam-system/roam-detector", err)
	if err == nil {
		got.Spec.HolderIdentity = ptr.To("roam-detector-1")
		_, err = det.CoordinationV1().Leases(systemNamespace).Update(ctx, got, metav1.UpdateOptions{})
		allowed(t, "update the leader Lease", err)
	}
	_, err = det.CoordinationV1().Leases(systemNamespace).Get(ctx, schedulerName, metav1.GetOptions{})
	forbidden(t, "get another Lease in roam-system", err)

	// Pods: DisruptionTarget condition, delete, evict; never create.
	_, err = det.CoreV1().Pods(ns).Patch(ctx, "doomed", types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"DisruptionTarget","status":"True","reason":"RoamNodeUnreachable","message":"robot-1 unreachable"}]}}`), metav1.PatchOptions{}, "status")
	allowed(t, "patch pods/status (DisruptionTarget)", err)
	allowed(t, "delete a Pod", det.CoreV1().Pods(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}))
	err = det.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "evicted", Namespace: ns}})
	allowed(t, "create a pods/eviction", err)
	_, err = det.CoreV1().Pods(ns).Create(ctx, testPod("forged", ns, ""), metav1.CreateOptions{})
	forbidden(t, "create a Pod", err)

	// Events, both APIs (a Node's Events live in "default").
	_, err = det.CoreV1().Events("default").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "robot-1.suspected", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "robot-1"}, Reason: "RoamSuspected", Type: corev1.EventTypeWarning,
	}, metav1.CreateOptions{})
	allowed(t, "create a core Event", err)
	_, err = det.EventsV1().Events("default").Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-1.suspected.v1", Namespace: "default"}, EventTime: metav1.NowMicro(),
		ReportingController: "roam.dev/roam-detector", ReportingInstance: "roam-detector-0", Action: "Taint", Reason: "RoamSuspected",
		Regarding: corev1.ObjectReference{Kind: "Node", Name: "robot-1"}, Type: corev1.EventTypeWarning,
	}, metav1.CreateOptions{})
	allowed(t, "create an events.k8s.io Event", err)

	// Policies, PDBs and owners: read only.
	_, err = det.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: "roam.dev/policy=true"})
	allowed(t, "list policy ConfigMaps in all namespaces", err)
	_, err = det.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
	allowed(t, "list PodDisruptionBudgets", err)
	_, err = det.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	allowed(t, "list ReplicaSets", err)
	_, err = det.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
	allowed(t, "list StatefulSets", err)
	_, err = det.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	allowed(t, "list Deployments", err)
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Verb: "update", Resource: "configmaps", Namespace: ns},
		{Verb: "delete", Resource: "configmaps", Namespace: ns},
		{Verb: "update", Group: "apps", Resource: "deployments", Namespace: ns},
		{Verb: "delete", Group: "apps", Resource: "statefulsets", Namespace: ns},
		{Verb: "update", Resource: "pods", Namespace: ns},
		{Verb: "create", Resource: "pods/exec", Namespace: ns},
		{Verb: "create", Resource: "serviceaccounts/token", Namespace: systemNamespace},
	} {
		if can(ctx, t, det, ra) {
			t.Errorf("the detector may %s %s/%s in %q", ra.Verb, ra.Group, ra.Resource, ra.Namespace)
		}
	}
}

func testSchedulerRBAC(ctx context.Context, t *testing.T, admin *rest.Config, cs kubernetes.Interface) {
	sch, dyn := as(t, admin, schedulerSA)

	_, err := sch.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	allowed(t, "list ConfigMaps in all namespaces", err)
	_, err = dyn.Resource(podGroupGVR).Namespace("").List(ctx, metav1.ListOptions{})
	allowed(t, "list PodGroups in all namespaces", err)
	_, err = dyn.Resource(podGroupGVR).Namespace("warehouse-apps").Patch(ctx, "pallet-team", types.MergePatchType,
		[]byte(`{"status":{"phase":"Pending"}}`), metav1.PatchOptions{}, "status")
	allowed(t, "patch podgroups/status", err)
	_, err = sch.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	allowed(t, "list Nodes (system:kube-scheduler)", err)
	_, err = sch.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	allowed(t, "list StorageClasses (system:volume-scheduler)", err)
	if !can(ctx, t, sch, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods/binding", Namespace: "hospital-apps"}) {
		t.Errorf("the scheduler may not bind pods")
	}
	if !can(ctx, t, sch, authorizationv1.ResourceAttributes{Verb: "get", Resource: "configmaps", Namespace: "kube-system", Name: "extension-apiserver-authentication"}) {
		t.Errorf("the scheduler may not read kube-system/extension-apiserver-authentication (delegated authn of :10259)")
	}

	// Leader election on the Lease named in scheduler/config.yaml.
	leader := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: schedulerName, Namespace: systemNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("roam-scheduler-0"), LeaseDurationSeconds: ptr.To[int32](15)}}
	got, err := sch.CoordinationV1().Leases(systemNamespace).Create(ctx, leader, metav1.CreateOptions{})
	allowed(t, "create the leader Lease roam-system/roam-scheduler", err)
	if err == nil {
		got.Spec.HolderIdentity = ptr.To("roam-scheduler-1")
		_, err = sch.CoordinationV1().Leases(systemNamespace).Update(ctx, got, metav1.UpdateOptions{})
		allowed(t, "update the leader Lease", err)
	}

	_, err = sch.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden(t, "list Secrets", err)
	if can(ctx, t, sch, authorizationv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: "hospital-apps"}) {
		t.Errorf("the scheduler may update ConfigMaps")
	}
}
