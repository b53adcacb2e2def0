package detector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeLinkCollector reports each node's adaptive eviction timeout at
// scrape time (as of its last heartbeat):
//
//   - roam_node_eviction_timeout_seconds{node}: the silence after which it
//     is evicted, and roam_node_false_eviction_rate{node}: the estimated
//     false evictions per 1,000 hours of the node at that timeout (both
//     absent while its history is too short to estimate: it is then
//     evicted by the fixed rule);
//   - roam_node_link_too_poor{node}: 1 when its link needs a longer timeout
//     than the ceiling for its share of the false-eviction budget.
type NodeLinkCollector struct {
	timeout, rate, poor *prometheus.Desc
	mu                  sync.Mutex
	each                func(yield func(node string, st LinkStatus))
}

func newNodeLinkCollector() *NodeLinkCollector {
	node := []string{"node"}
	return &NodeLinkCollector{
		timeout: prometheus.NewDesc("roam_node_eviction_timeout_seconds",
			"Silence after a node's last heartbeat at which its pods are evicted, estimated from its own link under the false-eviction budget.", node, nil),
		rate: prometheus.NewDesc("roam_node_false_eviction_rate",
			"Estimated false evictions per 1000 hours of the node at its current eviction timeout.", node, nil),
		poor: prometheus.NewDesc("roam_node_link_too_poor",
			"1 when the node's link needs a longer eviction timeout than the ceiling for its share of the false-eviction budget: too poor for fast failover.", node, nil),
	}
}

func (c *NodeLinkCollector) setSource(each func(yield func(node string, st LinkStatus))) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each = each
}

// Describe implements prometheus.Collector.
func (c *NodeLinkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.timeout
	ch <- c.rate
	ch <- c.poor
}

// Collect implements prometheus.Collector.
func (c *NodeLinkCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	each := c.each
	c.mu.Unlock()
	if each == nil {
		return
	}
	each(func(node string, st LinkStatus) {
		if !st.Prior {
			ch <- prometheus.MustNewConstMetric(c.timeout, prometheus.GaugeValue, st.EvictionTimeout.Seconds(), node)
			ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, st.FalseEvictionRate, node)
		}
		poor := 0.0
		if st.TooPoor {
			poor = 1
		}
		ch <- prometheus.MustNewConstMetric(c.poor, prometheus.GaugeValue, poor, node)
	})
}
