// Package controlplane starts a real, local Kubernetes control plane for
// roam's integration tests and simulator: etcd and kube-apiserver through
// controller-runtime's envtest, and optionally kube-controller-manager as a
// child process. The binaries are the pinned ones `make tools` builds into
// bin/; nothing is downloaded. Everything listens on loopback, on free ports.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// BinDirEnv names the environment variable that points at the directory of
// control-plane binaries. The Makefile exports it; when unset, the bin/
// folder of the enclosing roam checkout is used.
const BinDirEnv = "ROAM_BIN_DIR"

// DefaultControllers are the kube-controller-manager controllers roam's tests
// and simulator need: workloads, the stock node-lifecycle path roam is
// compared against, garbage collection and service accounts.
var DefaultControllers = []string{
	"deployment", "replicaset", "statefulset", "daemonset",
	"nodelifecycle", "taint-eviction-controller", "podgc",
	"serviceaccount", "serviceaccount-token", "garbagecollector",
	"disruption",
}

// Options configure a control plane. The zero value starts etcd and
// kube-apiserver only.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager.
	// Default: $ROAM_BIN_DIR, else <repo>/bin.
	BinDir string
	// ControllerManager also starts kube-controller-manager.
	ControllerManager bool
	// Controllers overrides DefaultControllers.
	Controllers []string
	// ControllerManagerArgs are extra kube-controller-manager flags
	// ("--name=value"); they override roam's defaults of the same name.
	ControllerManagerArgs []string
	// APIServerArgs are extra kube-apiserver flags as name → values.
	APIServerArgs map[string][]string
	// Output receives the child processes' logs (default: discarded).
	Output io.Writer
	// StartTimeout bounds each component's start (default 90 s).
	StartTimeout time.Duration
	// GracefulSignals leaves the first interrupt (SIGINT, SIGTERM) to the
	// caller, which stops the control plane itself (say, on a context
	// cancelled by signal.NotifyContext); a second one stops it and exits
	// at once. By default the first one does.
	GracefulSignals bool
}

// ControlPlane is a running local control plane. Stop it when done.
type ControlPlane struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file for child processes.
	Kubeconfig string
	// Dir is the temporary directory holding the kubeconfig and KCM state;
	// it is removed on Stop.
	Dir string

	env      *envtest.Environment
	kcm      *exec.Cmd
	kcmDone  chan struct{}
	stopOnce sync.Once
	stopErr  error
	unwatch  func()

	// kube-apiserver restarts (restart.go).
	apiMu        sync.Mutex
	apiArgs      []string       // command line while stopped
	apiserver    *apiserverProc // started again by StartAPIServer
	output       io.Writer
	startTimeout time.Duration
}

// Start brings up etcd and kube-apiserver (and kube-controller-manager when
// asked) and waits until they serve. On error, whatever was started is
// stopped again.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	binDir, err := resolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	need := []string{"etcd", "kube-apiserver"}
	if opts.ControllerManager {
		need = append(need, "kube-controller-manager")
	}
	for _, name := range need {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			return nil, fmt.Errorf("control plane binary %s not found in %s: run `make tools` to build it from the Go module proxy", name, binDir)
		}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	reapStale()

	dir, err := os.MkdirTemp("", "roam-controlplane-")
	if err != nil {
		return nil, fmt.Errorf("creating control plane dir: %w", err)
	}
	cp := &ControlPlane{Dir: dir, output: opts.Output, startTimeout: opts.StartTimeout}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()

	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  20 * time.Second,
	}
	api := env.ControlPlane.GetAPIServer()
	for name, values := range opts.APIServerArgs {
		api.Configure().Set(name, values...)
	}
	if opts.Output != nil {
		api.Out, api.Err = opts.Output, opts.Output
		env.ControlPlane.Etcd = &envtest.Etcd{Out: opts.Output, Err: opts.Output}
	}
	cp.env = env
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w", binDir, err)
	}
	cp.unwatch = watchSignals(cp, opts.GracefulSignals)
	admin, err := env.AddUser(envtest.User{Name: "roam-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating admin user: %w", err)
	}
	cp.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("rendering admin kubeconfig: %w", err)
	}
	cp.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	recordChildren(cp)

	if opts.ControllerManager {
		if err := cp.startControllerManager(ctx, binDir, opts); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// Clientset returns an admin clientset for the control plane.
func (cp *ControlPlane) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.Config)
}

func (cp *ControlPlane) startControllerManager(ctx context.Context, binDir string, opts Options) error {
	certDir := cp.env.ControlPlane.APIServer.CertDir
	caFile := filepath.Join(cp.Dir, "ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o600); err != nil {
		return fmt.Errorf("writing cluster CA: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	controllers := opts.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	args := map[string]string{
		"kubeconfig":                       cp.Kubeconfig,
		"authentication-kubeconfig":        cp.Kubeconfig,
		"authorization-kubeconfig":         cp.Kubeconfig,
		"controllers":                      strings.Join(controllers, ","),
		"service-account-private-key-file": filepath.Join(certDir, "sa-signer.key"),
		"root-ca-file":                     caFile,
		"use-service-account-credentials":  "false",
		"leader-elect":                     "false",
		"bind-address":                     "127.0.0.1",
		"secure-port":                      strconv.Itoa(port),
		"cert-dir":                         filepath.Join(cp.Dir, "kcm-certs"),
		"cluster-cidr":                     "10.200.0.0/16",
		"allocate-node-cidrs":              "false",
	}
	order := []string{}
	for k := range args {
		order = append(order, k)
	}
	for _, extra := range opts.ControllerManagerArgs {
		name, value, _ := strings.Cut(strings.TrimPrefix(extra, "--"), "=")
		if _, ok := args[name]; !ok {
			order = append(order, name)
		}
		args[name] = value
	}
	argv := make([]string, 0, len(order))
	for _, k := range order {
		argv = append(argv, "--"+k+"="+args[k])
	}
	cmd := exec.Command(filepath.Join(binDir, "kube-controller-manager"), argv...)
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// The controller manager dies with us even if we are killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	cp.kcm = cmd
	cp.kcmDone = make(chan struct{})
	go func() { _ = cmd.Wait(); close(cp.kcmDone) }()
	recordChildren(cp)

	healthz := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	if err := waitHealthy(ctx, healthz, cp.kcmDone, opts.StartTimeout); err != nil {
		return fmt.Errorf("kube-controller-manager did not become healthy at %s: %w", healthz, err)
	}
	klog.FromContext(ctx).V(2).Info("kube-controller-manager healthy", "url", healthz, "controllers", controllers)
	return nil
}

// Stop terminates every child process and removes the temporary
// directories. It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		if cp.unwatch != nil {
			cp.unwatch()
		}
		var errs []error
		if cp.kcm != nil && cp.kcm.Process != nil {
			_ = cp.kcm.Process.Signal(syscall.SIGTERM)
			select {
			case <-cp.kcmDone:
			case <-time.After(10 * time.Second):
				_ = cp.kcm.Process.Kill()
				<-cp.kcmDone
			}
		}
		cp.stopRestartedAPIServer()
		if cp.env != nil {
			if err := cp.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
			}
		}
		if cp.Dir != "" {
			if err := os.RemoveAll(cp.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", cp.Dir, err))
			}
		}
		forgetChildren(cp)
		cp.stopErr = errors.Join(errs...)
	})
	return cp.stopErr
}

// resolveBinDir finds the directory with the control-plane binaries.
func resolveBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(BinDirEnv)
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", fmt.Errorf("locating control plane binaries (set %s or run from the roam checkout): %w", BinDirEnv, err)
		}
		dir = filepath.Join(root, "bin")
	}
	return filepath.Abs(dir)
}

// repoRoot walks up from the working directory to roam's go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/roam-dev/roam\n") {
			return dir, nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", fmt.Errorf("no roam go.mod above %s", wd)
		}
	}
}

// FreePort returns a TCP port free on loopback right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHealthy polls url until it answers 200, the process exits, or the
// timeout passes.
func waitHealthy(ctx context.Context, url string, exited <-chan struct{}, timeout time.Duration) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback self-signed cert
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("process exited")
		case <-deadline.C:
			return fmt.Errorf("timed out after %s: %w", timeout, last)
		case <-tick.C:
		}
	}
}
