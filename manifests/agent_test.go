package manifests_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/agent/state"
)

const (
	agentDir       = "agent"
	agentNamespace = "roam-agent"
	agentName      = "roam-agent"
	nodeNameClaim  = "authentication.kubernetes.io/node-name"
)

// testAgent applies manifests/agent/ and checks, with a ServiceAccount
// token bound to an agent pod on one node, what the agent may change.
func testAgent(ctx context.Context, t *testing.T, a *applier, admin *rest.Config, cs kubernetes.Interface, w *warnings) {
	objs := build(t, agentDir)
	a.apply(ctx, t, objs)
	if ws := w.take(); len(ws) > 0 {
		t.Errorf("applying manifests/agent drew warnings: %q", ws)
	}
	a.apply(ctx, t, objs) // idempotent
	if t.Failed() {
		t.FailNow()
	}

	ds, err := cs.AppsV1().DaemonSets(agentNamespace).Get(ctx, agentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The DaemonSet tolerates roam's taint and every NoSchedule taint.
	taints := []corev1.Taint{{Key: "roam.dev/unreachable", Effect: corev1.TaintEffectNoSchedule},
		{Key: "roam.dev/unreachable", Effect: corev1.TaintEffectNoExecute}, {Key: "example.com/anything", Effect: corev1.TaintEffectNoSchedule}}
	for _, taint := range taints {
		ok := false
		for _, tol := range ds.Spec.Template.Spec.Tolerations {
			if tol.ToleratesTaint(&taint) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("the agent does not tolerate %v", taint)
		}
	}

	// Two robots; an agent pod on robot A (created as the DaemonSet
	// controller would, and admitted by Pod Security in its namespace).
	for _, n := range []string{"agent-robot-a", "agent-robot-b"} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{"kubernetes.io/hostname": n}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spec := ds.Spec.Template.Spec.DeepCopy()
	spec.NodeName = "agent-robot-a"
	pod, err := cs.CoreV1().Pods(agentNamespace).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "roam-agent-a",
		Labels: ds.Spec.Template.Labels}, Spec: *spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("an agent pod is refused in %s: %v", agentNamespace, err)
	}
	if ws := w.take(); len(ws) > 0 {
		t.Errorf("creating the agent pod drew warnings: %q", ws)
	}

	// A token bound to that pod, as the kubelet's projected token is.
	tr, err := cs.CoreV1().ServiceAccounts(agentNamespace).CreateToken(ctx, agentName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = tr.Status.Token
	agent, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The API server puts the pod's node into the token's user extra.
	ssr, err := agent.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := ssr.Status.UserInfo; u.Username != "system:serviceaccount:roam-agent:roam-agent" || fmt.Sprint(u.Extra[nodeNameClaim]) != "[agent-robot-a]" {
		t.Fatalf("the bound token authenticates as %q with extra %v; want the agent's ServiceAccount with %s [agent-robot-a]", u.Username, u.Extra, nodeNameClaim)
	}

	patchLabels := func(node string, labels map[string]string) error {
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
		_, err := agent.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	// The policy takes effect once the API server has loaded it.
	var probe error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		probe = patchLabels("agent-robot-b", map[string]string{state.ContextLabel: "probe"})
		return apierrors.IsForbidden(probe), nil
	})
	if err != nil {
		vap, _ := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "roam-agent-own-node", metav1.GetOptions{})
		t.Fatalf("the admission policy never denied a change of another Node: %v (last: %v); policy status %+v", err, probe, vap.Status)
	}

	// The agent's own publisher may write its own Node.
	b := 75.0
	app := publish.NewNodeApplier(agent, "agent-robot-a", publish.ApplierOptions{})
	if err := app.Write(ctx, state.State{Context: "hospital", Zone: "site-a", Location: &state.Location{X: 1, Y: 2}, Battery: &b,
		Labels: map[string]string{"roam.dev/floor": "2"}}); err != nil {
		t.Errorf("the agent publishing to its own Node: %v", err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "agent-robot-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[state.ContextLabel] != "hospital" || n.Annotations[state.LocationAnnotation] != "1,2" {
		t.Errorf("own Node after publishing: labels %v annotations %v", n.Labels, n.Annotations)
	}

	denied := func(what, wantMsg string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("%s: %v; want Forbidden with %q", what, err, wantMsg)
		}
	}
	denied("another robot's context", "may change only its own Node agent-robot-a, not agent-robot-b",
		publish.NewNodeApplier(agent, "agent-robot-b", publish.ApplierOptions{}).Write(ctx, state.State{Context: "hospital"}))
	denied("a non-roam label on its own Node", "only labels under roam.dev/",
		patchLabels("agent-robot-a", map[string]string{"example.com/x": "y"}))
	denied("removing the hostname label", "only labels under roam.dev/",
		patchLabels("agent-robot-a", map[string]string{"kubernetes.io/hostname": ""}))
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"example.com/a": "b"}}})
	_, err = agent.CoreV1().Nodes().Patch(ctx, "agent-robot-a", types.MergePatchType, body, metav1.PatchOptions{})
	denied("a non-roam annotation", "only annotations under roam.dev/", err)
	_, err = agent.CoreV1().Nodes().Patch(ctx, "agent-robot-a", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	denied("the Node's spec", "may not change a Node's spec", err)
	_, err = agent.CoreV1().Nodes().Patch(ctx, "agent-robot-a", types.MergePatchType, []byte(`{"status":{"capacity":{"roam.dev/x":"1"}}}`), metav1.PatchOptions{}, "status")
	if !apierrors.IsForbidden(err) {
		t.Errorf("the Node's status: %v, want Forbidden", err)
	}
	// RBAC: nodes get/patch only.
	if err := agent.CoreV1().Nodes().Delete(ctx, "agent-robot-a", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting its Node: %v, want Forbidden", err)
	}
	if _, err := agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Nodes: %v, want Forbidden", err)
	}
	// Other users are not affected by the policy.
	body, _ = json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{"example.com/x": "y"}}})
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "agent-robot-b", types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		t.Errorf("admin labelling a Node: %v", err)
	}
}
