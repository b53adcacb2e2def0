// Package deps anchors go.mod's direct dependencies while the packages that
// use them are being written; remove an import here once a real package
// imports it.
package deps

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)
