package manifests_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/policy"
)

// dashboardFile is the Grafana dashboard; the monitoring kustomization
// wraps it in a ConfigMap for Grafana's dashboard sidecar.
var dashboardFile = filepath.Join(monitoringDir, "dashboard.json")

// prometheusSeries are series Prometheus itself records for every scrape
// target; the dashboard may use them besides roam's own metrics.
var prometheusSeries = map[string]bool{"up": true}

// recordingRegisterer registers into a real registry and keeps every
// collector, so their descriptors list each metric family even when it has
// no series yet (a vector with no children gathers nothing).
type recordingRegisterer struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics are the metric families roam's binaries export, read from
// their registries: roam-detector's (the detector's metrics and the policy
// store's, which it registers in the same registry) and roam-scheduler's
// policy metrics in the kube-scheduler's legacy registry.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := &recordingRegisterer{Registry: prometheus.NewRegistry()}
	if _, err := detector.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// The store only registers its metrics here; it never talks to the
	// API server in this test.
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	if _, err := policies.NewStore(factory, policies.StoreOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
		}
	}
	policy.RegisterMetrics()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "roam_") {
			names[f.GetName()] = true
		}
	}
	return names
}

// TestDashboardQueriesUseExportedMetrics parses the dashboard and checks
// that every query names only metrics roam exports (histogram series
// _bucket, _sum and _count count as their family), and that the dashboard
// covers what an operator watches.
func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, must := range []string{"roam_node_phi", "roam_nodes", "roam_redeploy_seconds", "roam_policies", "roam_policy_evaluations_total"} {
		if !exported[must] {
			t.Fatalf("the registries lack %s (found %v): the test reads the wrong registries", must, keys(exported))
		}
	}
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard has no uid or title")
	}
	queries := dash.queries()
	if len(queries) < 10 {
		t.Fatalf("only %d queries found", len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: query %q names no metric", q.where, q.expr)
		}
		for _, n := range names {
			family := familyOf(n, exported)
			if family == "" {
				t.Errorf("%s: query %q uses %s, which roam does not export (exported: %s)", q.where, q.expr, n, strings.Join(keys(exported), ", "))
				continue
			}
			used[family] = true
		}
	}
	// What the dashboard is for: fleet state, phi per robot, detections,
	// evictions by reason, redeploy time, brake, invalid policies,
	// scheduler evaluation rates.
	for _, want := range []string{"roam_nodes", "roam_node_phi", "roam_suspicions_total", "roam_detection_seconds", "roam_evictions_total",
		"roam_redeploy_seconds", "roam_eviction_brake_active", "roam_policies", "roam_policy_evaluations_total", "roam_policy_evaluation_duration_seconds"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	ids := map[int]bool{}
	for _, p := range dash.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
	}
}

// The dashboard ships as a ConfigMap the Grafana sidecar picks up.
func TestDashboardConfigMap(t *testing.T) {
	objs := build(t, monitoringDir)
	cm := find(t, objs, "ConfigMap", systemNamespace, "roam-grafana-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard: \"1\"", cm.GetLabels())
	}
	data, _, _ := unstructuredString(cm.Object, "data", "roam-fleet.json")
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if data != string(want) {
		t.Errorf("the ConfigMap's roam-fleet.json differs from %s", dashboardFile)
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, fmt.Errorf("%s is not a map", p)
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// TestMetricNames pins the extraction rule on tricky queries.
func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`max by (node) (roam_node_phi{node=~"$node"})`, []string{"roam_node_phi"}},
		{`histogram_quantile(0.99, sum by (le, reason) (rate(roam_redeploy_seconds_bucket[$__rate_interval])))`, []string{"roam_redeploy_seconds_bucket"}},
		{`sum(rate(a_total[5m])) / ignoring(x) group_left sum without (y) (b{c="d,e (f)"}) * 60 > bool 1`, []string{"a_total", "b"}},
		{`up{job=~"roam-detector|roam-scheduler"} == 1 and on(job) c offset 5m`, []string{"up", "c"}},
		{`{__name__="roam_nodes"}`, []string{"roam_nodes"}},
		{`label_values(roam_node_phi, node)`, []string{"roam_node_phi"}},
		{`rate(x[1h:5m]) unless y @ start()`, []string{"x", "y"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`sum(x`, `x{a="b}`, `x{a="b"`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q) accepted an unbalanced query", bad)
		}
	}
}

// metricNames returns the metric names a PromQL query selects, in order.
// The rule (PromQL's lexical structure, without a full parser): an
// identifier is a metric name unless it is
//   - inside a string, a {…} label matcher list (where __name__="x" names
//     metric x) or a […] range/subquery;
//   - followed by "(": a function or aggregation (sum, rate, …);
//   - inside the (…) label list after by, without, on, ignoring,
//     group_left or group_right;
//   - a keyword: by, without, on, ignoring, group_left, group_right, bool,
//     offset, and, or, unless, atan2, inf, nan; or what follows @ (start(),
//     end()).
//
// Grafana's label_values(selector, label) template function keeps only
// its selector. Numbers, durations and $variables are no names.
func metricNames(expr string) ([]string, error) {
	if m := regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$`).FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	keywords := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true, "inf": true, "nan": true}
	labelLists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	var names []string
	var parens []bool // per open "(": is it a label list?
	r := []rune(expr)
	prevWord := ""
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(r) && r[j] != c; j++ {
				if r[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated string in %q", expr)
			}
			i = j + 1
			prevWord = ""
		case c == '{':
			j := i + 1
			for ; j < len(r) && r[j] != '}'; j++ {
				if r[j] == '"' || r[j] == '\'' || r[j] == '`' {
					q := r[j]
					for j++; j < len(r) && r[j] != q; j++ {
						if r[j] == '\\' && q != '`' {
							j++
						}
					}
					if j >= len(r) {
						return nil, fmt.Errorf("unterminated string in %q", expr)
					}
				}
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unclosed { in %q", expr)
			}
			if m := regexp.MustCompile(`__name__\s*=\s*"([^"]+)"`).FindStringSubmatch(string(r[i:j])); m != nil {
				names = append(names, m[1])
			}
			i = j + 1
			prevWord = ""
		case c == '[':
			j := i + 1
			for ; j < len(r) && r[j] != ']'; j++ {
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unclosed [ in %q", expr)
			}
			i = j + 1
			prevWord = ""
		case c == '(':
			parens = append(parens, labelLists[prevWord])
			i++
			prevWord = ""
		case c == ')':
			if len(parens) == 0 {
				return nil, fmt.Errorf("unbalanced ) in %q", expr)
			}
			parens = parens[:len(parens)-1]
			i++
			prevWord = ""
		case c == '@':
			// @ start() / end() / a timestamp: skip the modifier's word.
			i++
			for i < len(r) && r[i] == ' ' {
				i++
			}
			for i < len(r) && (isIdent(r[i]) || r[i] == '.') {
				i++
			}
			prevWord = ""
		case c == '$':
			i++
			for i < len(r) && (isIdent(r[i]) || r[i] == '{' || r[i] == '}') {
				i++
			}
			prevWord = ""
		case c >= '0' && c <= '9' || c == '.':
			for i < len(r) && (isIdent(r[i]) || r[i] == '.') {
				i++ // numbers, durations (5m), exponents (1e3)
			}
			prevWord = ""
		case isIdentStart(c):
			j := i
			for j < len(r) && (isIdent(r[j]) || r[j] == ':') {
				j++
			}
			word := string(r[i:j])
			k := j
			for k < len(r) && r[k] == ' ' {
				k++
			}
			inLabelList := len(parens) > 0 && parens[len(parens)-1]
			lower := strings.ToLower(word)
			switch {
			case inLabelList, keywords[lower]:
			case k < len(r) && r[k] == '(':
			case aggregationClause.MatchString(string(r[k:])):
				// sum by (x) (…): an aggregation with its clause first.
			default:
				names = append(names, word)
			}
			prevWord = lower
			i = j
		default:
			i++
			if c != ' ' && c != '\n' && c != '\t' {
				prevWord = ""
			}
		}
	}
	if len(parens) > 0 {
		return nil, fmt.Errorf("unclosed ( in %q", expr)
	}
	return names, nil
}

var aggregationClause = regexp.MustCompile(`^(?i)(by|without)\s*\(`)

func isIdentStart(c rune) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c rune) bool      { return isIdentStart(c) || (c >= '0' && c <= '9') }

// familyOf maps a series name to its exported family ("" if none): a
// histogram's _bucket, _sum and _count series belong to the histogram.
func familyOf(name string, exported map[string]bool) string {
	if exported[name] || prometheusSeries[name] {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suffix); ok && exported[f] {
			return f
		}
	}
	return ""
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // a collapsed row's panels
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type query struct{ where, expr string }

func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// queries lists every PromQL expression: panel targets and query variables.
func (d *dashboard) queries() []query {
	var out []query
	for _, p := range d.allPanels() {
		for i, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, query{fmt.Sprintf("panel %q target %d", p.Title, i), tg.Expr})
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s string
		var obj struct {
			Query string `json:"query"`
		}
		switch {
		case json.Unmarshal(v.Query, &s) == nil:
		case json.Unmarshal(v.Query, &obj) == nil:
			s = obj.Query
		}
		if s != "" {
			out = append(out, query{fmt.Sprintf("variable %q", v.Name), s})
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
