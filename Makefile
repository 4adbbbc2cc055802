# vfolder build and test entry points. `make help` lists them.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(CURDIR)/bin/tools:$(PATH)

GO        ?= go
BIN       := $(CURDIR)/bin
PKGS      := ./...
GOFLAGS_T ?= -count=1
DEMO      := $(CURDIR)/.vfolder-demo
STATICCHECK_VERSION := v0.8.2

.PHONY: help deps build test test-race e2e lint fuzz soak check run cluster-demo bench clean package

help:
	@echo "make run        install what is needed, build, and run vfolderd on a local demo volume"
	@echo "make cluster-demo  the same with a local etcd and three vfolderd nodes on one volume"
	@echo "make check      install what is needed and run lint plus every test (what CI runs)"
	@echo "make build      build bin/vfolderd and bin/vfolder"
	@echo "make test       unit and e2e tests"
	@echo "make test-race  the same with the race detector"
	@echo "make e2e        only the end-to-end tests (real mounts, real processes)"
	@echo "make lint       gofmt, go vet, staticcheck"
	@echo "make fuzz       every fuzz target for FUZZTIME (default 5s) each"
	@echo "make soak       stress-ng and fio with verification through a view with a quota, SOAK_TIME (default 10m)"
	@echo "make bench      the benchmark harness (writes BENCHMARKS.md)"
	@echo "make package    the Debian package bin/vfolder_VERSION_ARCH.deb (VERSION=...)"

deps:
	@bash contrib/install-deps.sh

build:
	$(GO) build -o $(BIN)/vfolderd ./cmd/vfolderd
	$(GO) build -o $(BIN)/vfolder ./cmd/vfolder

test:
	$(GO) test $(GOFLAGS_T) $(PKGS)

# One package at a time: the FUSE, container and benchmark tests drop caches
# and mount file systems, which must not disturb another package's timing-
# sensitive assertions (page cache kept, online checks with writers).
test-race:
	$(GO) test $(GOFLAGS_T) -p 1 -race -timeout 60m $(PKGS)

e2e:
	$(GO) test $(GOFLAGS_T) -v -timeout 30m ./e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

# Every fuzz target (parsers of names, paths, sizes, API requests, config,
# mount targets, session ids...) for a bounded time each.
fuzz:
	@bash contrib/fuzz.sh

# stress-ng's file-system stressors and fio with verification through a
# view whose scope has a limit, then the ledger must match the disk
# exactly (e2e/soak_test.go). make check runs a short one.
SOAK_TIME ?= 10m
soak: build
	VFOLDER_SOAK=$(SOAK_TIME) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 120m ./e2e/

check: deps lint build test-race fuzz
	$(MAKE) soak SOAK_TIME=90s

run: deps build
	@bash contrib/run-demo.sh

cluster-demo: deps build
	@bash contrib/cluster-demo.sh

bench: deps build
	$(GO) run ./contrib/bench

clean:
	rm -rf $(BIN)

# The .deb (nfpm, driven by contrib/package, a module of its own): the
# binaries built with the version stamped in, the systemd unit, the sample
# config as a conffile, bash completion, man pages, the docs.
# VERSION: the last v<N> tag (v1.2.3-4-gabcdef: 1.2.3-4-gabcdef), else
# 0.0.0+git<commit>.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//')
ifeq ($(VERSION),)
VERSION := 0.0.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
endif
package:
	mkdir -p $(BIN)/pkg
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/pkg/vfolderd ./cmd/vfolderd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/pkg/vfolder ./cmd/vfolder
	cd contrib/package && $(GO) run . -root $(CURDIR) -bin $(BIN)/pkg -version "$(VERSION)"
