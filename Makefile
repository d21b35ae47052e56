# authproxy: build, lint and the test suite that proves it.
#   make test   installs test dependencies, checks formatting, vets, and runs
#               every test with -race, the e2e suite included (AUTHPROXY_E2E=1)
#   make lint   staticcheck, pinned
#   make demo   the proxy with an embedded development OpenID Provider

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         ?= bin/authproxy

.PHONY: all build test test-deps fmt-check vet lint demo bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/authproxy

test: test-deps fmt-check vet
	AUTHPROXY_E2E=1 $(GO) test -race -count=1 -timeout 30m ./...
	cd deploy && $(GO) test -race -count=1 ./...

test-deps:
	scripts/test-deps.sh

fmt-check:
	@unformatted="$$(find . -name '*.go' -not -path '*/node_modules/*' -not -path './.git/*' -exec gofmt -l {} +)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt needed on:"; echo "$$unformatted"; exit 1; \
	fi

vet:
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...

lint:
	$(GO) run $(STATICCHECK) ./...

demo:
	$(GO) run ./cmd/authproxy demo

# Benchmarks of the hot path and the load script (authproxy vs a bare
# httputil.ReverseProxy, interleaved); see BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./cookie ./proxy
	$(GO) run ./bench/load

clean:
	rm -rf bin
