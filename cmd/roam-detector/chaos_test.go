package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/policies"
)

// childEnv makes the test binary run roam-detector's main instead of the
// tests: the reliability tests start real roam-detector processes and kill
// them.
const childEnv = "ROAM_DETECTOR_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// A flag set of its own: the test binary's command line carries
		// flags of imported test helpers.
		os.Exit(runMain(flag.NewFlagSet("roam-detector", flag.ExitOnError), os.Args[1:]))
	}
	os.Exit(m.Run())
}

const chaosNS = "apps"

// chaosFleet is a fleet of robots whose kubelets renew their node Leases
// every second, each running one pod governed by a policy that moves it
// when the robot is lost.
type chaosFleet struct {
	cs     kubernetes.Interface
	robots []string
	pods   map[string]*corev1.Pod // by robot
	mu     sync.Mutex
	silent map[string]bool
}

func newChaosFleet(ctx context.Context, t *testing.T, cs kubernetes.Interface, n int) *chaosFleet {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"roam-system", chaosNS} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
	}
	_, err := cs.CoreV1().ConfigMaps(chaosNS).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "movable", Namespace: chaosNS, Labels: map[string]string{policies.PolicyLabel: "true"}},
		// The robots run no agent (unfenced): duplicates accepted, or the
		// pods would wait for the unfenced timeout.
		Data: map[string]string{"match": `pod.labels["app"] == "web"`, "onNodeFailure": "reschedule", "acceptDuplicates": "true"},
	}, metav1.CreateOptions{})
	must(err)
	f := &chaosFleet{cs: cs, pods: map[string]*corev1.Pod{}, silent: map[string]bool{}}
	four := int32(4)
	for i := range n {
		r := fmt.Sprintf("robot-%d", i)
		f.robots = append(f.robots, r)
		_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: r}}, metav1.CreateOptions{})
		must(err)
		now := metav1.NewMicroTime(time.Now())
		_, err = cs.CoordinationV1().Leases(detector.NodeLeaseNamespace).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: r, Namespace: detector.NodeLeaseNamespace},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &r, LeaseDurationSeconds: &four, RenewTime: &now},
		}, metav1.CreateOptions{})
		must(err)
		p, err := cs.CoreV1().Pods(chaosNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + r, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: r, Containers: []corev1.Container{{Name: "c", Image: "example.invalid/web"}}},
		}, metav1.CreateOptions{})
		must(err)
		f.pods[r] = p
	}
	return f
}

// renew renews every robot that is not silent once a second until ctx
// ends; renewals fail while the API server is away, as a kubelet's do.
func (f *chaosFleet) renew(ctx context.Context) {
	leases := f.cs.CoordinationV1().Leases(detector.NodeLeaseNamespace)
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		for _, r := range f.robots {
			f.mu.Lock()
			silent := f.silent[r]
			f.mu.Unlock()
			if silent {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if l, err := leases.Get(rctx, r, metav1.GetOptions{}); err == nil {
				now := metav1.NewMicroTime(time.Now())
				l.Spec.RenewTime = &now
				_, _ = leases.Update(rctx, l, metav1.UpdateOptions{})
			}
			cancel()
		}
	}
}

func (f *chaosFleet) silence(r string) {
	f.mu.Lock()
	f.silent[r] = true
	f.mu.Unlock()
}

// reachable reports whether every robot but except carries RoamReachable
// True and no taint.
func (f *chaosFleet) reachable(ctx context.Context, except string) (bool, error) {
	for _, r := range f.robots {
		if r == except {
			continue
		}
		n, err := f.cs.CoreV1().Nodes().Get(ctx, r, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if tainted(n) || reachableStatus(n) != corev1.ConditionTrue {
			return false, nil
		}
	}
	return true, nil
}

func tainted(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == policies.UnreachableTaint {
			return true
		}
	}
	return false
}

func reachableStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == detector.ConditionReachable {
			return c.Status
		}
	}
	return ""
}

// removed reports whether robot's pod got DisruptionTarget
// (RoamNodeUnreachable) and is being deleted.
func (f *chaosFleet) removed(ctx context.Context, robot string) (bool, error) {
	p, err := f.cs.CoreV1().Pods(chaosNS).Get(ctx, f.pods[robot].Name, metav1.GetOptions{})
	if err != nil {
		return false, nil
	}
	return p.DeletionTimestamp != nil && disrupted(p), nil
}

func disrupted(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Reason == detector.ReasonNodeUnreachable {
			return true
		}
	}
	return false
}

// checkNothingElseEvicted fails t for every pod of a robot other than lost
// that was touched, and every such robot that is tainted.
// checkNothingElseEvicted fails t if the pod of a robot other than lost was
// evicted, and, with untainted, if such a robot is tainted.
func (f *chaosFleet) checkNothingElseEvicted(ctx context.Context, t *testing.T, lost string, untainted bool) {
	t.Helper()
	for _, r := range f.robots {
		if r == lost {
			continue
		}
		p, err := f.cs.CoreV1().Pods(chaosNS).Get(ctx, f.pods[r].Name, metav1.GetOptions{})
		switch {
		case err != nil:
			t.Errorf("pod of live %s: %v", r, err)
		case p.UID != f.pods[r].UID || p.DeletionTimestamp != nil || disrupted(p):
			t.Errorf("pod of live %s was evicted (deleting %v, DisruptionTarget %v)", r, p.DeletionTimestamp != nil, disrupted(p))
		}
		if n, err := f.cs.CoreV1().Nodes().Get(ctx, r, metav1.GetOptions{}); untainted && err == nil && tainted(n) {
			t.Errorf("live %s is tainted", r)
		}
	}
}

// detectorProc is a roam-detector process.
type detectorProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startDetector(t *testing.T, kubeconfig string, args ...string) *detectorProc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"--kubeconfig", kubeconfig, "--metrics-addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if os.Getenv("ROAM_CONTROLPLANE_LOGS") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting roam-detector: %v", err)
	}
	d := &detectorProc{cmd: cmd, addr: "http://" + addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
	})
	return d
}

// role is "leader", "standby" or "" (not answering, or not ready).
func (d *detectorProc) role() string {
	code, body := get(d.addr + "/readyz")
	switch {
	case code != http.StatusOK:
		return ""
	case strings.Contains(body, "leader"):
		return "leader"
	case strings.Contains(body, "standby"):
		return "standby"
	}
	return ""
}

// metric is the value of an unlabelled metric on d's /metrics.
func (d *detectorProc) metric(t *testing.T, name string) string {
	t.Helper()
	code, body := get(d.addr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return ""
}

func waitUntil(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func leaderIdentity(ctx context.Context, cs kubernetes.Interface) string {
	l, err := cs.CoordinationV1().Leases("roam-system").Get(ctx, "roam-detector", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Two roam-detector processes elect a leader. The leader is killed
// (SIGKILL: no Lease release) just as one robot falls silent: the standby
// takes the Lease, evicts nothing alive, and still handles the silent
// robot once it has watched the fleet for its warm-up.
func TestLeaderKilledStandbyTakesOver(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newChaosFleet(ctx, t, cs, 6)
	go f.renew(ctx)
	le := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}

	a := startDetector(t, cp.Kubeconfig, le...)
	waitUntil(ctx, t, "the first detector to lead", 120*time.Second, func(context.Context) (bool, error) {
		return a.role() == "leader", nil
	})
	b := startDetector(t, cp.Kubeconfig, le...)
	waitUntil(ctx, t, "the second detector to stand by", 120*time.Second, func(context.Context) (bool, error) {
		return b.role() == "standby", nil
	})
	waitUntil(ctx, t, "every robot RoamReachable=True (the leader warmed up)", 120*time.Second, func(ctx context.Context) (bool, error) {
		return f.reachable(ctx, "")
	})
	first := leaderIdentity(ctx, cs)

	lost := "robot-5"
	f.silence(lost)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	waitUntil(ctx, t, "the standby to take the Lease", 120*time.Second, func(ctx context.Context) (bool, error) {
		id := leaderIdentity(ctx, cs)
		return id != "" && id != first && b.role() == "leader", nil
	})
	waitUntil(ctx, t, "the silent robot's pod evicted", 120*time.Second, func(ctx context.Context) (bool, error) {
		return f.removed(ctx, lost)
	})
	n, err := cs.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{})
	if err != nil || !tainted(n) || reachableStatus(n) != corev1.ConditionFalse {
		t.Errorf("%s: tainted %v, RoamReachable %q; want tainted and False", lost, err == nil && tainted(n), reachableStatus(n))
	}
	f.checkNothingElseEvicted(ctx, t, lost, true)
	if ok, _ := f.reachable(ctx, lost); !ok {
		t.Error("a live robot is not RoamReachable=True after the fail-over")
	}
	if n := b.metric(t, "roam_suspicions_total"); n != "1" {
		t.Errorf("the new leader's roam_suspicions_total = %s, want 1 (the silent robot only)", n)
	}
}

// restartAPIServer stops kube-apiserver for outage while the robots keep
// trying to renew, then starts it again (same etcd).
func restartAPIServer(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, outage time.Duration, during func()) {
	t.Helper()
	if err := cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during()
	}
	time.Sleep(outage) // the outage itself, not an assertion
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
}

// kube-apiserver stops and starts again (same etcd) while robots
// heartbeat; one robot is lost during the outage. The detector's
// informers recover, no live robot is suspected because of the restart
// (none is tainted, none evicted), and the robot lost during the outage is
// handled after it. Six robots: every robot looks silent to the detector
// while the API server is away; its probe finds the API server gone before
// any of them could be suspected.
func TestAPIServerRestart(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newChaosFleet(ctx, t, cs, 6)
	go f.renew(ctx)

	d := startDetector(t, cp.Kubeconfig, "--leader-elect=false")
	waitUntil(ctx, t, "every robot RoamReachable=True (the detector warmed up)", 120*time.Second, func(ctx context.Context) (bool, error) {
		return f.reachable(ctx, "")
	})

	lost := "robot-4"
	// The outage outlasts the warm-up (10 s) and several detection times
	// (≈2.6 s each).
	restartAPIServer(ctx, t, cp, 15*time.Second, func() { f.silence(lost) })
	waitUntil(ctx, t, "the robot lost during the outage evicted", 180*time.Second, func(ctx context.Context) (bool, error) {
		return f.removed(ctx, lost)
	})
	f.checkNothingElseEvicted(ctx, t, lost, true)
	if ok, _ := f.reachable(ctx, lost); !ok {
		t.Error("a live robot is not RoamReachable=True after the API server's restart")
	}
	if n := d.metric(t, "roam_suspicions_total"); n != "1" {
		t.Errorf("roam_suspicions_total = %s, want 1 (the lost robot only)", n)
	}
	select {
	case <-d.done:
		t.Error("roam-detector exited during the API server's restart")
	default:
	}
}

// A fleet too small for the partition brake (2 robots, --brake-min-nodes
// 3) loses the API server for much longer than a detection takes: only the
// probe keeps the detector from suspecting the live robots, whose
// heartbeats cannot reach it. After the restart the detector judges again:
// a robot lost then is evicted, the other was never suspected.
func TestAPIServerRestartSmallFleet(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newChaosFleet(ctx, t, cs, 2)
	go f.renew(ctx)

	d := startDetector(t, cp.Kubeconfig, "--leader-elect=false")
	waitUntil(ctx, t, "every robot RoamReachable=True (the detector warmed up)", 120*time.Second, func(ctx context.Context) (bool, error) {
		return f.reachable(ctx, "")
	})
	// 10 s: detection (≈2.6 s) + confirmation (0.8 s) several times over.
	restartAPIServer(ctx, t, cp, 10*time.Second, nil)
	lost := "robot-1"
	f.silence(lost)
	waitUntil(ctx, t, "the robot lost after the restart evicted", 180*time.Second, func(ctx context.Context) (bool, error) {
		return f.removed(ctx, lost)
	})
	f.checkNothingElseEvicted(ctx, t, lost, true)
	if n := d.metric(t, "roam_suspicions_total"); n != "1" {
		t.Errorf("roam_suspicions_total = %s, want 1 (the robot lost after the restart only)", n)
	}
}

// The detector is level-triggered on its own marks: a roam taint and
// RoamReachable=False put on a live robot behind its back — what a sync
// made from a stale view leaves, such as a retry that tainted a robot
// after an outage whose recovery was then checked against a Node cache
// that had not seen the taint yet — are undone, though the Core's view of
// the robot never changed.
func TestStrayMarksUndone(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newChaosFleet(ctx, t, cs, 1)
	go f.renew(ctx)
	d := startDetector(t, cp.Kubeconfig, "--leader-elect=false")
	waitUntil(ctx, t, "the robot RoamReachable=True (the detector warmed up)", 120*time.Second, func(ctx context.Context) (bool, error) {
		return f.reachable(ctx, "")
	})
	robot := f.robots[0]
	n, err := cs.CoreV1().Nodes().Get(ctx, robot, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: policies.UnreachableTaint, Effect: corev1.TaintEffectNoSchedule})
	if n, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if c := &n.Status.Conditions[i]; c.Type == detector.ConditionReachable {
			c.Status, c.Reason = corev1.ConditionFalse, detector.ReasonNodeUnreachable
		}
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the stray taint and condition undone", 60*time.Second, func(ctx context.Context) (bool, error) {
		return f.reachable(ctx, "")
	})
	if n := d.metric(t, "roam_suspicions_total"); n != "0" {
		t.Errorf("roam_suspicions_total = %s, want 0", n)
	}
}
