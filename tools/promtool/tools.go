//go:build tools

// Package tools records promtool, built by `make tools`.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
