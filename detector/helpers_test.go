package detector

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func testutilToFloat(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// histCount is the number of observations in the redeploy histogram.
func histCount(m *Metrics) uint64 {
	ch := make(chan prometheus.Metric, 4)
	m.Redeploy.Collect(ch)
	close(ch)
	var n uint64
	for mt := range ch {
		var d dto.Metric
		if err := mt.Write(&d); err == nil {
			n += d.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// nodePhi reads roam_node_phi{node} from the collector.
func nodePhi(t *testing.T, m *Metrics, node string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	m.NodePhi.Collect(ch)
	close(ch)
	for mt := range ch {
		var d dto.Metric
		if err := mt.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "node" && l.GetValue() == node {
				return d.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no roam_node_phi{node=%q}", node)
	return 0
}
