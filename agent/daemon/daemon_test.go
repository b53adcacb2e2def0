package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func poll(ctx context.Context, t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func nodeHas(cs kubernetes.Interface, key, value string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return n.Labels[key] == value || n.Annotations[key] == value, nil
	}
}

// TestAgentEndToEnd runs the assembled agent against a real API server:
// the state file and the endpoint reach the Node, bad input draws a 400
// or a Warning Event, metrics count both, and it shuts down on cancel.
func TestAgentEndToEnd(t *testing.T) {
	_, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "robot-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "run", "state.yaml")
	sock := filepath.Join(dir, "run", "agent.sock")
	metricsAddr := freeAddr(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, cs, Options{NodeName: "robot-1", ConfigFile: filepath.Join(dir, "absent.yaml"),
			StateFile: stateFile, StateListen: "unix://" + sock, MetricsAddr: metricsAddr, Limits: publish.DefaultLimits()})
	}()

	// The file.
	poll(ctx, t, "state directory", func(context.Context) (bool, error) {
		_, err := os.Stat(filepath.Dir(stateFile))
		return err == nil, nil
	})
	if err := os.WriteFile(stateFile+".tmp", []byte("context: hospital\nzone: site-a\nbattery: 64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(stateFile+".tmp", stateFile); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "context from the file", nodeHas(cs, "roam.dev/context", "hospital"))

	// A bad file: a Warning Event on the Node naming the field; the Node
	// keeps the last good state.
	if err := os.WriteFile(stateFile, []byte("context: hospital\nlocation: {x: .inf, y: 0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "a Warning Event for the bad file", func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "robot-1").String()})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "InvalidState" && strings.Contains(e.Message, "location.x") {
				return true, nil
			}
		}
		return false, nil
	})

	// The endpoint.
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	putState := func(body string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://agent/v1/state", bytes.NewBufferString(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := putState(`{"context":"store","location":{"x":3,"y":4}}`); code != http.StatusNoContent {
		t.Fatalf("PUT: %d", code)
	}
	poll(ctx, t, "state from the endpoint", nodeHas(cs, "roam.dev/location", "3,4"))
	if code := putState(`{"context":"store","battery":101}`); code != http.StatusBadRequest {
		t.Fatalf("bad PUT: %d", code)
	}
	if n, _ := cs.CoreV1().Nodes().Get(ctx, "robot-1", metav1.GetOptions{}); n.Labels["roam.dev/context"] != "store" {
		t.Errorf("after a bad PUT: labels %v", n.Labels)
	}

	// Metrics.
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", metricsAddr))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{`roam_agent_publishes_total{kind="labels"}`, `roam_agent_state_errors_total{source="file"} 1`, `roam_agent_state_errors_total{source="http"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s/healthz", metricsAddr)); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the agent did not shut down")
	}
}
