// Package metrics holds roam-agent's Prometheus metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's collectors, registered on one registry.
type Metrics struct {
	// Publishes counts Node writes by kind (labels, location, battery).
	Publishes *prometheus.CounterVec
	// StateErrors counts rejected state input by source (file, http).
	StateErrors *prometheus.CounterVec
	// Devices is the number of devices per class and health.
	Devices *prometheus.GaugeVec
	// FencedPods is the number of pods frozen by fencing now.
	FencedPods prometheus.Gauge
	// Fences counts frozen pods released, by outcome (thawed, killed).
	Fences *prometheus.CounterVec
	// FenceErrors counts fencing operations that failed, by operation
	// (freeze, thaw, kill): the pod was unfenced.
	FenceErrors *prometheus.CounterVec
	// FenceAcks counts acknowledged renewals of the robot's fence Lease.
	FenceAcks prometheus.Counter
	// Fenceable is 1 when the agent can fence the robot (it publishes
	// roam.dev/fence), else 0.
	Fenceable prometheus.Gauge
}

// New creates the agent's metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_agent_publishes_total",
			Help: "Writes of the robot's sensed state to its Node, by the reason of the write (labels, location, battery).",
		}, []string{"kind"}),
		StateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_agent_state_errors_total",
			Help: "State reports rejected as invalid, by source (file, http).",
		}, []string{"source"}),
		Devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roam_agent_devices",
			Help: "Devices the agent's device plugin offers, by class and health (healthy, unhealthy).",
		}, []string{"class", "health"}),
	}
	m.FencedPods = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "roam_agent_fenced_pods",
		Help: "Pods the agent has frozen because the robot has no acknowledged heartbeat (or killed and keeps frozen).",
	})
	m.Fences = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_agent_fences_total",
		Help: "Frozen pods released on reconnection, by outcome: thawed (still wanted) or killed (roam removed it).",
	}, []string{"outcome"})
	m.FenceErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_agent_fence_errors_total",
		Help: "Fencing operations that failed, by operation (freeze, thaw, kill); a pod that could not be frozen was unfenced.",
	}, []string{"op"})
	m.FenceAcks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roam_agent_fence_lease_renewals_total",
		Help: "Acknowledged renewals of the robot's fence Lease.",
	})
	m.Fenceable = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "roam_agent_fenceable",
		Help: "1 when the agent can freeze the robot's pods and publishes roam.dev/fence on its Node, else 0.",
	})
	reg.MustRegister(m.Publishes, m.StateErrors, m.Devices, m.FencedPods, m.Fences, m.FenceErrors, m.FenceAcks, m.Fenceable)
	return m
}
