// Package daemon assembles roam-agent: the sensing sources feed the
// publisher, which writes the robot's Node; the device plugin serves the
// configured device classes; invalid input becomes metrics, log lines and
// (for the state file) Warning Events on the Node.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/agent/config"
	"github.com/roam-dev/roam/agent/deviceplugin"
	"github.com/roam-dev/roam/agent/metrics"
	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/agent/sense"
	"github.com/roam-dev/roam/agent/state"
)

// Options configure the agent.
type Options struct {
	NodeName string
	// ConfigFile holds the device classes (see package config).
	ConfigFile string
	// StateFile is the watched state file ("" disables it).
	StateFile string
	// StateListen is the state endpoint's address ("" disables it).
	StateListen string
	// DevicePluginDir is the kubelet's device-plugin directory ("" disables
	// the device plugin).
	DevicePluginDir string
	DeviceRescan    time.Duration
	// MetricsAddr serves /metrics and /healthz ("" disables it).
	MetricsAddr string
	Limits      publish.Limits
	// Fence configures fencing; Fence.After 0 leaves the robot unfenced.
	Fence FenceOptions
}

// Run runs the agent until ctx is done. It returns an error only when a
// part cannot start at all (a listener, a watcher, the config file).
func Run(ctx context.Context, client kubernetes.Interface, opts Options) error {
	logger := klog.FromContext(ctx).WithValues("node", opts.NodeName)
	ctx = klog.NewContext(ctx, logger)
	if opts.NodeName == "" {
		return errors.New("--node-name is required (the DaemonSet sets it from spec.nodeName)")
	}
	cfg, classErrs, err := config.Load(opts.ConfigFile)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "roam-agent", Host: opts.NodeName})
	nodeRef := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: opts.NodeName, UID: types.UID(opts.NodeName)}

	for _, e := range classErrs {
		logger.Error(e, "Device class left out")
		recorder.Event(nodeRef, corev1.EventTypeWarning, "InvalidDeviceClass", e.Error())
	}

	applier := publish.NewNodeApplier(client, opts.NodeName, publish.ApplierOptions{OnYield: func(fields []string, _ error) {
		recorder.Eventf(nodeRef, corev1.EventTypeWarning, "KeysOwnedElsewhere",
			"another field manager owns %s with a different value; roam-agent leaves it alone", strings.Join(fields, ", "))
	}})
	pub := publish.New(applier, publish.Options{Limits: opts.Limits, OnWrite: func(k publish.Kind) {
		m.Publishes.WithLabelValues(string(k)).Inc()
	}})
	// Fencing is set up before anything else: a lease that ran out while no
	// agent ran is acted on first.
	var fenced *fencing
	if opts.Fence.After > 0 {
		fenced, err = setupFencing(ctx, client, opts.NodeName, opts.Fence, m, recorder, nodeRef)
		if err != nil {
			logger.Error(err, "This robot cannot be fenced: roam treats it as unfenced")
			recorder.Event(nodeRef, corev1.EventTypeWarning, "Unfenced", "roam-agent cannot freeze this robot's pods: "+err.Error())
		}
	}
	sink := &sink{pub: pub, metrics: m, recorder: recorder, node: nodeRef, logger: logger}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()

	if fenced != nil {
		fenced.run(ctx, run)
		// The robot is fenced once the agent knows its pods and the
		// policies: only then does it publish roam.dev/fence.
		run("fence announcement", func(ctx context.Context) error {
			if !cache.WaitForCacheSync(ctx.Done(), fenced.pods.hasSynced) {
				return nil // shutting down
			}
			sink.setFence(opts.Fence.After.String())
			m.Fenceable.Set(1)
			logger.Info("Fencing active", "fenceAfter", opts.Fence.After)
			return nil
		})
	}
	// The Node must exist (the kubelet registers it); the agent never
	// creates it.
	run("node", func(ctx context.Context) error {
		err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := client.CoreV1().Nodes().Get(ctx, opts.NodeName, metav1.GetOptions{})
			if err != nil {
				logger.Info("Waiting for the Node", "err", err)
			}
			return err == nil, nil
		})
		if err != nil {
			return nil // shutting down
		}
		pub.Run(ctx)
		return nil
	})
	if opts.StateFile != "" {
		fw := &sense.FileWatcher{Path: opts.StateFile}
		run("state file", func(ctx context.Context) error { return fw.Run(ctx, sink) })
	}
	if opts.StateListen != "" {
		l, err := sense.Listen(opts.StateListen)
		if err != nil {
			return err
		}
		run("state endpoint", func(ctx context.Context) error { return sense.Serve(ctx, l, sense.NewHandler(sink)) })
	}
	if opts.DevicePluginDir != "" {
		dm := deviceplugin.New(cfg.DeviceClasses, deviceplugin.Options{PluginDir: opts.DevicePluginDir, Rescan: opts.DeviceRescan,
			OnHealth: func(class string, healthy, unhealthy int) {
				m.Devices.WithLabelValues(class, "healthy").Set(float64(healthy))
				m.Devices.WithLabelValues(class, "unhealthy").Set(float64(unhealthy))
			}})
		run("device plugin", dm.Run)
	}
	if opts.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		srv := &http.Server{Addr: opts.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		run("metrics", func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
				defer c()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	logger.Info("roam-agent running")
	select {
	case <-ctx.Done():
		logger.Info("roam-agent shutting down")
		return nil
	case err := <-errc:
		return err
	}
}

// sink hands valid states to the publisher and reports invalid input.
type sink struct {
	pub      *publish.Publisher
	metrics  *metrics.Metrics
	recorder record.EventRecorder
	node     *corev1.ObjectReference
	logger   klog.Logger
	mu       sync.Mutex
	// fence is the roam.dev/fence value every write carries ("": none).
	fence string
}

// setFence makes every write carry roam.dev/fence: value, starting with a
// write of the newest state.
func (s *sink) setFence(value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fence = value
	s.pub.Update(withFence(s.pub.Desired(), value))
}

func (s *sink) State(src sense.Source, st state.State) {
	s.logger.V(2).Info("State received", "source", src, "context", st.Context, "zone", st.Zone)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pub.Update(withFence(st, s.fence))
}

func (s *sink) Invalid(src sense.Source, err error) {
	s.metrics.StateErrors.WithLabelValues(string(src)).Inc()
	s.logger.Error(err, "Rejected the robot's state; the last good state keeps serving", "source", src)
	if src == sense.SourceFile {
		s.recorder.Event(s.node, corev1.EventTypeWarning, "InvalidState", err.Error())
	}
}
