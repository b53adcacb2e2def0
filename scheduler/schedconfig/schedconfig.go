// Package schedconfig rewrites a KubeSchedulerConfiguration file for one
// run (another kubeconfig, leader election off, an extra profile) without
// depending on kube-scheduler itself, so the simulator can use it too.
package schedconfig

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Overrides change a configuration file for one run.
type Overrides struct {
	// Kubeconfig replaces clientConnection.kubeconfig when non-empty.
	Kubeconfig string
	// LeaderElect replaces leaderElection.leaderElect when non-nil.
	LeaderElect *bool
	// QPS and Burst replace clientConnection.qps/burst when > 0.
	QPS   float32
	Burst int32
	// Edit, when set, changes the parsed document after the overrides
	// (e.g. adds a profile).
	Edit func(doc map[string]any) error
}

// Render reads the configuration at path and returns it with o applied.
func Render(path string, o Overrides) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scheduler config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parsing scheduler config %s: %w", path, err)
	}
	if doc == nil {
		return nil, fmt.Errorf("scheduler config %s is empty", path)
	}
	if o.Kubeconfig != "" {
		Section(doc, "clientConnection")["kubeconfig"] = o.Kubeconfig
	}
	if o.QPS > 0 {
		Section(doc, "clientConnection")["qps"] = o.QPS
	}
	if o.Burst > 0 {
		Section(doc, "clientConnection")["burst"] = o.Burst
	}
	if o.LeaderElect != nil {
		Section(doc, "leaderElection")["leaderElect"] = *o.LeaderElect
	}
	if o.Edit != nil {
		if err := o.Edit(doc); err != nil {
			return nil, fmt.Errorf("scheduler config %s: %w", path, err)
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("writing scheduler config: %w", err)
	}
	return out, nil
}

// Section returns doc[key] as a map, creating it when absent.
func Section(doc map[string]any, key string) map[string]any {
	m, _ := doc[key].(map[string]any)
	if m == nil {
		m = map[string]any{}
		doc[key] = m
	}
	return m
}
