package detector

import (
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
