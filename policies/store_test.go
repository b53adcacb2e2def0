package policies

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

type changeLog struct {
	mu      sync.Mutex
	changes []Change
}

func (c *changeLog) add(ch Change) { c.mu.Lock(); c.changes = append(c.changes, ch); c.mu.Unlock() }
func (c *changeLog) last(key string) (Change, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.changes) - 1; i >= 0; i-- {
		if c.changes[i].Key == key {
			return c.changes[i], true
		}
	}
	return Change{}, false
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func pod(ns, name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations}}
}

func keys(r Resolution) []string {
	var out []string
	for _, p := range r.Policies {
		out = append(out, p.Key())
	}
	return out
}

// TestStore runs the Store against a real kube-apiserver, with one Store on
// a label-filtered factory (with events and metrics) and one on an
// unfiltered factory: both must give the same answers.
func TestStore(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range []string{"team-a", "team-b", DefaultGlobalNamespace} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "policies-test"})
	reg := prometheus.NewRegistry()

	filtered := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = PolicyLabel + "=true" }))
	store, err := NewStore(filtered, StoreOptions{Events: recorder, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	unfiltered := informers.NewSharedInformerFactory(cs, 0)
	store2, err := NewStore(unfiltered, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var log changeLog
	store.AddChangeHandler(log.add)
	filtered.Start(ctx.Done())
	unfiltered.Start(ctx.Done())
	defer filtered.Shutdown()
	defer unfiltered.Shutdown()
	defer cancel()
	poll(t, "sync", func() bool { return store.HasSynced() && store2.HasSynced() })
	stores := map[string]*Store{"filtered": store, "unfiltered": store2}
	ev := NewEvaluator()
	cms := cs.CoreV1().ConfigMaps("team-a")

	// An unlabelled ConfigMap is not a policy.
	plain := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "plain"}, Data: map[string]string{"match": "true"}}
	if _, err := cms.Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// create → valid
	v1, err := cms.Create(ctx, policyCM("team-a", "p1", map[string]string{
		"match":   `pod.labels["app"] == "a"`,
		"require": `node.context == "hospital"`,
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		poll(t, name+" p1 v1", func() bool { p, _ := s.Get("team-a", "p1"); return p != nil && p.ResourceVersion == v1.ResourceVersion })
	}
	if ch, ok := log.last("team-a/p1"); !ok || ch.Old != nil || ch.New == nil || ch.New.ResourceVersion != v1.ResourceVersion {
		t.Fatalf("change on create = %+v, %v", ch, ok)
	}
	for name, s := range stores {
		if p, _ := s.Get("team-a", "plain"); p != nil {
			t.Errorf("%s: unlabelled ConfigMap became a policy", name)
		}
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "a"}, nil))); len(got) != 1 || got[0] != "team-a/p1" {
			t.Errorf("%s: ForPod(team-a app=a) = %v, want [team-a/p1]", name, got)
		}
		if got := keys(s.ForPod(ev, pod("team-b", "x", map[string]string{"app": "a"}, nil))); len(got) != 0 {
			t.Errorf("%s: namespace isolation: ForPod(team-b app=a) = %v, want none", name, got)
		}
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "b"}, nil))); len(got) != 0 {
			t.Errorf("%s: ForPod(team-a app=b) = %v, want none", name, got)
		}
	}
	if got := testutil.ToFloat64(store.metrics.policies.WithLabelValues("valid")); got != 1 {
		t.Errorf("roam_policies{state=valid} = %v, want 1", got)
	}

	// update with a syntax error → Event, metrics, old version still answers
	bad := v1.DeepCopy()
	bad.Data["require"] = `node.context == "hospital" &&`
	bad.Data["settle"] = "ten seconds"
	v2, err := cms.Update(ctx, bad, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var event corev1.Event
	poll(t, "InvalidPolicy event on p1", func() bool {
		list, err := cs.CoreV1().Events("team-a").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=p1"})
		if err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Reason == InvalidPolicyReason {
				event = e
				return true
			}
		}
		return false
	})
	if event.Type != corev1.EventTypeWarning || event.InvolvedObject.Kind != "ConfigMap" ||
		!strings.Contains(event.Message, "require: 1:") || !strings.Contains(event.Message, "settle: 1:1:") ||
		!strings.Contains(event.Message, "^") || !strings.Contains(event.Message, "keeps serving") {
		t.Errorf("event = %s %s %s %q", event.Type, event.InvolvedObject.Kind, event.Reason, event.Message)
	}
	for name, s := range stores {
		poll(t, name+" sees p1 v2 invalid", func() bool { return s.Problems("team-a", "p1") != nil })
		if p, _ := s.Get("team-a", "p1"); p == nil || p.ResourceVersion != v1.ResourceVersion {
			t.Errorf("%s: after invalid update Get = %+v, want the last good version %s", name, p, v1.ResourceVersion)
		}
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "a"}, nil))); len(got) != 1 {
			t.Errorf("%s: last good version must keep governing: %v", name, got)
		}
	}
	if got := testutil.ToFloat64(store.metrics.policies.WithLabelValues("invalid")); got != 1 {
		t.Errorf("roam_policies{state=invalid} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(store.metrics.errors); got != 1 {
		t.Errorf("roam_policy_errors_total = %v, want 1", got)
	}
	if ch, _ := log.last("team-a/p1"); ch.New != nil && ch.New.ResourceVersion == v2.ResourceVersion {
		t.Error("an invalid version must not be announced as a change")
	}

	// fix → new version
	fixed := v2.DeepCopy()
	fixed.Data["require"] = `node.context == "store"`
	delete(fixed.Data, "settle")
	v3, err := cms.Update(ctx, fixed, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		poll(t, name+" p1 v3", func() bool { p, _ := s.Get("team-a", "p1"); return p != nil && p.ResourceVersion == v3.ResourceVersion })
		if s.Problems("team-a", "p1") != nil {
			t.Errorf("%s: problems remain after fix", name)
		}
	}
	if ch, _ := log.last("team-a/p1"); ch.Old == nil || ch.Old.ResourceVersion != v1.ResourceVersion || ch.New.ResourceVersion != v3.ResourceVersion {
		t.Errorf("change on fix = %+v", ch)
	}
	if p, _ := store.Get("team-a", "p1"); func() bool {
		env := &Env{Node: NodeEnv{Context: "store"}}
		ok, err := p.Require(ev, env)
		return !ok || err != nil
	}() {
		t.Error("the fixed version's require must be in effect")
	}

	// never valid → governs nothing, a pod naming it is blocked with a reason
	if _, err := cms.Create(ctx, policyCM("team-a", "broken", map[string]string{"match": "true", "require": "node.contxt == 1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		poll(t, name+" broken seen", func() bool { return s.Problems("team-a", "broken") != nil })
		r := s.ForPod(ev, pod("team-a", "x", nil, map[string]string{PolicyAnnotation: "broken"}))
		if len(r.Policies) != 0 || !strings.Contains(r.Blocked, "never been valid") || !strings.Contains(r.Blocked, "contxt") {
			t.Errorf("%s: pod naming never-valid policy: %+v", name, r)
		}
		r = s.ForPod(ev, pod("team-a", "x", nil, map[string]string{PolicyAnnotation: "nope"}))
		if len(r.Policies) != 0 || !strings.Contains(r.Blocked, "no policy") {
			t.Errorf("%s: pod naming missing policy: %+v", name, r)
		}
		r = s.ForPod(ev, pod("team-a", "x", nil, map[string]string{PolicyAnnotation: "p1"}))
		if got := keys(r); len(got) != 1 || got[0] != "team-a/p1" || r.Blocked != "" {
			t.Errorf("%s: pod naming p1: %+v", name, r)
		}
		// match "true" of a never-valid policy governs nothing
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "zzz"}, nil))); len(got) != 0 {
			t.Errorf("%s: never-valid policy governs %v", name, got)
		}
		// A pod in team-b cannot name team-a's policy.
		if r := s.ForPod(ev, pod("team-b", "x", nil, map[string]string{PolicyAnnotation: "p1"})); r.Blocked == "" {
			t.Errorf("%s: team-b pod naming team-a policy must be blocked: %+v", name, r)
		}
	}

	// roam-system governs every namespace
	if _, err := cs.CoreV1().ConfigMaps(DefaultGlobalNamespace).Create(ctx, policyCM(DefaultGlobalNamespace, "fleet", map[string]string{
		"match": `pod.labels["app"] == "a"`, "score": "node.battery"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		poll(t, name+" fleet", func() bool { p, _ := s.Get(DefaultGlobalNamespace, "fleet"); return p != nil })
		if got := keys(s.ForPod(ev, pod("team-b", "x", map[string]string{"app": "a"}, nil))); len(got) != 1 || got[0] != "roam-system/fleet" {
			t.Errorf("%s: ForPod(team-b) = %v, want [roam-system/fleet]", name, got)
		}
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "a"}, nil))); len(got) != 2 {
			t.Errorf("%s: ForPod(team-a) = %v, want both", name, got)
		}
		if r := s.ForPod(ev, pod("team-b", "x", nil, map[string]string{PolicyAnnotation: "fleet"})); len(r.Policies) != 1 {
			t.Errorf("%s: team-b pod naming a global policy: %+v", name, r)
		}
		if got := len(s.List()); got != 2 {
			t.Errorf("%s: List has %d policies, want 2 (p1, fleet)", name, got)
		}
	}

	// Removing the label makes it no policy (filtered informer: a delete).
	unl, _ := cs.CoreV1().ConfigMaps(DefaultGlobalNamespace).Get(ctx, "fleet", metav1.GetOptions{})
	unl.Labels = nil
	if _, err := cs.CoreV1().ConfigMaps(DefaultGlobalNamespace).Update(ctx, unl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// delete → gone
	if err := cms.Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		poll(t, name+" p1 gone", func() bool { p, _ := s.Get("team-a", "p1"); return p == nil })
		poll(t, name+" fleet unlabelled", func() bool { p, _ := s.Get(DefaultGlobalNamespace, "fleet"); return p == nil })
		if got := keys(s.ForPod(ev, pod("team-a", "x", map[string]string{"app": "a"}, nil))); len(got) != 0 {
			t.Errorf("%s: after delete ForPod = %v", name, got)
		}
	}
	if ch, _ := log.last("team-a/p1"); ch.New != nil || ch.Old == nil {
		t.Errorf("change on delete = %+v", ch)
	}
	if got := testutil.ToFloat64(store.metrics.errors); got != 2 {
		t.Errorf("roam_policy_errors_total = %v, want 2 (p1 v2, broken)", got)
	}
	var _ kubernetes.Interface = cs
}
