package manifests_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// buildBinaries compiles roam-scheduler and roam-detector from this
// checkout (never stale binaries from bin/).
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../cmd/roam-scheduler", "../cmd/roam-detector")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// kubeconfigAs writes a copy of the admin kubeconfig that impersonates user,
// so a binary runs with exactly the manifests' RBAC.
func kubeconfigAs(t *testing.T, admin, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a child binary whose output goes to a file.
type process struct {
	name, log string
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: filepath.Base(bin), log: filepath.Join(t.TempDir(), filepath.Base(bin)+".log")}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		f.Close()
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("%s output:\n%s", p.name, tail(string(out), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

var forbiddenRE = regexp.MustCompile(`(?i)forbidden`)

// noForbidden fails when the process logged an authorization failure: its
// RBAC misses something it uses.
func (p *process) noForbidden(t *testing.T) {
	t.Helper()
	out, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, line := range strings.Split(string(out), "\n") {
		if forbiddenRE.MatchString(line) {
			refused = append(refused, line)
		}
	}
	if len(refused) > 0 {
		t.Errorf("%s was refused by RBAC %d times, first: %s", p.name, len(refused), refused[0])
	}
}

// readyNode is a schedulable robot (no kubelet exists: the test sets its
// status as one would).
func readyNode(name string, labels map[string]string, extra corev1.ResourceList) *corev1.Node {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	for k, v := range extra {
		alloc[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		},
	}
}

func createReadyNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, n *corev1.Node) {
	t.Helper()
	status := n.Status
	created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = status
	if created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Admission taints a new Node not-ready; kube-controller-manager would
	// lift it once the node is Ready (there is none here).
	created.Spec.Taints = nil
	if _, err := cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// testSchedulerRuns runs the real roam-scheduler with the base's generated
// config, as its ServiceAccount: it must lead, serve /readyz on its secure
// port, and place an example pod by its policy, without one RBAC refusal.
func testSchedulerRuns(ctx context.Context, t *testing.T, bins, adminKubeconfig string, cs kubernetes.Interface, base []*unstructured.Unstructured) {
	// The RBAC subtest left a Lease held by a fake holder; a real leader
	// would wait out its duration.
	_ = cs.CoordinationV1().Leases(systemNamespace).Delete(ctx, schedulerName, metav1.DeleteOptions{})

	var config string
	for _, o := range base {
		if o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), schedulerConfigCM+"-") {
			config, _, _ = unstructured.NestedString(o.Object, "data", "config.yaml")
		}
	}
	if config == "" {
		t.Fatal("no generated scheduler ConfigMap in the base")
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	kubeconfig := kubeconfigAs(t, adminKubeconfig, schedulerSA)
	// In a pod, delegated authn/authz of the secure port use the in-cluster
	// config (the same ServiceAccount); out of a cluster they need these.
	p := start(t, filepath.Join(bins, "roam-scheduler"), "--config="+cfgPath,
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "-v=2")

	// A hospital robot with cameras, and the example medical-assistant pod.
	createReadyNode(ctx, t, cs, readyNode("robot-2", map[string]string{"roam.dev/context": "hospital"},
		corev1.ResourceList{"roam.dev/camera": resource.MustParse("2")}))
	var tmpl map[string]any
	for _, o := range build(t, examplesDir) {
		if o.GetKind() == "Deployment" && o.GetName() == "medical-assistant" {
			tmpl, _, _ = unstructured.NestedMap(o.Object, "spec", "template")
		}
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, pod); err != nil {
		t.Fatal(err)
	}
	pod.Name, pod.Namespace = "medical-assistant-0", "hospital-apps"
	if _, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && got.Spec.NodeName != "", nil
	})
	if err != nil {
		t.Fatalf("roam-scheduler did not bind the medical-assistant pod: %v", err)
	}
	got, _ := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if got.Spec.NodeName != "robot-2" {
		t.Errorf("medical-assistant pod on %q, want robot-2 (the only hospital robot with a camera)", got.Spec.NodeName)
	}
	lease, err := cs.CoordinationV1().Leases(systemNamespace).Get(ctx, schedulerName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("leader Lease roam-system/roam-scheduler: %v, %+v", err, lease)
	}
	// /readyz on the secure port, unauthenticated as a kubelet's probe is
	// (always-allowed path), over the self-signed certificate.
	waitHTTP(ctx, t, fmt.Sprintf("https://127.0.0.1:%d/readyz", port), "ok")
	waitHTTP(ctx, t, fmt.Sprintf("https://127.0.0.1:%d/livez", port), "ok")
	testSchedulerScrape(ctx, t, cs, fmt.Sprintf("https://127.0.0.1:%d/metrics", port))
	p.noForbidden(t)
}

// testSchedulerScrape scrapes the scheduler's /metrics the way the
// ServiceMonitor does: with a Prometheus ServiceAccount token, refused until
// the token's identity is bound to roam-metrics-reader (monitoring/).
func testSchedulerScrape(ctx context.Context, t *testing.T, cs kubernetes.Interface, url string) {
	const ns, sa = "monitoring", "prometheus"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, sa, err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scrape := func(token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("anonymous GET /metrics: %d, want 401 or 403", code)
	}
	if code, _ := scrape(tr.Status.Token); code != http.StatusForbidden {
		t.Errorf("GET /metrics as an unbound ServiceAccount: %d, want 403", code)
	}
	// What docs/operations.md tells users to run for their Prometheus.
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "roam-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "roam-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	// The scheduler caches authorization decisions for a few seconds.
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		code, body = scrape(tr.Status.Token)
		return code == http.StatusOK, nil
	})
	if code != http.StatusOK {
		t.Fatalf("GET /metrics as a ServiceAccount bound to roam-metrics-reader: %d %s, want 200", code, tail(body, 5))
	}
	// The pod placed above went through roam's policy plugin.
	for _, m := range []string{"scheduler_schedule_attempts_total", "roam_policy_evaluations_total"} {
		if !strings.Contains(body, m) {
			t.Errorf("scheduler /metrics lacks %s", m)
		}
	}
}

// testDetectorRuns runs the real roam-detector with the Deployment's flags,
// as its ServiceAccount: it must take its leader Lease, turn ready (every
// informer synced), and act on a lost robot — taint, RoamReachable=False,
// DisruptionTarget and deletion of the policy-governed pod on it — without
// one RBAC refusal.
func testDetectorRuns(ctx context.Context, t *testing.T, bins, adminKubeconfig string, cs kubernetes.Interface) {
	_ = cs.CoordinationV1().Leases(systemNamespace).Delete(ctx, detectorName, metav1.DeleteOptions{})
	// robot-2 (hospital, runs medical-assistant-0 since the scheduler run)
	// renews its node Lease once, as a kubelet with a 2 s lease would, and
	// then falls silent.
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "robot-2", Namespace: "kube-node-lease"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("robot-2"), LeaseDurationSeconds: ptr.To[int32](2),
			RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if _, err := cs.CoordinationV1().Leases("kube-node-lease").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	p := start(t, filepath.Join(bins, "roam-detector"),
		"--kubeconfig="+kubeconfigAs(t, adminKubeconfig, detectorSA),
		"--leader-elect=true", "--leader-elect-namespace=roam-system",
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", port),
		// The robots run no roam-agent (unfenced): remove their pods at
		// once instead of after the unfenced timeout.
		"--unfenced-timeout=0",
		"--warmup=2s", "-v=2")
	waitHTTP(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), "ok: leader")
	waitHTTP(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), "ok")
	lease, err := cs.CoordinationV1().Leases(systemNamespace).Get(ctx, detectorName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("leader Lease roam-system/roam-detector: %v, %+v", err, lease)
	}

	var node *corev1.Node
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		node, err = cs.CoreV1().Nodes().Get(ctx, "robot-2", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		tainted := slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == "roam.dev/unreachable" })
		unreachable := slices.ContainsFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == "RoamReachable" && c.Status == corev1.ConditionFalse
		})
		return tainted && unreachable, nil
	})
	if err != nil {
		t.Errorf("robot-2 never got the roam.dev/unreachable taint and RoamReachable=False: taints %v, conditions %v", node.Spec.Taints, node.Status.Conditions)
	}
	var pod *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pod, err = cs.CoreV1().Pods("hospital-apps").Get(ctx, "medical-assistant-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		// No kubelet confirms a graceful deletion: the pod stays Terminating.
		return err == nil && pod.DeletionTimestamp != nil, nil
	})
	if err != nil {
		t.Errorf("the medical-assistant pod on lost robot-2 was not deleted: %+v", pod.Status.Conditions)
	} else if pod != nil && !slices.ContainsFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.DisruptionTarget && c.Reason == "RoamNodeUnreachable"
	}) {
		t.Errorf("deleted pod lacks DisruptionTarget/RoamNodeUnreachable: %+v", pod.Status.Conditions)
	}
	body := waitHTTP(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), "roam_nodes")
	for _, m := range []string{`roam_nodes{state="suspected"}`, "roam_policies", "roam_node_phi", "roam_eviction_brake_active"} {
		if !strings.Contains(body, m) {
			t.Errorf("detector /metrics lacks %s", m)
		}
	}
	p.noForbidden(t)
}

// waitHTTP polls url until it answers 200 with a body containing want.
func waitHTTP(ctx context.Context, t *testing.T, url, want string) string {
	t.Helper()
	// The scheduler's certificate is self-signed, generated at start.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var last, body string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		last = fmt.Sprintf("%d %s", resp.StatusCode, tail(body, 5))
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), want), nil
	})
	if err != nil {
		t.Fatalf("GET %s never answered 200 with %q; last: %s", url, want, last)
	}
	return body
}
