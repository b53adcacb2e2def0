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
	// HeartbeatsSent counts direct heartbeat datagrams sent (one per
	// detector replica per interval); Acks the leader's acknowledgements.
	HeartbeatsSent, Acks prometheus.Counter
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
		HeartbeatsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_agent_heartbeats_sent_total",
			Help: "Direct heartbeat datagrams sent to roam-detector replicas.",
		}),
		Acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_agent_acks_total",
			Help: "Acknowledgements of direct heartbeats received from the leading roam-detector.",
		}),
	}
	reg.MustRegister(m.Publishes, m.StateErrors, m.Devices, m.HeartbeatsSent, m.Acks)
	return m
}
