package publish

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/roam-dev/roam/agent/state"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/internal/testutil"
)

func createNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func waitNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, what string, cond func(*corev1.Node) bool) {
	t.Helper()
	var last *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = n
		return cond(n), nil
	})
	if err != nil {
		t.Fatalf("node %s: %s: %v; labels %v annotations %v", name, what, err, last.GetLabels(), last.GetAnnotations())
	}
}

// TestApplierOwnsOnlyItsKeys applies states to a Node of a real API server
// next to another field manager.
func TestApplierOwnsOnlyItsKeys(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	createNode(ctx, t, cs, "robot-1", map[string]string{"kubernetes.io/hostname": "robot-1", "roam.dev/operator-note": "x"})

	var yields [][]string
	a := NewNodeApplier(cs, "robot-1", ApplierOptions{OnYield: func(f []string, _ error) { yields = append(yields, f) }})
	b := 80.0
	s := state.State{Context: "hospital", Zone: "site-a", Location: &state.Location{X: 1.5, Y: -2}, Battery: &b,
		Labels: map[string]string{"roam.dev/floor": "2"}, Annotations: map[string]string{"roam.dev/mission": "deliver"}}
	if err := a.Write(ctx, s); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"roam.dev/context": "hospital", "topology.kubernetes.io/zone": "site-a", "roam.dev/floor": "2",
		"kubernetes.io/hostname": "robot-1", "roam.dev/operator-note": "x"} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	for k, v := range map[string]string{"roam.dev/location": "1.5,-2", "roam.dev/battery": "80", "roam.dev/mission": "deliver"} {
		if n.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, n.Annotations[k], v)
		}
	}
	var owned bool
	for _, mf := range n.ManagedFields {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			owned = true
			if strings.Contains(string(mf.FieldsV1.Raw), "hostname") || strings.Contains(string(mf.FieldsV1.Raw), "operator-note") {
				t.Errorf("roam-agent owns keys it never set: %s", mf.FieldsV1.Raw)
			}
		}
	}
	if !owned {
		t.Errorf("no managed fields of %s: %+v", FieldManager, n.ManagedFields)
	}

	// A key the state no longer sets is removed; keys of others stay.
	if err := a.Write(ctx, state.State{Context: "hospital"}); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
	if _, ok := n.Labels["roam.dev/floor"]; ok || n.Annotations["roam.dev/location"] != "" || n.Labels["roam.dev/operator-note"] != "x" {
		t.Errorf("after dropping keys: labels %v annotations %v", n.Labels, n.Annotations)
	}

	// An operator labels the zone by hand: the agent does not fight it.
	n.Labels["topology.kubernetes.io/zone"] = "operator-zone"
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(ctx, state.State{Context: "store", Zone: "site-b"}); err != nil {
		t.Fatalf("write with a conflicting key: %v", err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
	if n.Labels["topology.kubernetes.io/zone"] != "operator-zone" || n.Labels["roam.dev/context"] != "store" {
		t.Errorf("after a conflict: labels %v; want the operator's zone kept and the agent's context written", n.Labels)
	}
	if len(yields) != 1 || len(yields[0]) != 1 || yields[0][0] != ".metadata.labels.topology.kubernetes.io/zone" {
		t.Errorf("yields = %v", yields)
	}
}

// TestPublisherSurvivesUnreachableAPIServer cuts the agent off the API
// server, keeps sensing, and checks that the newest state lands on
// reconnection.
func TestPublisherSurvivesUnreachableAPIServer(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	createNode(ctx, t, cs, "robot-2", nil)

	u, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	px := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(cp.Config)
	cfg.Host = "https://" + px.Addr()
	cfg.TLSClientConfig.ServerName = u.Hostname()
	agentCS, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var writes sync.Map
	p := New(NewNodeApplier(agentCS, "robot-2", ApplierOptions{}), Options{Limits: DefaultLimits(), MaxBackoff: time.Second, WriteTimeout: 2 * time.Second,
		OnWrite: func(k Kind) { v, _ := writes.LoadOrStore(k, new(int)); *v.(*int)++ }})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()

	b := 90.0
	p.Update(state.State{Context: "hospital", Location: &state.Location{X: 0, Y: 0}, Battery: &b})
	waitNode(ctx, t, cs, "robot-2", "first state", func(n *corev1.Node) bool { return n.Labels["roam.dev/context"] == "hospital" })

	px.SetUp(false)
	for i := 1; i <= 5; i++ {
		b := 90.0 - float64(i)
		p.Update(state.State{Context: []string{"store", "warehouse"}[i%2], Location: &state.Location{X: float64(10 * i), Y: 0}, Battery: &b})
		time.Sleep(300 * time.Millisecond) // let the publisher try and fail
	}
	if n, _ := cs.CoreV1().Nodes().Get(ctx, "robot-2", metav1.GetOptions{}); n.Labels["roam.dev/context"] != "hospital" {
		t.Fatalf("a write got through the cut: %v", n.Labels)
	}
	px.SetUp(true)
	waitNode(ctx, t, cs, "robot-2", "newest state after reconnection", func(n *corev1.Node) bool {
		return n.Labels["roam.dev/context"] == "warehouse" && n.Annotations["roam.dev/location"] == "50,0" && n.Annotations["roam.dev/battery"] == "85"
	})
	stop()
	<-done
	if pub, ok := p.Published(); !ok || pub.Context != "warehouse" {
		t.Errorf("Published() = %+v", pub)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test deadline")
	}
}
