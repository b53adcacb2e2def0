package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunAgainstAPIServer runs the command's run() against a real
// kube-apiserver: it must win leader election (Lease roam-detector in
// roam-system), become ready and serve its metrics.
func TestRunAgainstAPIServer(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "roam-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	o, err := parseFlags(flag.NewFlagSet("roam-detector", flag.ContinueOnError),
		[]string{"--kubeconfig", cp.Kubeconfig, "--metrics-addr", addr, "--leader-elect-retry-period=500ms"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()

	base := fmt.Sprintf("http://%s", addr)
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		code, body := get(base + "/readyz")
		return code == http.StatusOK && strings.Contains(body, "leader"), nil
	}); err != nil {
		t.Fatalf("never ready as leader: %v", err)
	}
	l, err := cs.CoordinationV1().Leases("roam-system").Get(ctx, "roam-detector", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		t.Fatalf("leader Lease: %v %+v", err, l)
	}
	if code, _ := get(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	code, body := get(base + "/metrics")
	for _, m := range []string{"roam_nodes{state=\"alive\"}", "roam_heartbeats_total", "roam_eviction_brake_active", "roam_evictions_total{reason=\"unreachable\"}", "roam_policies"} {
		if code != http.StatusOK || !strings.Contains(body, m) {
			t.Errorf("/metrics (%d) lacks %s", code, m)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("run did not return after cancel")
	}
}
