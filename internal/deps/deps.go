// Package deps is a temporary anchor for go.mod while the first packages land.
package deps

import (
	_ "github.com/expr-lang/expr"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/scheduler-plugins/pkg/coscheduling"
)
