// Package cluster is roam-sim's cluster mode: a simulated robot fleet
// against a real control plane (etcd, kube-apiserver and
// kube-controller-manager with stock settings) with roam-scheduler and
// roam-detector as child processes. The sim creates robots as Nodes, renews
// their Leases per the network model and acts as their kubelets; it runs two
// copies of each workload — one through roam, one through stock Kubernetes —
// loses robots that run pods of both copies, switches robots' contexts, and
// measures how long each displaced pod takes to be replaced by a Running
// pod of the same owner.
package cluster

import (
	"fmt"
	"io"
	"time"

	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/sim/network"
)

// Config is one cluster-mode run. Every parameter is printed in the report.
type Config struct {
	Seed     uint64
	Robots   int
	Duration time.Duration
	// Network drives each robot's Lease renewals; its RenewInterval×4 is
	// the Lease's leaseDurationSeconds.
	Network network.Model
	// StartDelay is how long the sim's kubelet takes to start a bound pod.
	// The default, 1 s, is a container start from an image already on the
	// robot; the context goal (settle + 2 s) leaves 2 s for the eviction,
	// the new pod, its scheduling and its start together.
	StartDelay time.Duration
	// LossAt are the times (from the scenario start) a robot is lost for
	// good; SwitchAt the times a robot changes context.
	LossAt   []time.Duration
	SwitchAt []time.Duration
	// Settle is the policies' settle time for context changes.
	Settle    time.Duration
	Devices   []Device
	Workloads []Workload
	// SchedulerConfig is roam-scheduler's KubeSchedulerConfiguration
	// (manifests/scheduler/config.yaml).
	SchedulerConfig string
	// CRDs are CustomResourceDefinition files to install first
	// (manifests/crds: the PodGroup CRD Coscheduling watches).
	CRDs []string
	// RoamBinDir holds roam-scheduler and roam-detector; ControlPlaneBinDir
	// holds etcd, kube-apiserver, kube-controller-manager ("" = default).
	RoamBinDir         string
	ControlPlaneBinDir string
	// DetectorArgs are extra roam-detector flags.
	DetectorArgs []string
	// OutDir receives the report, charts and the child processes' logs.
	OutDir string
	// SetupTimeout bounds the start (control plane, children, every
	// workload Running).
	SetupTimeout time.Duration
	// Status receives the live status line (nil: none) every StatusInterval.
	Status         io.Writer
	StatusInterval time.Duration
	// Clock is the sim's clock (default: real time).
	Clock clock.WithTicker
	// GracefulSignals: the caller cancels Run's context on the first
	// interrupt and gets the report so far (controlplane.Options); a
	// second interrupt stops everything at once.
	GracefulSignals bool
}

// DefaultConfig is `make demo`: 50 robots in 3 contexts for 3 minutes,
// 4 robots lost and 4 context switches.
func DefaultConfig() Config {
	m := network.DefaultModel()
	// Scripted losses are the failures; random dropouts and deaths would
	// blur the side-by-side comparison (flags turn them back on).
	m.DropoutsPerHour, m.DeathsPerDay = 0, 0
	return Config{
		Seed:           1,
		Robots:         50,
		Duration:       3 * time.Minute,
		Network:        m,
		StartDelay:     time.Second,
		LossAt:         []time.Duration{30 * time.Second, 45 * time.Second, 60 * time.Second, 75 * time.Second},
		SwitchAt:       []time.Duration{40 * time.Second, 55 * time.Second, 70 * time.Second, 85 * time.Second},
		Settle:         10 * time.Second,
		Devices:        DefaultDevices(),
		Workloads:      DefaultWorkloads(4, 2),
		OutDir:         "sim-report-cluster",
		SetupTimeout:   3 * time.Minute,
		StatusInterval: time.Second,
	}
}

// LeaseDurationSeconds is the robots' Lease duration: four renew intervals,
// as the kubelet's (renew interval = a quarter of it), at least 1 s.
func (c *Config) LeaseDurationSeconds() int32 {
	return int32(max(1, (4*c.Network.RenewInterval+time.Second/2)/time.Second))
}

// Validate reports the first nonsensical parameter.
func (c *Config) Validate() error {
	if c.Robots < len(Contexts()) {
		return fmt.Errorf("robots: need at least %d (one per context), got %d", len(Contexts()), c.Robots)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("duration must be > 0, got %s", c.Duration)
	}
	if c.StartDelay < 0 || c.Settle < 0 {
		return fmt.Errorf("start delay and settle must be ≥ 0")
	}
	for _, at := range append(append([]time.Duration{}, c.LossAt...), c.SwitchAt...) {
		if at < 0 || at >= c.Duration {
			return fmt.Errorf("loss/switch time %s is outside the run (0..%s)", at, c.Duration)
		}
	}
	if len(c.Workloads) == 0 {
		return fmt.Errorf("no workloads")
	}
	for _, w := range c.Workloads {
		if w.Kind != "Deployment" && w.Kind != "StatefulSet" {
			return fmt.Errorf("workload %s/%s: kind %q (want Deployment or StatefulSet)", w.Namespace, w.Name, w.Kind)
		}
	}
	if err := c.Network.Validate(); err != nil {
		return fmt.Errorf("network model: %w", err)
	}
	if c.SchedulerConfig == "" || c.OutDir == "" {
		return fmt.Errorf("scheduler config and output directory are required")
	}
	return nil
}
