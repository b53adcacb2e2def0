// Command roam-agent runs on every robot (a DaemonSet): it publishes what
// the robot senses (context, zone, location, battery) into its Node and
// exposes the robot's devices through the kubelet's device-plugin API.
// See docs/agent.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/agent/daemon"
	"github.com/roam-dev/roam/agent/fence"
	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/agent/sense"
	"github.com/roam-dev/roam/internal/version"
	"github.com/roam-dev/roam/policies"
)

type options struct {
	kubeconfig string
	daemon     daemon.Options
}

func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{}
	d := &o.daemon
	l := publish.DefaultLimits()
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config)")
	fs.StringVar(&d.NodeName, "node-name", os.Getenv("NODE_NAME"), "this robot's Node (default $NODE_NAME, set from the downward API)")
	fs.StringVar(&d.ConfigFile, "config", "/etc/roam-agent/config.yaml", "agent config file: the device classes (a missing file configures none)")
	fs.StringVar(&d.StateFile, "state-file", sense.DefaultStateFile, "state file the robot's software writes, YAML or JSON (empty: off)")
	fs.StringVar(&d.StateListen, "state-listen", "unix://"+sense.DefaultSocket, "address of the PUT /v1/state endpoint: unix:///path or tcp://127.0.0.1:port (empty: off)")
	fs.StringVar(&d.DevicePluginDir, "device-plugin-dir", "/var/lib/kubelet/device-plugins", "the kubelet's device-plugin directory (empty: no device plugin)")
	fs.DurationVar(&d.DeviceRescan, "device-rescan", 10*time.Second, "how often devices are rescanned besides on file-system events")
	fs.StringVar(&d.MetricsAddr, "metrics-addr", ":8080", "address serving /metrics and /healthz (empty: off)")
	fs.DurationVar(&l.Debounce, "debounce", l.Debounce, "a context, zone or extra-key change waits this long for further changes before it is written")
	fs.Float64Var(&l.LocationResolution, "location-resolution", l.LocationResolution, "metres the robot must move before its location is written again")
	fs.DurationVar(&l.LocationInterval, "location-interval", l.LocationInterval, "least time between two location writes")
	fs.Float64Var(&l.BatteryStep, "battery-step", l.BatteryStep, "battery change (percentage points) written at once")
	fs.DurationVar(&l.BatteryInterval, "battery-interval", l.BatteryInterval, "least time between writes of smaller battery changes")
	fo := &d.Fence
	var kubeletRoot string
	fs.DurationVar(&fo.After, "fence-after", 3*time.Second, "freeze the pods roam would move this long after the send time of the newest acknowledged heartbeat (0: the robot is unfenced)")
	fs.StringVar(&fo.CgroupDir, "cgroup-dir", "/sys/fs/cgroup", "where the host's cgroup filesystem is mounted")
	fs.StringVar(&kubeletRoot, "kubelet-cgroup-root", "/", "the kubelet's --cgroup-root (\"/robot\" with the cgroupfs driver, \"/robot.slice\" with systemd)")
	fs.StringVar(&fo.StateDir, "fence-state-dir", "/run/roam", "directory (a host tmpfs) keeping the fence lease and the freezable pods across agent restarts")
	fs.StringVar(&fo.LeaseNamespace, "fence-lease-namespace", fence.DefaultLeaseNamespace, "namespace of the robots' fence Leases")
	fs.StringVar(&fo.PolicyNamespace, "policy-namespace", policies.DefaultGlobalNamespace, "namespace whose policies govern every namespace")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fo.After < 0 {
		return nil, fmt.Errorf("--fence-after %v must not be negative", fo.After)
	}
	root, err := cgroup.ParseRoot(kubeletRoot)
	if err != nil {
		return nil, fmt.Errorf("--kubelet-cgroup-root: %w", err)
	}
	fo.KubeletCgroupRoot = root
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if l.LocationResolution < 0 || l.BatteryStep < 0 || l.Debounce < 0 || l.LocationInterval < 0 || l.BatteryInterval < 0 {
		return nil, fmt.Errorf("rate limits must not be negative")
	}
	d.Limits = l
	return o, nil
}

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "roam-agent")
		return
	}
	o, err := parseFlags(flag.NewFlagSet(os.Args[0], flag.ContinueOnError), os.Args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "roam-agent:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "roam-agent failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, o *options) error {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "roam-agent"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return daemon.Run(ctx, client, o.daemon)
}
