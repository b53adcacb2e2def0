// Command roam-scheduler is kube-scheduler v1.34 with roam's placement
// plugin (RoamPolicy) and scheduler-plugins' Coscheduling:
//
//	roam-scheduler --config manifests/scheduler/config.yaml [--kubeconfig FILE] [--leader-elect=false]
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric on /metrics

	"github.com/roam-dev/roam/internal/version"
	"github.com/roam-dev/roam/scheduler/server"
)

func main() {
	// roam's version; kube-scheduler's own --version would print only the
	// Kubernetes version it is built from.
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "roam-scheduler")
		return
	}
	os.Exit(cli.Run(server.NewCommand()))
}
