//go:build tools

// Package tools records the main packages built by `make tools`, so that
// `go mod tidy` keeps their dependencies pinned in go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
