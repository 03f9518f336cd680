# lora: build, test and measure.
#
#   make test        vet, gofmt check, the whole suite under the race detector
#   make bench       the benchmark table (go run ./bench)

GO      ?= go
GOFILES := $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go')

.PHONY: all test vet fmt-check test-cpu test-purego bench bench-quick kernels test-emu check-cuda

all: test

test: vet fmt-check test-cpu test-purego

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The default (pure Go) backend, under the race detector.
test-cpu:
	$(GO) test -race -count=1 ./...

# The portable loops that stand in for the assembly on other processors.
test-purego:
	$(GO) test -count=1 -tags purego ./...

bench:
	$(GO) run ./bench

bench-quick:
	$(GO) run ./bench -quick

# The CUDA backend's targets.
kernels:
	@echo "make kernels: the CUDA kernels are not part of this tree yet"

test-emu:
	@echo "make test-emu: the emulated CUDA backend is not part of this tree yet"

check-cuda:
	@echo "make check-cuda: the CUDA backend is not part of this tree yet"
