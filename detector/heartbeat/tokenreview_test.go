package heartbeat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector/heartbeat"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/internal/heartbeat/wire"
	"github.com/roam-dev/roam/internal/testutil"
)

// The API server's TokenReview proves an agent's node only with a token of
// the agent's ServiceAccount bound to a pod on that node; when the API
// server is down no new session opens, and the existing ones keep working.
func TestTokenReviewProvesTheAgentsNode(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx := context.Background()
	const ns = "roam-agent"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"roam-agent", "app"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"robot-a", "robot-b"} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	auth := &heartbeat.TokenReviewer{Reviews: cs.AuthenticationV1().TokenReviews()}

	node, err := auth.Authenticate(ctx, testutil.PodBoundToken(ctx, t, cs, ns, "roam-agent", "robot-a"))
	if err != nil || node != "robot-a" {
		t.Fatalf("the agent's pod-bound token on robot-a proves %q, %v; want robot-a", node, err)
	}
	rejected := map[string]string{
		"unbound token of the agent's ServiceAccount": testutil.PodBoundToken(ctx, t, cs, ns, "roam-agent", ""),
		"another ServiceAccount's pod-bound token":    testutil.PodBoundToken(ctx, t, cs, ns, "app", "robot-a"),
		"garbage": "not-a-token",
	}
	for what, tok := range rejected {
		if node, err := auth.Authenticate(ctx, tok); !errors.Is(err, heartbeat.ErrUnauthenticated) {
			t.Errorf("%s: node %q, err %v; want ErrUnauthenticated", what, node, err)
		}
	}

	// A session issued while the API server is up survives its outage.
	sessions := heartbeat.NewSessions(clock.RealClock{}, time.Hour, nil)
	ses, err := sessions.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	tokenB := testutil.PodBoundToken(ctx, t, cs, ns, "roam-agent", "robot-b")
	if err := cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.StartAPIServer(context.Background()) })
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := auth.Authenticate(sctx, tokenB); err == nil || errors.Is(err, heartbeat.ErrUnauthenticated) {
		t.Errorf("authenticating while the API server is down: %v; want a non-authentication error (retry later)", err)
	}
	p := wire.NewMAC(ses.Key).Append(nil, wire.Datagram{Kind: wire.KindHeartbeat, Session: ses.ID, Seq: 1})
	if got, _, r := sessions.Open(p, time.Now()); r != wire.DropNone || got != "robot-a" {
		t.Errorf("robot-a's heartbeat during the outage: %q, %v", got, r)
	}
}
