package policy

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Result label values of roam_policy_evaluations_total.
const (
	ResultPass   = "pass"   // a require held
	ResultFail   = "fail"   // a require did not hold
	ResultError  = "error"  // an expression failed at run time
	ResultScored = "scored" // a score was computed
)

// The metric definitions, as component-base metrics declare them.
var (
	evaluations = metrics.NewCounterVec(&metrics.CounterOpts{
		Name: "roam_policy_evaluations_total",
		Help: "Policy expression evaluations by roam-scheduler, by result (pass, fail, error, scored). " +
			"A require that reads only the node is evaluated, and counted, once per node version (its result is cached).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	evaluationDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Name: "roam_policy_evaluation_duration_seconds",
		Help: "Time RoamPolicy's Filter takes to evaluate the governing policies of one pod against one node, " +
			"sampled in the scheduling cycles the framework samples for plugin metrics.",
		// 250 ns .. ~4 ms
		Buckets:        metrics.ExponentialBuckets(250e-9, 4, 8),
		StabilityLevel: metrics.ALPHA,
	})
	registerOnce sync.Once
)

// counters are evaluations' children, resolved once so counting is one
// atomic add.
type counters struct{ pass, fail, err, scored metrics.CounterMetric }

// registerMetrics registers the metrics into the kube-scheduler's legacy
// registry (once), so they appear on roam-scheduler's /metrics; tools that
// check names against what roam-scheduler exports (the dashboard test)
// call it too.
func registerMetrics() *counters {
	registerOnce.Do(func() { legacyregistry.MustRegister(evaluations, evaluationDuration) })
	return &counters{pass: evaluations.WithLabelValues(ResultPass), fail: evaluations.WithLabelValues(ResultFail),
		err: evaluations.WithLabelValues(ResultError), scored: evaluations.WithLabelValues(ResultScored)}
}

// RegisterMetrics registers roam-scheduler's policy metrics (as creating
// the plugin does).
func RegisterMetrics() { registerMetrics() }
