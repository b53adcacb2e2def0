// Package manifests_test checks roam's deployable manifests: the kustomize
// base, the monitoring kustomization, the alert rules and the examples are
// built with kustomize's Go API and checked statically here, and applied to
// a real kube-apiserver in apply_test.go.
//
// Regenerate alerts/prometheusrule.yaml from alerts/rules.yaml with
//
//	go test ./manifests -run TestPrometheusRuleMatchesRules -update
package manifests_test

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/policies"
)

var update = flag.Bool("update", false, "rewrite alerts/prometheusrule.yaml from alerts/rules.yaml")

// Kustomization directories, relative to this package.
const (
	baseDir       = "."
	examplesDir   = "examples"
	monitoringDir = "monitoring"
)

// The names the manifests, the alerts and the docs agree on.
const (
	systemNamespace   = "roam-system"
	schedulerName     = "roam-scheduler"
	detectorName      = "roam-detector"
	detectorSA        = "system:serviceaccount:roam-system:roam-detector"
	schedulerSA       = "system:serviceaccount:roam-system:roam-scheduler"
	schedulerConfigCM = "roam-scheduler-config"
)

// alerts are roam's alert names (docs/design.md).
var alerts = []string{"RoamRobotUnreachable", "RoamRobotLinkTooPoor", "RoamEvictionBrakeActive", "RoamPolicyInvalid", "RoamRedeploySlow", "RoamDetectorDown", "RoamSchedulerDown"}

// build runs kustomize on dir, exactly as `kubectl apply -k dir` would.
func build(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatalf("kustomize build %s: %s: %v", dir, r.CurId(), err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	if len(out) == 0 {
		t.Fatalf("kustomize build %s: no objects", dir)
	}
	return out
}

// find returns the object of kind, namespace and name, or fails.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s/%s in the build", kind, namespace, name)
	return nil
}

// convert decodes an unstructured object into a typed one.
func convert[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return out
}

func readYAML(t testing.TB, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

const prometheusRuleHeader = `# GENERATED from rules.yaml by
#   go test ./manifests -run TestPrometheusRuleMatchesRules -update
# Do not edit: edit rules.yaml (the single source of truth, tested with
# promtool) and regenerate. The Go test fails when the two differ.
#
# prometheus-operator picks this up when its Prometheus' ruleSelector
# matches these labels (many installs select on "release" or "role"; add
# the label yours needs).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: roam
  namespace: roam-system
  labels:
    app.kubernetes.io/name: roam
    role: alert-rules
`

// prometheusRuleFrom wraps the groups of a Prometheus rule file in a
// PrometheusRule, keeping the comments of rules.yaml.
func prometheusRuleFrom(rules string) (string, error) {
	i := strings.Index(rules, "\ngroups:")
	if i < 0 {
		return "", fmt.Errorf("rules.yaml has no top-level groups:")
	}
	var b strings.Builder
	b.WriteString(prometheusRuleHeader)
	b.WriteString("spec:\n")
	for _, line := range strings.Split(strings.TrimRight(rules[i+1:], "\n"), "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// TestPrometheusRuleMatchesRules keeps alerts/prometheusrule.yaml and
// alerts/rules.yaml identical in content, and checks every alert of the
// roam's is there with a severity, summary, description and a runbook_url
// whose anchor in docs/operations.md exists.
func TestPrometheusRuleMatchesRules(t *testing.T) {
	rulesRaw, err := os.ReadFile("alerts/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		out, err := prometheusRuleFrom(string(rulesRaw))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("alerts/prometheusrule.yaml", []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rules := readYAML(t, "alerts/rules.yaml")
	pr := readYAML(t, "alerts/prometheusrule.yaml")
	if pr["apiVersion"] != "monitoring.coreos.com/v1" || pr["kind"] != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is %v %v, want monitoring.coreos.com/v1 PrometheusRule", pr["apiVersion"], pr["kind"])
	}
	spec, _ := pr["spec"].(map[string]any)
	if !reflect.DeepEqual(spec["groups"], rules["groups"]) {
		t.Fatalf("alerts/prometheusrule.yaml spec.groups differ from alerts/rules.yaml groups; regenerate with\n  go test ./manifests -run TestPrometheusRuleMatchesRules -update")
	}

	runbooks, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	groups, _ := rules["groups"].([]any)
	for _, g := range groups {
		rs, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rs {
			rule := r.(map[string]any)
			name, _ := rule["alert"].(string)
			if name == "" {
				continue
			}
			found[name] = true
			labels, _ := rule["labels"].(map[string]any)
			if sev := labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %v, want warning or critical", name, sev)
			}
			ann, _ := rule["annotations"].(map[string]any)
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if s, _ := ann[k].(string); s == "" {
					t.Errorf("%s: no %s annotation", name, k)
				}
			}
			url, _ := ann["runbook_url"].(string)
			anchor := strings.ToLower(name)
			if !strings.HasSuffix(url, "docs/operations.md#"+anchor) {
				t.Errorf("%s: runbook_url %q, want it to end in docs/operations.md#%s", name, url, anchor)
			}
			if !strings.Contains(string(runbooks), "\n### "+name+"\n") {
				t.Errorf("%s: docs/operations.md has no runbook heading %q (anchor #%s)", name, "### "+name, anchor)
			}
		}
	}
	for _, a := range alerts {
		if !found[a] {
			t.Errorf("alert %s missing from alerts/rules.yaml", a)
		}
	}
	if len(found) != len(alerts) {
		t.Errorf("alerts/rules.yaml has %d alerts, want the design's %d", len(found), len(alerts))
	}
}

// TestBaseStatic checks what the base must hold for a bare cluster and
// hardened pods, before anything is applied.
func TestBaseStatic(t *testing.T) {
	objs := build(t, baseDir)
	for _, o := range objs {
		if strings.HasPrefix(o.GetAPIVersion(), "monitoring.coreos.com/") {
			t.Errorf("base holds %s %s: prometheus-operator kinds belong in %s/ (a bare cluster has no such CRD)", o.GetKind(), o.GetName(), monitoringDir)
		}
	}
	find(t, objs, "Namespace", "", systemNamespace)
	find(t, objs, "CustomResourceDefinition", "", "podgroups.scheduling.x-k8s.io")

	for _, name := range []string{schedulerName, detectorName} {
		t.Run(name, func(t *testing.T) {
			d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", systemNamespace, name))
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("replicas %v, want 2", d.Spec.Replicas)
			}
			ps := d.Spec.Template.Spec
			if ps.ServiceAccountName != name {
				t.Errorf("serviceAccountName %q, want %q", ps.ServiceAccountName, name)
			}
			if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
				t.Errorf("pod securityContext.runAsNonRoot not true")
			}
			for _, c := range ps.Containers {
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("container %s: no securityContext", c.Name)
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("container %s: readOnlyRootFilesystem not true", c.Name)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("container %s: allowPrivilegeEscalation not false", c.Name)
				case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
					t.Errorf("container %s: capabilities do not drop ALL", c.Name)
				case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
					t.Errorf("container %s: seccompProfile not RuntimeDefault", c.Name)
				}
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("container %s: needs liveness and readiness probes", c.Name)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("container %s: no %s request", c.Name, r)
					}
					if _, ok := c.Resources.Limits[r]; !ok {
						t.Errorf("container %s: no %s limit", c.Name, r)
					}
				}
			}
			svc := convert[corev1.Service](t, find(t, objs, "Service", systemNamespace, name))
			if !matches(svc.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
			}
			pdb := find(t, objs, "PodDisruptionBudget", systemNamespace, name)
			sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
			if !matches(sel, d.Spec.Template.Labels) {
				t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", sel, d.Spec.Template.Labels)
			}
		})
	}

	t.Run("scheduler config", func(t *testing.T) {
		d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", systemNamespace, schedulerName))
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--config=/etc/roam/scheduler/config.yaml") {
			t.Errorf("args %v lack --config=/etc/roam/scheduler/config.yaml", d.Spec.Template.Spec.Containers[0].Args)
		}
		var cmName string
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
		if !strings.HasPrefix(cmName, schedulerConfigCM+"-") {
			t.Fatalf("config volume names ConfigMap %q, want the generated %s-<hash>", cmName, schedulerConfigCM)
		}
		cm := convert[corev1.ConfigMap](t, find(t, objs, "ConfigMap", systemNamespace, cmName))
		var cfg struct {
			Kind           string `json:"kind"`
			LeaderElection struct {
				LeaderElect       *bool  `json:"leaderElect"`
				ResourceName      string `json:"resourceName"`
				ResourceNamespace string `json:"resourceNamespace"`
			} `json:"leaderElection"`
			Profiles []struct {
				SchedulerName string `json:"schedulerName"`
			} `json:"profiles"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
			t.Fatalf("scheduler/config.yaml: %v", err)
		}
		if cfg.Kind != "KubeSchedulerConfiguration" {
			t.Errorf("scheduler/config.yaml kind %q", cfg.Kind)
		}
		if !slices.ContainsFunc(cfg.Profiles, func(p struct {
			SchedulerName string `json:"schedulerName"`
		}) bool {
			return p.SchedulerName == schedulerName
		}) {
			t.Errorf("scheduler/config.yaml has no profile with schedulerName %s", schedulerName)
		}
		le := cfg.LeaderElection
		if le.LeaderElect != nil && !*le.LeaderElect {
			t.Errorf("scheduler/config.yaml turns leader election off; the Deployment runs 2 replicas")
		}
		if le.ResourceNamespace != systemNamespace {
			t.Errorf("scheduler leader election namespace %q, want %s (its Role lives there)", le.ResourceNamespace, systemNamespace)
		}
		role := convert[rbacv1.Role](t, find(t, objs, "Role", systemNamespace, "roam-scheduler-leader-election"))
		if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.ResourceNames, le.ResourceName) && slices.Contains(r.Verbs, "update")
		}) {
			t.Errorf("scheduler leader Lease %q (resourceName in scheduler/config.yaml) is not covered by Role roam-scheduler-leader-election", le.ResourceName)
		}
	})

	// The probes ask exactly what run_test.go proves the binaries serve.
	t.Run("probes", func(t *testing.T) {
		for _, tc := range []struct {
			name, live, ready string
			port              int32
			scheme            corev1.URIScheme
		}{
			{schedulerName, "/livez", "/readyz", 10259, corev1.URISchemeHTTPS},
			{detectorName, "/healthz", "/readyz", 8080, corev1.URISchemeHTTP},
		} {
			d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", systemNamespace, tc.name))
			c := d.Spec.Template.Spec.Containers[0]
			if len(c.Ports) != 1 || c.Ports[0].ContainerPort != tc.port {
				t.Errorf("%s: ports %v, want only %d", tc.name, c.Ports, tc.port)
				continue
			}
			for _, pr := range []struct {
				probe *corev1.Probe
				path  string
			}{{c.LivenessProbe, tc.live}, {c.ReadinessProbe, tc.ready}} {
				g := pr.probe.HTTPGet
				if g == nil || g.Path != pr.path || g.Port.String() != c.Ports[0].Name || (g.Scheme != tc.scheme && !(g.Scheme == "" && tc.scheme == corev1.URISchemeHTTP)) {
					t.Errorf("%s: probe %+v, want %s %s on port %s", tc.name, g, tc.scheme, pr.path, c.Ports[0].Name)
				}
			}
		}
	})

	t.Run("detector args", func(t *testing.T) {
		d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", systemNamespace, detectorName))
		for _, a := range []string{"--leader-elect=true", "--leader-elect-namespace=roam-system", "--metrics-addr=:8080"} {
			if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, a) {
				t.Errorf("detector args %v lack %s", d.Spec.Template.Spec.Containers[0].Args, a)
			}
		}
	})

	t.Run("no secrets, no wildcards", func(t *testing.T) {
		for _, o := range objs {
			var rules []rbacv1.PolicyRule
			switch o.GetKind() {
			case "ClusterRole":
				rules = convert[rbacv1.ClusterRole](t, o).Rules
			case "Role":
				rules = convert[rbacv1.Role](t, o).Rules
			default:
				continue
			}
			for _, r := range rules {
				for _, s := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
					if slices.Contains(s, "*") {
						t.Errorf("%s %s: wildcard in rule %v", o.GetKind(), o.GetName(), r)
					}
				}
				if slices.Contains(r.Resources, "secrets") {
					t.Errorf("%s %s grants access to secrets: %v", o.GetKind(), o.GetName(), r)
				}
			}
		}
	})
}

// matches reports whether selector selects labels.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestExamples parses every example policy with the policies package (what
// roamctl policy check and both components do) and checks every example pod
// opts in to roam-scheduler and names only policies that exist.
func TestExamples(t *testing.T) {
	objs := build(t, examplesDir)
	policyNames := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetLabels()[policies.PolicyLabel] == "" {
			continue
		}
		cm := convert[corev1.ConfigMap](t, o)
		if _, err := policies.Parse(cm); err != nil {
			t.Errorf("example policy %s/%s: %v", cm.Namespace, cm.Name, err)
		}
		policyNames[cm.Namespace+"/"+cm.Name] = true
	}
	if len(policyNames) < 5 {
		t.Fatalf("examples hold %d policy ConfigMaps, want the story's (at least 5)", len(policyNames))
	}

	var groups, grouped int
	for _, o := range objs {
		if o.GetKind() == "PodGroup" {
			groups++
		}
		tmpl, ok, _ := unstructured.NestedMap(o.Object, "spec", "template")
		if !ok {
			continue
		}
		var pt corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(tmpl, &pt, true); err != nil {
			t.Fatalf("%s %s/%s: pod template: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if pt.Spec.SchedulerName != schedulerName {
			t.Errorf("%s: schedulerName %q, want %s", id, pt.Spec.SchedulerName, schedulerName)
		}
		if p := pt.Annotations[policies.PolicyAnnotation]; p != "" && !policyNames[o.GetNamespace()+"/"+p] {
			t.Errorf("%s names policy %q, which is not an example policy in its namespace", id, p)
		}
		if g := pt.Labels["scheduling.x-k8s.io/pod-group"]; g != "" {
			grouped++
			find(t, objs, "PodGroup", o.GetNamespace(), g)
		}
	}
	if groups == 0 || grouped == 0 {
		t.Errorf("examples hold %d PodGroups and %d workloads in one, want the 3-robot team", groups, grouped)
	}
}
