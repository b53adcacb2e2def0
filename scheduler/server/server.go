// Package server builds and runs roam-scheduler: kube-scheduler v1.34
// with roam's plugins and scheduler-plugins' Coscheduling, configured by a
// KubeSchedulerConfiguration file (manifests/scheduler/config.yaml). The
// binary (cmd/roam-scheduler), the integration tests, the benchmark and
// roam-sim all go through it.
package server

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/component-base/configz"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"sigs.k8s.io/scheduler-plugins/pkg/coscheduling"

	// Registers CoschedulingArgs in the kube-scheduler's config scheme.
	_ "sigs.k8s.io/scheduler-plugins/apis/config/scheme"

	"github.com/roam-dev/roam/scheduler/policy"
	"github.com/roam-dev/roam/scheduler/schedconfig"
)

// RegistryOptions register roam's plugins and Coscheduling.
func RegistryOptions() []app.Option {
	return []app.Option{
		app.WithPlugin(policy.Name, policy.New),
		app.WithPlugin(coscheduling.Name, coscheduling.New),
	}
}

// NewCommand is roam-scheduler's command line: kube-scheduler's, with
// roam's registry. Unlike kube-scheduler, --kubeconfig also applies when
// --config is given (it replaces the file's clientConnection.kubeconfig).
func NewCommand() *cobra.Command {
	cmd := app.NewSchedulerCommand(RegistryOptions()...)
	cmd.Use = "roam-scheduler"
	cmd.Short = "kube-scheduler with roam's placement plugins and Coscheduling"
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		f := c.Flags()
		if f.Changed("config") && f.Changed("kubeconfig") {
			kubeconfig := f.Lookup("kubeconfig").Value.String()
			path, cleanup, err := WriteConfig(f.Lookup("config").Value.String(), Overrides{Kubeconfig: kubeconfig})
			if err != nil {
				return err
			}
			defer cleanup()
			if err := f.Set("config", path); err != nil {
				return fmt.Errorf("setting --config: %w", err)
			}
		}
		return run(c, args)
	}
	return cmd
}

// Overrides change a configuration file for one run.
type Overrides = schedconfig.Overrides

// WriteConfig writes a copy of the KubeSchedulerConfiguration at path with
// o applied to a temporary file; cleanup removes it.
func WriteConfig(path string, o Overrides) (string, func(), error) {
	out, err := schedconfig.Render(path, o)
	if err != nil {
		return "", nil, err
	}
	f, err := os.CreateTemp("", "roam-scheduler-config-*.yaml")
	if err != nil {
		return "", nil, fmt.Errorf("writing scheduler config: %w", err)
	}
	name := f.Name()
	cleanup := func() { _ = os.Remove(name) }
	if _, err := f.Write(out); err != nil {
		_ = f.Close()
		cleanup()
		return "", nil, fmt.Errorf("writing scheduler config: %w", err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("writing scheduler config: %w", err)
	}
	return name, cleanup, nil
}

// Config runs roam-scheduler in-process.
type Config struct {
	// ConfigFile is the KubeSchedulerConfiguration (manifests/scheduler/config.yaml).
	ConfigFile string
	// Overrides apply to ConfigFile (tests: Kubeconfig, LeaderElect false).
	Overrides Overrides
	// SecurePort serves /metrics, /healthz on this port; 0 serves nothing.
	SecurePort int
}

// Running is an in-process roam-scheduler.
type Running struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Start builds roam-scheduler from cfg and runs it until ctx ends or Stop.
// Only one may run at a time in a process (kube-scheduler registers
// process-wide configz and metrics).
func Start(ctx context.Context, cfg Config) (*Running, error) {
	path, cleanup, err := WriteConfig(cfg.ConfigFile, cfg.Overrides)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	opts := options.NewOptions()
	opts.ConfigFile = path
	opts.SecureServing.BindPort = cfg.SecurePort
	ctx, cancel := context.WithCancel(ctx)
	cc, sched, err := app.Setup(ctx, opts, RegistryOptions()...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("setting up roam-scheduler from %s: %w", cfg.ConfigFile, err)
	}
	configz.Delete("componentconfig") // a previous in-process run registered it
	r := &Running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		err := app.Run(ctx, cc, sched)
		if ctx.Err() == nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			klog.FromContext(ctx).Error(err, "roam-scheduler stopped")
		}
	}()
	return r, nil
}

// Stop stops the scheduler and waits for it; it returns the error that
// ended it early, if any.
func (r *Running) Stop() error {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Done is closed when the scheduler has stopped.
func (r *Running) Done() <-chan struct{} { return r.done }
