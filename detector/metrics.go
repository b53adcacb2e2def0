package detector

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roam-dev/roam/detector/evict"
)

// Node states reported by roam_nodes{state}.
const (
	StateWarmup    = "warmup"
	StateAlive     = "alive"
	StateSuspected = "suspected"
)

// Eviction reasons reported by roam_evictions_total{reason} and
// roam_redeploy_seconds{reason}.
const (
	ReasonUnreachable = evict.MetricUnreachable
	ReasonContext     = evict.MetricContext
)

// Metrics are roam-detector's metrics. Their names are part of roam's
// interface: the alerts and dashboards query them (docs/design.md, "Metrics"). A nil *Metrics is valid and records nothing.
type Metrics struct {
	NodePhi     *NodePhiCollector
	NodeLink    *NodeLinkCollector
	Nodes       *prometheus.GaugeVec
	Heartbeats  *prometheus.CounterVec
	Suspicions  prometheus.Counter
	Recoveries  prometheus.Counter
	Detection   prometheus.Histogram
	Evictions   *prometheus.CounterVec
	BrakeActive prometheus.Gauge
	Redeploy    *prometheus.HistogramVec

	heartbeats [numSources]prometheus.Counter // Heartbeats by source, resolved once
}

// NewMetrics creates the detector's metrics and registers them with reg
// (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		NodePhi: &NodePhiCollector{desc: prometheus.NewDesc("roam_node_phi",
			"Phi-accrual suspicion level of each node, as of the detector's last tick.", []string{"node"}, nil)},
		NodeLink: newNodeLinkCollector(),
		Nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roam_nodes",
			Help: "Number of nodes the detector tracks, by state (warmup, alive, suspected).",
		}, []string{"state"}),
		Heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_heartbeats_total",
			Help: "Node heartbeats observed, by source: direct (accepted datagrams from roam-agent), lease (Lease renewTime changes), node (Ready lastHeartbeatTime changes of nodes without a Lease).",
		}, []string{"source"}),
		Suspicions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_suspicions_total",
			Help: "Transitions of a node from alive to suspected.",
		}),
		Recoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_recoveries_total",
			Help: "Transitions of a node from suspected back to alive.",
		}),
		Detection: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roam_detection_seconds",
			Help:    "Time from a node's last observed heartbeat to its suspicion.",
			Buckets: []float64{0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 15, 20, 30, 60, 120},
		}),
		Evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_evictions_total",
			Help: "Pods deleted or evicted by roam-detector, by reason (unreachable, context).",
		}, []string{"reason"}),
		BrakeActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roam_eviction_brake_active",
			Help: "1 while the partition brake holds evictions (too many nodes of a zone or of the fleet suspected at once).",
		}),
		Redeploy: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roam_redeploy_seconds",
			Help:    "Time from evicting a pod to a replacement of the same owner Running, by reason.",
			Buckets: []float64{0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600},
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonUnreachable, ReasonContext} {
		m.Evictions.WithLabelValues(r)
	}
	for src := range numSources {
		m.heartbeats[src] = m.Heartbeats.WithLabelValues(src.String())
	}
	for _, s := range []string{StateWarmup, StateAlive, StateSuspected} {
		m.Nodes.WithLabelValues(s)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.NodePhi, m.NodeLink, m.Nodes, m.Heartbeats, m.Suspicions, m.Recoveries,
			m.Detection, m.Evictions, m.BrakeActive, m.Redeploy} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering detector metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NodePhiCollector reports roam_node_phi for every node at scrape time (as
// of the last tick), so the decision loop never spends time on per-node
// gauges.
type NodePhiCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	each func(yield func(node string, phi float64))
}

// setSource installs the function that enumerates the nodes' phi.
func (c *NodePhiCollector) setSource(each func(yield func(node string, phi float64))) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each = each
}

// Describe implements prometheus.Collector.
func (c *NodePhiCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *NodePhiCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	each := c.each
	c.mu.Unlock()
	if each == nil {
		return
	}
	each(func(node string, phi float64) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, phi, node)
	})
}
