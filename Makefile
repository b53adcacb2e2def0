# roam — build, test and demo. Everything this project needs is installed
# from the Go module proxy by these targets; nothing else is downloaded.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
BIN       := $(CURDIR)/bin
STAMPS    := $(BIN)/.stamps
export GOFLAGS := -buildvcs=false
# Tests and the sim find the control-plane binaries here (and the version
# they report).
export ROAM_BIN_DIR := $(BIN)

ENV_IMAGES = ROAM_IMAGES_DIR=$(IMAGES) ROAM_IMAGES_VERSION='$(VERSION)' ROAM_IMAGES_REVISION='$(REVISION)' ROAM_IMAGES_PLATFORMS='$(IMAGE_PLATFORMS)'

# Pinned versions (see README "Pinned versions").
KUBE_VERSION     := v1.34.4
ETCD_VERSION     := v3.6.4
PROMTOOL_VERSION := v0.316.0

export ROAM_KUBE_VERSION := $(KUBE_VERSION)
# The next minor API server, for `make test-compat` (tools/k8s135).
COMPAT_KUBE_VERSION := v1.35.4
COMPAT_BIN          := $(BIN)/k8s-$(COMPAT_KUBE_VERSION)

kube_ldflags = -s -w \
	-X k8s.io/component-base/version.gitVersion=$(1) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(1))) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z
KUBE_LDFLAGS := $(call kube_ldflags,$(KUBE_VERSION))

# What `make demo` needs: the control plane (no promtool).
DEMO_TOOL_STAMPS := \
	$(STAMPS)/etcd-$(ETCD_VERSION) \
	$(STAMPS)/kube-apiserver-$(KUBE_VERSION) \
	$(STAMPS)/kube-controller-manager-$(KUBE_VERSION)
TOOL_STAMPS := $(DEMO_TOOL_STAMPS) $(STAMPS)/promtool-$(PROMTOOL_VERSION)

ROAM_CMDS := $(notdir $(wildcard cmd/*))

# roam's version and source revision, stamped into its binaries (roam-x
# --version) and its images' labels.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
ROAM_LDFLAGS := -X github.com/roam-dev/roam/internal/version.version=$(VERSION) \
	-X github.com/roam-dev/roam/internal/version.revision=$(REVISION)

# Container images (tools/images, go-containerregistry; no container engine).
# The archives name the images <binary>:$(IMAGE_TAG); the manifests' default
# tag is dev, so `kind load image-archive` + `kubectl apply -k manifests/`
# need no edit.
IMAGES          := $(BIN)/images
IMAGE_TAG       ?= dev
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: tools tools-compat images push test-images build test test-compat test-unit test-integration test-alerts bench bench-scheduler bench-detector lint demo clean help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

tools: $(TOOL_STAMPS) ## build etcd, kube-apiserver, kube-controller-manager, promtool into bin/ (idempotent)

$(STAMPS):
	@mkdir -p $@

# Each binary is stamped with its pinned version: a second `make tools`
# finds the stamp and does nothing; a version bump rebuilds.
$(STAMPS)/etcd-$(ETCD_VERSION): tools/go.mod | $(STAMPS)
	@echo ">> building etcd $(ETCD_VERSION)"
	cd tools && $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/etcd go.etcd.io/etcd/server/v3
	@rm -f $(STAMPS)/etcd-* && touch $@

$(STAMPS)/kube-apiserver-$(KUBE_VERSION): tools/go.mod | $(STAMPS)
	@echo ">> building kube-apiserver $(KUBE_VERSION) (about 4.5 min cold)"
	cd tools && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	@rm -f $(STAMPS)/kube-apiserver-* && touch $@

$(STAMPS)/kube-controller-manager-$(KUBE_VERSION): tools/go.mod | $(STAMPS)
	@echo ">> building kube-controller-manager $(KUBE_VERSION) (about 4 min cold)"
	cd tools && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(BIN)/kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
	@rm -f $(STAMPS)/kube-controller-manager-* && touch $@

$(STAMPS)/promtool-$(PROMTOOL_VERSION): tools/promtool/go.mod | $(STAMPS)
	@echo ">> building promtool $(PROMTOOL_VERSION) (about 12 min cold)"
	cd tools/promtool && $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/promtool github.com/prometheus/prometheus/cmd/promtool
	@rm -f $(STAMPS)/promtool-* && touch $@

tools-compat: $(STAMPS)/compat-$(COMPAT_KUBE_VERSION) ## build the next minor's kube-apiserver and kube-controller-manager (COMPAT_KUBE_VERSION) into bin/k8s-<version>/ (about 9 min cold)

$(STAMPS)/compat-$(COMPAT_KUBE_VERSION): tools/k8s135/go.mod $(STAMPS)/etcd-$(ETCD_VERSION) | $(STAMPS)
	@echo ">> building kube-apiserver and kube-controller-manager $(COMPAT_KUBE_VERSION)"
	@mkdir -p $(COMPAT_BIN)
	cd tools/k8s135 && $(GO) build -trimpath -ldflags '$(call kube_ldflags,$(COMPAT_KUBE_VERSION))' -o $(COMPAT_BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd tools/k8s135 && $(GO) build -trimpath -ldflags '$(call kube_ldflags,$(COMPAT_KUBE_VERSION))' -o $(COMPAT_BIN)/kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
	ln -sf $(BIN)/etcd $(COMPAT_BIN)/etcd
	@rm -f $(STAMPS)/compat-* && touch $@

build: ## build roam's binaries into bin/
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(ROAM_LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(ROAM_CMDS))
	@# roamctl as a kubectl plugin: with bin/ on the PATH, `kubectl roam fleet`.
	ln -sf roamctl $(BIN)/kubectl-roam

images: ## OCI image archives (linux/amd64+arm64) of roam-scheduler, roam-detector, roam-agent in bin/images/ (IMAGE_TAG, IMAGE_PLATFORMS)
	cd tools/images && $(GO) run . build -root $(CURDIR) -out $(IMAGES) -version '$(VERSION)' -revision '$(REVISION)' \
		-tag '$(IMAGE_TAG)' -platforms '$(IMAGE_PLATFORMS)' -kube-version $(KUBE_VERSION)

push: images ## push the images of bin/images/ to REGISTRY (e.g. make push REGISTRY=registry.example.com/roam IMAGE_TAG=v0.1.0)
	@if [ -z "$(REGISTRY)" ]; then echo "usage: make push REGISTRY=registry.example.com/roam [IMAGE_TAG=...]"; exit 2; fi
	cd tools/images && $(GO) run . push -registry '$(REGISTRY)' -tag '$(IMAGE_TAG)' $(IMAGES)/*.tar

test-images: images ## read back the image archives: config, platforms, and the amd64 binaries' --version
	cd tools/images && $(ENV_IMAGES) $(GO) test -count=1 ./...

test: tools ## unit + integration + alert-rule + image tests (what CI runs)
	$(GO) test -count=1 -timeout 30m ./...
	@if [ -d manifests/alerts ]; then $(MAKE) --no-print-directory test-alerts; fi
	$(MAKE) --no-print-directory test-images

test-compat: tools tools-compat ## make test's Go tests against that next-minor API server and controller manager
	ROAM_BIN_DIR=$(COMPAT_BIN) ROAM_KUBE_VERSION=$(COMPAT_KUBE_VERSION) $(GO) test -count=1 -timeout 30m ./...

test-unit: ## fast tests only (no control plane)
	$(GO) test -count=1 -short ./...

test-alerts: tools ## promtool check + unit tests of the alerting rules
	$(BIN)/promtool check rules manifests/alerts/rules.yaml
	$(BIN)/promtool test rules manifests/alerts/tests.yaml

bench: ## Go micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-scheduler: tools ## roam vs stock kube-scheduler (mixed fleet) and roam's overhead (homogeneous fleet) against a real apiserver (NODES, PODS, ORDER, FLEETS)
	$(GO) run ./scheduler/bench -nodes $(or $(NODES),5000) -pods $(or $(PODS),10000) $(if $(ORDER),-order $(ORDER)) $(if $(FLEETS),-fleets $(FLEETS))

bench-detector: NODES ?= 10000
bench-detector: ## detector CPU/RSS/sweep at 10,000 nodes @1Hz (Leases) and @10Hz (direct UDP, with 10 % garbage, then clean) (NODES)
	$(GO) test -run '^$$' -bench 'Heartbeat|Phi' -benchmem ./detector/phi
	$(GO) test -run '^$$' -bench 'LeaseUpdate|Tick' -benchmem ./detector
	$(GO) run ./detector/internal/benchfleet -nodes $(NODES)
	$(GO) run ./detector/internal/benchfleet -direct -garbage 0.1 -nodes $(NODES)
	$(GO) run ./detector/internal/benchfleet -direct -nodes $(NODES)

lint: ## gofmt and go vet must be clean
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools/images && $(GO) vet ./...

demo: $(DEMO_TOOL_STAMPS) ## 50 simulated robots against a real control plane: roam vs stock Kubernetes (DEMO_ARGS, e.g. --duration 8m)
	$(MAKE) --no-print-directory build
	$(BIN)/roam-sim --mode cluster $(DEMO_ARGS)

clean: ## remove roam's binaries and images (keeps the pinned tools)
	rm -f $(addprefix $(BIN)/,$(ROAM_CMDS)) $(BIN)/kubectl-roam
	rm -rf $(IMAGES)
