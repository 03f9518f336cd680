# lora: build, test and measure. `make help` gives one line for every target.
#
# make test runs, in this order (none needs a GPU or root):
#   vet           go vet of the default, purego and cudaemu builds
#   fmt-check     gofmt -l over every tracked Go file
#   lint          staticcheck over the default, purego and cudaemu builds
#   test-cpu      the whole suite, default build, under the race detector
#   test-purego   the suite with the portable loops instead of the assembly
#   test-emu      the suite with the CUDA kernels emulated on the CPU (g++)
#   test-sanitize the kernels under ThreadSanitizer and AddressSanitizer
#   examples      examples/finetune and examples/serve at small sizes; each
#                 exits non-zero when its own checks fail
#
# Beside it:
#   test-openblas the suite with OpenBLAS, after vet-openblas; installs
#                 Debian's libopenblas-dev when missing (openblas-deps, root)
#   check-cuda    the cuda build vetted, linted, compiled and linked, fatbin
#                 checked (installs Debian's CUDA toolkit when missing, root)
#   bench, bench-quick, bench-peer, bench-nf4, bench-figures   the benchmark table
#   kernels       kernels/lora.fatbin from the .cu sources (needs nvcc)
#   gpu-bundle    the cuda test and bench binaries for a GPU machine
#
# .ci/run is CI on a fresh Debian machine, as root: test, test-openblas,
# check-cuda.

GO      ?= go
GOFILES := $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go')

.PHONY: all help test vet vet-openblas openblas-deps fmt-check lint test-cpu test-purego test-openblas \
	examples bench bench-quick bench-peer bench-nf4 bench-peer-deps bench-figures kernels test-emu test-sanitize \
	check-cuda gpu-bundle

all: test ## the same as make test

help: ## this list
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

test: vet fmt-check lint test-cpu test-purego test-emu test-sanitize examples ## every check that needs no GPU and no root

vet: ## go vet of the default, purego and cudaemu builds
	$(GO) vet ./...
	$(GO) vet -tags purego ./...
	$(GO) vet -tags cudaemu ./...

fmt-check: ## fail when gofmt would change a tracked Go file
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# staticcheck 2025.1.1, pinned and run by go run, so not in go.mod. One run
# over every build (-matrix), so that a name used only in some builds (a
# backend's files) is not reported unused, and a finding says in which
# builds it holds. check-cuda adds the cuda build, which needs the CUDA
# toolkit's headers.
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1
LINT_BUILDS := 'default:' 'purego: -tags=purego' 'cudaemu: -tags=cudaemu'
lint: ## staticcheck over the default, purego and cudaemu builds
	printf '%s\n' $(LINT_BUILDS) | $(STATICCHECK) -matrix ./...

# The default (pure Go) backend, under the race detector.
test-cpu: ## the suite, default build, under the race detector
	$(GO) test -race -count=1 ./...

# The portable loops that stand in for the assembly on other processors.
test-purego: ## the suite with -tags purego
	$(GO) test -count=1 -tags purego ./...

# The examples at small sizes, in the default build, a fraction of a second
# each once built. Each checks its own results and exits non-zero when a
# check fails; its output is shown then.
run-example = out=$$($(GO) run ./examples/$(1) 2>&1) && echo "examples/$(1): ok" || { echo "$$out"; echo "examples/$(1): failed"; exit 1; }
examples: ## examples/finetune and examples/serve at small sizes, checked by their exit status
	@$(call run-example,finetune -in 96 -out 128 -examples 1024 -epochs 20 -lr 0.02 -max-err 1)
	@$(call run-example,serve -in 96 -out 128 -n 32 -steps 20)

bench: ## the benchmark table (go run ./bench)
	$(GO) run ./bench

bench-quick: ## a few rows of the benchmark table, about a minute
	$(GO) run ./bench -quick

# Installs the Debian packages named in $(1) unless all are installed (needs
# root). Another install may hold apt's lock: apt-get waits for it up to ten
# minutes, and apt-get update, which may not wait, is tried again.
apt-install = dpkg -s $(1) >/dev/null 2>&1 || { \
	export DEBIAN_FRONTEND=noninteractive; \
	for try in 1 2 3 4 5 6 7 8 9 10; do apt-get -o DPkg::Lock::Timeout=600 update -qq && break; \
		[ $$try != 10 ] || exit 1; echo "apt-get update failed, trying again in 30 s"; sleep 30; done && \
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq $(1) >/dev/null; }

openblas-deps: ## install Debian's libopenblas-dev when missing (root)
	@$(call apt-install,libopenblas-dev)

# The openblas build needs libopenblas-dev's headers and library for cgo.
vet-openblas: openblas-deps ## go vet of the openblas build
	$(GO) vet -tags openblas ./...

# The CPU backend with OpenBLAS (Debian's libopenblas-dev) for its products.
test-openblas: vet-openblas ## the suite with -tags openblas
	$(GO) test -count=1 -tags openblas ./...

# The bench with PyTorch timed in the same run: installs Debian's
# python3-torch and libopenblas0-pthread (without which torch runs the
# reference BLAS) when missing; needs root for that.
PEER_PKGS := python3-torch libopenblas0-pthread libopenblas-dev
bench-peer-deps: ## install Debian's python3-torch and OpenBLAS when missing (root)
	@$(call apt-install,$(PEER_PKGS))

bench-peer: bench-peer-deps ## the benchmark table with PyTorch timed in the same run
	$(GO) run ./bench -peer torch

bench-nf4: bench-peer-deps ## the NF4 table alone (W in f32, bf16 and nf4), PyTorch in the same run
	$(GO) run ./bench -nf4 -peer torch

# The README's figures and tables: the full bench with the peer, for the
# default build and the openblas build, into docs/bench/.
bench-figures: bench-peer-deps ## the README's figures and tables into docs/bench/ (default and openblas builds)
	mkdir -p docs/bench/gonum docs/bench/openblas
	$(GO) run ./bench -peer torch -plot docs/bench/gonum -json-out docs/bench/gonum/bench.json | tee docs/bench/gonum/bench.txt
	$(GO) run -tags openblas ./bench -peer torch -plot docs/bench/openblas -json-out docs/bench/openblas/bench.json | tee docs/bench/openblas/bench.txt

# The CUDA kernels: nvcc (Debian's 11.8) compiles kernels/lora.cu into
# kernels/lora.fatbin, SASS for every GPU generation from Volta to Hopper and
# PTX for newer ones. The output is deterministic and committed, so the cuda
# build needs no nvcc; a register spill fails the build.
NVCC      ?= nvcc
NVCCFLAGS := --fatbin -O3 --Werror all-warnings -Xptxas -warn-spills,-warn-lmem-usage \
	-Xfatbin -compress-all \
	-gencode arch=compute_70,code=sm_70 -gencode arch=compute_75,code=sm_75 \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
	-gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code='[sm_90,compute_90]'
KERNEL_SRC := $(wildcard kernels/*.cu kernels/*.cuh kernels/*.h)

kernels: kernels/lora.fatbin ## kernels/lora.fatbin from kernels/*.cu (needs nvcc)

kernels/lora.fatbin: $(KERNEL_SRC)
	$(NVCC) $(NVCCFLAGS) -o $@ kernels/lora.cu
	sh kernels/resources.sh
	$(GO) test -count=1 -run TestKernelResources ./internal/plan -update

# The whole suite with the CUDA kernels emulated on the CPU (g++ only). Go's
# build cache does not see the .cu files that cuda/emu_kernels.cc includes, so
# a digest of them goes into CGO_CXXFLAGS, which the cache does see: an edited
# kernel is always recompiled.
KERNEL_DIGEST = $(shell cat $(KERNEL_SRC) | sha256sum | cut -c1-16)
test-emu: ## the suite with -tags cudaemu: the CUDA kernels emulated on the CPU
	CGO_CXXFLAGS="-O2 -g -DLORA_KERNEL_DIGEST=$(KERNEL_DIGEST)" $(GO) test -count=1 -tags cudaemu ./...

# The kernels under the sanitizers: the emulated suite of packages cuda and
# lora writes each distinct launch to a trace (LORA_EMU_TRACE), and
# kernels/sanitize/harness.cc, which includes the kernels and the emulator,
# replays launches of every kernel on buffers of exactly the traced sizes:
# once built with -fsanitize=thread (a race between threads of a block that
# no barrier orders), once with -fsanitize=address,undefined (a read past a
# buffer, undefined behaviour). Each checks the emulator itself first
# (harness self; harness race must be caught). Each replay runs in
# SANITIZE_JOBS shares at once (harness TRACE I/N, by
# kernels/sanitize/replay.sh), as the emulator runs on one thread.
# LORA_EMU_SEED=N replays the order of blocks and threads of a failure.
SANITIZE_CXX := $(CXX) -std=c++20 -O1 -g -pthread
# The replays run in this many shares at once (kernels/sanitize/replay.sh).
SANITIZE_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test-sanitize: ## the emulated kernels' traced launches under TSan and ASan/UBSan
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	echo "test-sanitize: tracing the launches of the emulated suite, building the harness with" \
		"-fsanitize=thread and -fsanitize=address,undefined meanwhile" && \
	{ $(SANITIZE_CXX) -fsanitize=thread -o $$tmp/tsan kernels/sanitize/harness.cc & tpid=$$!; \
	  $(SANITIZE_CXX) -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fsanitize-sections=lora_emu_shared -o $$tmp/asan kernels/sanitize/harness.cc & apid=$$!; \
	  LORA_EMU_TRACE=$$tmp/trace CGO_CXXFLAGS="-O2 -g -DLORA_KERNEL_DIGEST=$(KERNEL_DIGEST)" \
		$(GO) test -count=1 -tags cudaemu ./cuda . >$$tmp/go.log 2>&1; grc=$$?; \
	  wait $$tpid; trc=$$?; wait $$apid; arc=$$?; \
	  [ $$grc = 0 ] || { cat $$tmp/go.log; echo "test-sanitize: the traced suite failed"; exit 1; }; \
	  [ $$trc = 0 ] && [ $$arc = 0 ] || { echo "test-sanitize: the harness did not build"; exit 1; }; } && \
	export TSAN_OPTIONS=halt_on_error=1 ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 && \
	$$tmp/tsan self && \
	{ if $$tmp/tsan race >$$tmp/race.log 2>&1 || ! grep -q "ThreadSanitizer: data race" $$tmp/race.log; then \
		cat $$tmp/race.log; echo "test-sanitize: ThreadSanitizer missed the race of emutest_race"; exit 1; fi; } && \
	echo "test-sanitize: ThreadSanitizer reports the race of emutest_race" && \
	sh kernels/sanitize/replay.sh $$tmp/tsan $$tmp/trace $(SANITIZE_JOBS) && \
	$$tmp/asan self && \
	sh kernels/sanitize/replay.sh $$tmp/asan $$tmp/trace $(SANITIZE_JOBS)

# The cuda build without a GPU: installs Debian's CUDA toolkit if nvcc is
# missing, rebuilds the fatbin and fails if it differs from the committed one,
# then vets and lints (with the other builds, see lint), compiles and links the
# cuda test and bench binaries.
check-cuda: ## the cuda build without a GPU: fatbin rebuilt and compared, vet, lint, test and bench binaries linked
	.ci/install-cuda
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(NVCC) $(NVCCFLAGS) -o $$tmp/lora.fatbin kernels/lora.cu && \
	if cmp -s $$tmp/lora.fatbin kernels/lora.fatbin; then echo "kernels/lora.fatbin is up to date"; \
	else echo "kernels/lora.fatbin differs from a fresh nvcc build: run make kernels and commit it"; exit 1; fi
	$(GO) vet -tags cuda ./...
	printf '%s\n' $(LINT_BUILDS) 'cuda: -tags=cuda' | $(STATICCHECK) -matrix ./...
	$(GO) test -tags cuda -c -o /dev/null .
	$(GO) build -tags cuda -o /dev/null ./bench

# The GPU check, for a machine with a GPU but no Go: the cuda test and bench
# binaries (the package's and package cuda's), the PyTorch peer and
# bench/gpu-run.sh in gpu-bundle/. There, run `gpu-bundle/run.sh OUTDIR`;
# every result lands in OUTDIR, and summary.txt gives a verdict a step and
# one FAMILY line a kernel family of the result tests, which run first.
# The build fails when a test the script's result steps name
# (result_tests, and cuda.test's TestForwardMMA) is not in the cuda
# binaries: a test left to one build would otherwise run as none. The last
# line printed is the newest glibc symbol version the binaries need (the
# README's GPU section).
gpu-bundle: ## gpu-bundle/: the cuda test and bench binaries and a script for a GPU machine
	rm -rf gpu-bundle && mkdir -p gpu-bundle
	$(GO) test -tags cuda -c -o gpu-bundle/lora.test .
	$(GO) test -tags cuda -c -o gpu-bundle/cuda.test ./cuda
	$(GO) build -tags cuda -o gpu-bundle/bench ./bench
	cp bench/peer_torch.py gpu-bundle/peer_torch.py
	cp bench/gpu-run.sh gpu-bundle/run.sh
	@names=$$(sed -n "s/^result_tests='\(.*\)'$$/\1/p" bench/gpu-run.sh | tr '|' ' ') && [ -n "$$names" ] || \
		{ echo "bench/gpu-run.sh names no result_tests"; exit 1; }; \
	syms=$$($(GO) tool nm gpu-bundle/lora.test) && \
	for t in $$names; do echo "$$syms" | grep -q " github.com/golora/lora\.$$t$$" || \
		{ echo "gpu-bundle/lora.test has no $$t, which run.sh runs"; exit 1; }; done && \
	syms=$$($(GO) tool nm gpu-bundle/cuda.test) && echo "$$syms" | grep -q ' github.com/golora/lora/cuda\.TestForwardMMA$$' || \
		{ echo "gpu-bundle/cuda.test has no TestForwardMMA, which run.sh runs"; exit 1; }; \
	echo "gpu-bundle: the result tests run.sh names are in the cuda binaries"
	@du -sh gpu-bundle
	@objdump -T gpu-bundle/lora.test gpu-bundle/cuda.test gpu-bundle/bench | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 | sed 's/^/needs glibc symbols up to /'
