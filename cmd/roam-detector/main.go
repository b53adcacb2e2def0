// Command roam-detector runs roam's phi-accrual failure detector: it watches
// node Leases, suspects robots whose heartbeats stop, taints them, and
// reschedules the pods that a policy allows to move. docs/detector.md
// describes the model, the defaults and the flags.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/contextcheck"
	"github.com/roam-dev/roam/detector/evict"
	"github.com/roam-dev/roam/detector/heartbeat"
	"github.com/roam-dev/roam/detector/phi"
	"github.com/roam-dev/roam/detector/silence"
	"github.com/roam-dev/roam/internal/version"
	"github.com/roam-dev/roam/policies"
)

type options struct {
	kubeconfig      string
	leaderElect     bool
	leNamespace     string
	leName          string
	leLease         time.Duration
	leRenew         time.Duration
	leRetry         time.Duration
	metricsAddr     string
	policyNamespace string
	fenceNamespace  string
	tick            time.Duration
	core            detector.CoreConfig
	probe           detector.ProbeConfig
	limits          evict.Limits
	qps             float64
	burst           int
	// Context redeployment (package detector/contextcheck).
	contextRedeploy      bool
	contextNoAlternative bool
	contextPolicyRecheck bool
	// Direct heartbeats (package detector/heartbeat).
	hb heartbeatOptions
}

type heartbeatOptions struct {
	udp, sessions string
	tlsSecret     string
	certFile      string
	keyFile       string
	dnsNames      string
	sessionTTL    time.Duration
	users         string
	audiences     string
}

func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{core: detector.DefaultCoreConfig(), probe: detector.DefaultProbeConfig(), limits: evict.DefaultLimits()}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config)")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "run only while holding the leader Lease, so replicas never act twice")
	fs.StringVar(&o.leNamespace, "leader-elect-namespace", policies.DefaultGlobalNamespace, "namespace of the leader-election Lease")
	fs.StringVar(&o.leName, "leader-elect-name", "roam-detector", "name of the leader-election Lease")
	fs.DurationVar(&o.leLease, "leader-elect-lease-duration", 15*time.Second, "leader Lease duration")
	fs.DurationVar(&o.leRenew, "leader-elect-renew-deadline", 10*time.Second, "leader renew deadline")
	fs.DurationVar(&o.leRetry, "leader-elect-retry-period", 2*time.Second, "leader retry period")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":8080", "address serving /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&o.policyNamespace, "policy-namespace", policies.DefaultGlobalNamespace, "namespace whose policies govern pods in every namespace")
	fs.DurationVar(&o.tick, "tick", detector.DefaultTick, "how often every node's phi is evaluated")
	fs.Float64Var(&o.core.Threshold, "phi-threshold", o.core.Threshold, "phi at which a node is suspected (a policy's phiThreshold overrides it for the nodes running its pods)")
	fs.IntVar(&o.core.Phi.Window, "phi-window", o.core.Phi.Window, "heartbeat intervals remembered per node (2 to 10000)")
	fs.DurationVar(&o.core.Phi.MinStdDev, "phi-min-stddev", o.core.Phi.MinStdDev, "floor of the interval standard deviation")
	fs.DurationVar(&o.core.Phi.AcceptablePause, "phi-acceptable-pause", o.core.Phi.AcceptablePause, "pause beyond the mean interval that costs no suspicion (0: none)")
	fs.IntVar(&o.core.RecoverHeartbeats, "recover-heartbeats", o.core.RecoverHeartbeats, "consecutive heartbeats a suspected node needs to recover (doubled for each re-suspicion within 10 min)")
	fs.DurationVar(&o.core.Warmup, "warmup", o.core.Warmup, "after start (and after a node's first heartbeat) nothing is suspected for this long (0: none)")
	fs.Float64Var(&o.core.BrakeFraction, "brake-fraction", o.core.BrakeFraction, "fraction of a zone's (or all) nodes suspected at once that stops all evictions there, in (0, 1]")
	fs.IntVar(&o.core.BrakeMinNodes, "brake-min-nodes", o.core.BrakeMinNodes, "the brake needs at least this many suspected nodes")
	fs.DurationVar(&o.core.Fence.Margin, "fence-margin", o.core.Fence.Margin, "a fenced robot's pods are removed no earlier than its fenceAfter plus this after its last fence-lease renewal observed (covers clock drift and the agent's freezing time)")
	fs.DurationVar(&o.core.Fence.UnfencedTimeout, "unfenced-timeout", o.core.Fence.UnfencedTimeout, "pods of an unfenced robot whose policies do not accept duplicates are removed this long after its last heartbeat (default: stock Kubernetes' 5m40s)")
	fs.StringVar(&o.fenceNamespace, "fence-lease-namespace", policies.FenceLeaseNamespace, "namespace of the robots' fence Leases (roam-agent's --fence-lease-namespace)")
	fs.DurationVar(&o.core.EvictionConfirm, "eviction-confirm", o.core.EvictionConfirm, "evict a suspected node's pods only once it has stayed silent this long past its suspicion (or past being found silent again): fewer false evictions, slower redeploy (see roam-sim's eviction table); 0: at once")
	fs.BoolVar(&o.core.Adaptive, "adaptive-eviction", o.core.Adaptive, "evict each robot after its own eviction timeout, estimated from its history of silences under --false-eviction-budget; false: after --eviction-confirm past the suspicion")
	fs.Float64Var(&o.core.Silence.Budget, "false-eviction-budget", o.core.Silence.Budget, "false evictions allowed per 1000 robot-hours: each robot's eviction timeout is the shortest that keeps its own expected false evictions within its share")
	fs.DurationVar(&o.core.Silence.Floor, "eviction-timeout-floor", o.core.Silence.Floor, "shortest adaptive eviction timeout (silence after the last heartbeat)")
	fs.DurationVar(&o.core.Silence.Ceiling, "eviction-timeout-ceiling", o.core.Silence.Ceiling, "longest adaptive eviction timeout, and the prior of robots with too little history; a robot whose link needs more is reported as too poor for fast failover")
	fs.DurationVar(&o.core.Silence.HalfLife, "silence-half-life", o.core.Silence.HalfLife, fmt.Sprintf("half-life of each robot's history of silences (at least %v)", silence.MinHalfLife))
	fs.DurationVar(&o.core.EvictionDelay, "eviction-delay", o.core.EvictionDelay, "longest a suspected node's eviction waits for the partition brake: it waits only while other nodes about to be suspected could still engage the brake (0: never waits)")
	fs.DurationVar(&o.probe.Interval, "apiserver-probe-interval", o.probe.Interval, "how often the API server's /readyz is probed; while it fails no robot is judged, since their heartbeats cannot arrive (0: no probe)")
	fs.DurationVar(&o.probe.Timeout, "apiserver-probe-timeout", o.probe.Timeout, "a probe of the API server not answered within this long has failed")
	fs.Float64Var(&o.limits.NodesPerSecond, "eviction-node-rate", o.limits.NodesPerSecond, "lost robots emptied per second (token bucket, one token per robot)")
	fs.IntVar(&o.limits.NodeBurst, "eviction-node-burst", o.limits.NodeBurst, "token-bucket burst of --eviction-node-rate, in robots")
	fs.Float64Var(&o.limits.PodsPerSecond, "eviction-pod-rate", o.limits.PodsPerSecond, "pods evicted per second after context changes (token bucket)")
	fs.IntVar(&o.limits.PodBurst, "eviction-pod-burst", o.limits.PodBurst, "token-bucket burst of --eviction-pod-rate, in pods")
	fs.Float64Var(&o.qps, "kube-api-qps", 50, "client QPS to the API server")
	fs.IntVar(&o.burst, "kube-api-burst", 100, "client burst to the API server")
	fs.BoolVar(&o.contextRedeploy, "context-redeploy", true, "evict pods whose robot no longer satisfies their policies' require (onContextChange: reschedule) after the policy's settle window")
	fs.BoolVar(&o.contextNoAlternative, "context-evict-without-alternative", false, "evict after a context change even when no other node would satisfy the pod's policies and fit it")
	fs.BoolVar(&o.contextPolicyRecheck, "context-recheck-on-policy-change", true, "re-check the pods on every node when a policy changes")
	fs.StringVar(&o.hb.udp, "heartbeat-listen", "", "UDP address receiving roam-agent's direct heartbeats, e.g. :9470 (empty: off; robots are judged by their Leases)")
	fs.StringVar(&o.hb.sessions, "heartbeat-session-listen", ":9443", "HTTPS address where agents open heartbeat sessions")
	fs.StringVar(&o.hb.tlsSecret, "heartbeat-tls-secret", "roam-detector-heartbeat-tls", "kubernetes.io/tls Secret (in --leader-elect-namespace) with the session endpoint's certificate; created self-signed on first start")
	fs.StringVar(&o.hb.certFile, "heartbeat-tls-cert-file", "", "PEM certificate of the session endpoint (with --heartbeat-tls-key-file; e.g. a mounted Secret): used instead of --heartbeat-tls-secret, so the detector needs no access to Secrets")
	fs.StringVar(&o.hb.keyFile, "heartbeat-tls-key-file", "", "PEM private key of --heartbeat-tls-cert-file")
	fs.StringVar(&o.hb.dnsNames, "heartbeat-tls-dns-names", "roam-detector-heartbeat.roam-system.svc,roam-detector-heartbeat.roam-system.svc.cluster.local", "comma-separated DNS names of a certificate created self-signed")
	fs.DurationVar(&o.hb.sessionTTL, "heartbeat-session-ttl", heartbeat.DefaultSessionTTL, "lifetime of a heartbeat session (agents open the next one halfway)")
	fs.StringVar(&o.hb.users, "heartbeat-agent-users", heartbeat.DefaultAgentUser, "comma-separated usernames whose pod-bound tokens may open heartbeat sessions")
	fs.StringVar(&o.hb.audiences, "heartbeat-token-audiences", "", "comma-separated audiences the agents' tokens must carry (empty: the API server's)")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("invalid flags: %w", err)
	}
	return o, nil
}

// validate names the first flag whose value is invalid. Zero is legal
// where it has a meaning (no pause, no warm-up, no confirmation, no
// delay) and honoured as such.
func (o *options) validate() error {
	positive := func(d time.Duration) bool { return d > 0 }
	notNeg := func(d time.Duration) bool { return d >= 0 }
	checks := []struct {
		ok   bool
		flag string
		val  any
		want string
	}{
		{o.core.Threshold > 0 && !math.IsInf(o.core.Threshold, 0), "phi-threshold", o.core.Threshold, "a positive number"},
		{o.core.Phi.Window >= 2 && o.core.Phi.Window <= phi.MaxWindow, "phi-window", o.core.Phi.Window, fmt.Sprintf("between 2 and %d", phi.MaxWindow)},
		{positive(o.core.Phi.MinStdDev), "phi-min-stddev", o.core.Phi.MinStdDev, "positive"},
		{notNeg(o.core.Phi.AcceptablePause), "phi-acceptable-pause", o.core.Phi.AcceptablePause, "zero or more"},
		{o.core.RecoverHeartbeats >= 1, "recover-heartbeats", o.core.RecoverHeartbeats, "at least 1"},
		{notNeg(o.core.Warmup), "warmup", o.core.Warmup, "zero or more"},
		{o.core.BrakeFraction > 0 && o.core.BrakeFraction <= 1, "brake-fraction", o.core.BrakeFraction, "in (0, 1]"},
		{o.core.BrakeMinNodes >= 1, "brake-min-nodes", o.core.BrakeMinNodes, "at least 1"},
		{notNeg(o.core.Fence.Margin), "fence-margin", o.core.Fence.Margin, "zero or more"},
		{notNeg(o.core.Fence.UnfencedTimeout), "unfenced-timeout", o.core.Fence.UnfencedTimeout, "zero or more (0: as fast as fenced robots, allowing duplicates)"},
		{o.fenceNamespace != "", "fence-lease-namespace", o.fenceNamespace, "a namespace"},
		{notNeg(o.core.EvictionConfirm), "eviction-confirm", o.core.EvictionConfirm, "zero or more (0: evict at once)"},
		{o.core.Silence.Budget > 0 && !math.IsInf(o.core.Silence.Budget, 0), "false-eviction-budget", o.core.Silence.Budget, "a positive number of false evictions per 1000 robot-hours"},
		{positive(o.core.Silence.Floor), "eviction-timeout-floor", o.core.Silence.Floor, "positive"},
		{o.core.Silence.Ceiling >= o.core.Silence.Floor, "eviction-timeout-ceiling", o.core.Silence.Ceiling, fmt.Sprintf("at least --eviction-timeout-floor=%v", o.core.Silence.Floor)},
		{o.core.Silence.HalfLife >= silence.MinHalfLife, "silence-half-life", o.core.Silence.HalfLife, fmt.Sprintf("at least %v: a shorter history holds too few silences to estimate a robot's tail", silence.MinHalfLife)},
		{notNeg(o.core.EvictionDelay), "eviction-delay", o.core.EvictionDelay, "zero or more (0: never wait)"},
		{notNeg(o.probe.Interval), "apiserver-probe-interval", o.probe.Interval, "zero or more (0: no probe)"},
		{positive(o.probe.Timeout), "apiserver-probe-timeout", o.probe.Timeout, "positive"},
		{o.limits.NodesPerSecond > 0 && !math.IsInf(o.limits.NodesPerSecond, 0), "eviction-node-rate", o.limits.NodesPerSecond, "a positive number"},
		{o.limits.NodeBurst >= 1, "eviction-node-burst", o.limits.NodeBurst, "at least 1"},
		{o.limits.PodsPerSecond > 0 && !math.IsInf(o.limits.PodsPerSecond, 0), "eviction-pod-rate", o.limits.PodsPerSecond, "a positive number"},
		{o.limits.PodBurst >= 1, "eviction-pod-burst", o.limits.PodBurst, "at least 1"},
		{positive(o.tick), "tick", o.tick, "positive"},
		{o.qps > 0, "kube-api-qps", o.qps, "positive"},
		{o.burst >= 1, "kube-api-burst", o.burst, "at least 1"},
		{positive(o.leLease), "leader-elect-lease-duration", o.leLease, "positive"},
		{positive(o.leRenew) && o.leRenew < o.leLease, "leader-elect-renew-deadline", o.leRenew, "positive and shorter than --leader-elect-lease-duration"},
		{positive(o.leRetry) && o.leRetry < o.leRenew, "leader-elect-retry-period", o.leRetry, "positive and shorter than --leader-elect-renew-deadline"},
		{positive(o.hb.sessionTTL), "heartbeat-session-ttl", o.hb.sessionTTL, "positive"},
		{o.hb.udp == "" || o.hb.sessions != "", "heartbeat-session-listen", o.hb.sessions, "set when --heartbeat-listen is"},
		{o.hb.udp == "" || o.hb.tlsSecret != "" || o.hb.certFile != "", "heartbeat-tls-secret", o.hb.tlsSecret, "set when --heartbeat-listen is and no --heartbeat-tls-cert-file is"},
		{(o.hb.certFile == "") == (o.hb.keyFile == ""), "heartbeat-tls-key-file", o.hb.keyFile, "given together with --heartbeat-tls-cert-file"},
	}
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("--%s=%v: must be %s", c.flag, c.val, c.want)
		}
	}
	if err := o.core.Validate(); err != nil {
		return err
	}
	if err := o.probe.Validate(); err != nil {
		return err
	}
	return o.limits.Validate()
}

func main() { os.Exit(runMain(flag.CommandLine, os.Args[1:])) }

// runMain runs roam-detector with the command-line args parsed into fs
// (or prints its version) and returns its exit code.
func runMain(fs *flag.FlagSet, args []string) int {
	if version.Requested(args) {
		version.Print(os.Stdout, "roam-detector")
		return 0
	}
	o, err := parseFlags(fs, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "roam-detector:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	logger := klog.Background().WithName("roam-detector")
	ctx = klog.NewContext(ctx, logger)
	if err := run(ctx, o); err != nil {
		logger.Error(err, "roam-detector failed")
		klog.Flush()
		return 1
	}
	klog.Flush()
	return 0
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

func run(ctx context.Context, o *options) error {
	logger := klog.FromContext(ctx)
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "roam-detector"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := detector.NewMetrics(reg)
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "roam-detector"})

	factory := informers.NewSharedInformerFactory(client, 0)
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(detector.NodeLeaseNamespace))
	policyFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = policies.PolicyLabel + "=true"
	}))
	store, err := policies.NewStore(policyFactory, policies.StoreOptions{
		GlobalNamespace: o.policyNamespace, Events: recorder, Registerer: reg, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("policy store: %w", err)
	}
	// One evictor removes pods for both controllers: lost robots (in
	// nodes per second) and context changes (in pods per second).
	evictor, err := evict.New(client, evict.Options{Limits: o.limits, Recorder: recorder,
		Metrics: evict.Metrics{Evictions: metrics.Evictions, Redeploy: metrics.Redeploy}})
	if err != nil {
		return err
	}
	fenceFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(o.fenceNamespace))
	ctrl, err := detector.NewController(client, factory, leaseFactory, detector.Options{
		Core: o.core, Probe: o.probe, Tick: o.tick, Metrics: metrics, Recorder: recorder, Policies: store, Evictor: evictor,
		FenceLeases: fenceFactory, FenceLeaseNamespace: o.fenceNamespace,
		WaitFor: []cache.InformerSynced{store.HasSynced},
	})
	if err != nil {
		return err
	}
	// Direct heartbeats are received (and recorded into the Core) by
	// every replica, leading or not; only the leader acknowledges them.
	gate := heartbeat.NewAckGate(clock.RealClock{}, o.leRenew)
	acking := gate.Acking
	if !o.leaderElect {
		acking = func(time.Time) bool { return true } // the only replica
	}
	if o.hb.udp != "" {
		if err := startHeartbeats(ctx, o, client, reg, ctrl.Core(), acking); err != nil {
			return err
		}
	}
	// Context redeployment shares the pod and node informers and the
	// evictor.
	var contextCtrl *contextcheck.Controller
	if o.contextRedeploy {
		contextCtrl, err = contextcheck.NewController(client, factory, contextcheck.Options{
			Policies: store, NoPolicyRecheck: !o.contextPolicyRecheck, EvictWithoutAlternative: o.contextNoAlternative,
			Evictor: evictor, Recorder: recorder, WaitFor: []cache.InformerSynced{store.HasSynced},
		})
		if err != nil {
			return err
		}
	}
	leading := make(chan struct{})
	runController := func(ctx context.Context) error {
		close(leading)
		policyFactory.Start(ctx.Done())
		if contextCtrl != nil {
			go func() {
				if err := contextCtrl.Run(ctx); err != nil {
					klog.FromContext(ctx).Error(err, "context redeployment stopped")
				}
			}()
		}
		return ctrl.Run(ctx)
	}
	var le *leaderelection.LeaderElector
	runErr := make(chan error, 1)
	if o.leaderElect {
		if le, err = newElector(o, client, recorder, gate, runController, runErr); err != nil {
			return err
		}
	}
	if o.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if le != nil {
				if err := le.Check(2 * o.leLease); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			fmt.Fprintln(w, "ok")
		})
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-leading:
				if ctrl == nil || !ctrl.Ready() {
					http.Error(w, "leader, caches not synced yet", http.StatusServiceUnavailable)
					return
				}
				fmt.Fprintln(w, "ok: leader")
			default:
				fmt.Fprintln(w, "ok: standby")
			}
		})
		srv := &http.Server{Addr: o.metricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "metrics server failed", "addr", o.metricsAddr)
			}
		}()
		defer srv.Close()
	}

	if le == nil {
		return runController(ctx)
	}
	logger.Info("Waiting for leadership", "lease", o.leNamespace+"/"+o.leName)
	le.Run(ctx) // returns when leadership is lost or ctx ends
	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
	default:
	}
	if ctx.Err() == nil {
		// Lost leadership: exit so a restart warms up from scratch.
		return errors.New("lost leadership")
	}
	return nil
}

func newElector(o *options, client kubernetes.Interface, recorder record.EventRecorder, gate *heartbeat.AckGate,
	runController func(context.Context) error, runErr chan<- error) (*leaderelection.LeaderElector, error) {

	id, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	id += "_" + string(uuid.NewUUID())
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leNamespace, o.leName,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id, EventRecorder: recorder})
	if err != nil {
		return nil, fmt.Errorf("leader lock: %w", err)
	}
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: gate.Lock(lock), LeaseDuration: o.leLease, RenewDeadline: o.leRenew, RetryPeriod: o.leRetry,
		ReleaseOnCancel: true, Name: o.leName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				klog.FromContext(ctx).Info("Became leader", "identity", id)
				runErr <- runController(ctx)
			},
			OnStoppedLeading: func() {
				gate.Stop()
				klog.Background().Info("Stopped leading", "identity", id)
			},
		},
	})
}

// startHeartbeats serves direct heartbeats in the background: the
// session endpoint's certificate comes from (or is created in) the TLS
// Secret, and sessions are authenticated by TokenReview.
func startHeartbeats(ctx context.Context, o *options, client kubernetes.Interface, reg prometheus.Registerer,
	core *detector.Core, acking func(time.Time) bool) error {
	clk := clock.RealClock{}
	var cert tls.Certificate
	var err error
	if o.hb.certFile != "" {
		if cert, err = tls.LoadX509KeyPair(o.hb.certFile, o.hb.keyFile); err != nil {
			return fmt.Errorf("--heartbeat-tls-cert-file, --heartbeat-tls-key-file: %w", err)
		}
	} else if cert, _, err = heartbeat.EnsureCertificate(ctx, client.CoreV1().Secrets(o.leNamespace), o.hb.tlsSecret, splitList(o.hb.dnsNames), time.Now()); err != nil {
		return err
	}
	sessions := heartbeat.NewSessions(clk, o.hb.sessionTTL, nil)
	m, err := heartbeat.NewMetrics(reg, sessions)
	if err != nil {
		return err
	}
	so := heartbeat.ServerOptions{UDPAddr: o.hb.udp, SessionAddr: o.hb.sessions, Certificate: cert, Sessions: sessions,
		Auth: &heartbeat.TokenReviewer{Reviews: client.AuthenticationV1().TokenReviews(), Users: splitList(o.hb.users),
			Audiences: splitList(o.hb.audiences)},
		Sink:   func(node string, now time.Time) { core.HeartbeatFrom(node, detector.SourceDirect, 0, now) },
		Ended:  core.EndDirect,
		Acking: acking, MayAck: core.AckHeartbeat, Clock: clk, Metrics: m}
	go func() {
		if err := heartbeat.Serve(ctx, so); err != nil {
			klog.FromContext(ctx).Error(err, "Direct heartbeats stopped; robots are judged by their Leases")
		}
	}()
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
