//go:build tools

// Package k8s135 records the Kubernetes 1.35 control-plane binaries that
// `make test-compat` builds, so that `go mod tidy` keeps their
// dependencies pinned in go.sum.
package k8s135

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
