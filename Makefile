# lora: build, test and measure.
#
#   make test        vet, gofmt check, the whole suite under the race detector,
#                    with -tags purego, and with the CUDA kernels emulated;
#                    the kernels under ThreadSanitizer and AddressSanitizer
#   make bench       the benchmark table (go run ./bench)
#   make kernels     rebuild kernels/lora.fatbin (needs nvcc)
#   make check-cuda  the cuda build compiled and linked, fatbin checked
#   make gpu-bundle  the cuda test and bench binaries for a GPU machine

GO      ?= go
GOFILES := $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go')

.PHONY: all test vet fmt-check test-cpu test-purego test-openblas bench bench-quick bench-peer bench-peer-deps bench-figures kernels test-emu test-sanitize check-cuda gpu-bundle

all: test

test: vet fmt-check test-cpu test-purego test-emu test-sanitize

vet:
	$(GO) vet ./...
	$(GO) vet -tags cudaemu ./...

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

# The CPU backend with OpenBLAS (Debian's libopenblas-dev) for its products.
test-openblas:
	$(GO) test -count=1 -tags openblas ./...

# The bench with PyTorch timed in the same run: installs Debian's
# python3-torch and libopenblas0-pthread (without which torch runs the
# reference BLAS) when missing; needs root for that.
PEER_PKGS := python3-torch libopenblas0-pthread libopenblas-dev
bench-peer-deps:
	@dpkg -s $(PEER_PKGS) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PEER_PKGS) >/dev/null; }

bench-peer: bench-peer-deps
	$(GO) run ./bench -peer torch

# The README's figures and tables: the full bench with the peer, for the
# default build and the openblas build, into docs/bench/.
bench-figures: bench-peer-deps
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

kernels: kernels/lora.fatbin

kernels/lora.fatbin: $(KERNEL_SRC)
	$(NVCC) $(NVCCFLAGS) -o $@ kernels/lora.cu

# The whole suite with the CUDA kernels emulated on the CPU (g++ only). Go's
# build cache does not see the .cu files that cuda/emu_kernels.cc includes, so
# a digest of them goes into CGO_CXXFLAGS, which the cache does see: an edited
# kernel is always recompiled.
KERNEL_DIGEST = $(shell cat $(KERNEL_SRC) | sha256sum | cut -c1-16)
test-emu:
	CGO_CXXFLAGS="-O2 -g -DLORA_KERNEL_DIGEST=$(KERNEL_DIGEST)" $(GO) test -count=1 -tags cudaemu ./...

# The kernels under the sanitizers: the emulated suite of packages cuda and
# lora writes each distinct launch to a trace (LORA_EMU_TRACE), and
# kernels/sanitize/harness.cc, which includes the kernels and the emulator,
# replays launches of every kernel on buffers of exactly the traced sizes:
# once built with -fsanitize=thread (a race between threads of a block that
# no barrier orders), once with -fsanitize=address,undefined (a read past a
# buffer, undefined behaviour). Each checks the emulator itself first
# (harness self; harness race must be caught). LORA_EMU_SEED=N replays the
# order of blocks and threads of a failure.
SANITIZE_CXX := $(CXX) -std=c++20 -O1 -g -pthread
test-sanitize:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	echo "test-sanitize: tracing the launches of the emulated suite" && \
	{ LORA_EMU_TRACE=$$tmp/trace CGO_CXXFLAGS="-O2 -g -DLORA_KERNEL_DIGEST=$(KERNEL_DIGEST)" \
		$(GO) test -count=1 -tags cudaemu ./cuda . >$$tmp/go.log 2>&1 || { cat $$tmp/go.log; exit 1; }; } && \
	echo "test-sanitize: building the harness with -fsanitize=thread and -fsanitize=address,undefined" && \
	{ $(SANITIZE_CXX) -fsanitize=thread -o $$tmp/tsan kernels/sanitize/harness.cc & pid=$$!; \
	  $(SANITIZE_CXX) -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fsanitize-sections=lora_emu_shared -o $$tmp/asan kernels/sanitize/harness.cc; rc=$$?; \
	  wait $$pid && [ $$rc = 0 ]; } && \
	export TSAN_OPTIONS=halt_on_error=1 ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 && \
	$$tmp/tsan self && \
	{ if $$tmp/tsan race >$$tmp/race.log 2>&1 || ! grep -q "ThreadSanitizer: data race" $$tmp/race.log; then \
		cat $$tmp/race.log; echo "test-sanitize: ThreadSanitizer missed the race of emutest_race"; exit 1; fi; } && \
	echo "test-sanitize: ThreadSanitizer reports the race of emutest_race" && \
	$$tmp/tsan $$tmp/trace && \
	$$tmp/asan self && \
	$$tmp/asan $$tmp/trace

# The cuda build without a GPU: installs Debian's CUDA toolkit if nvcc is
# missing, rebuilds the fatbin and fails if it differs from the committed one,
# then vets, compiles and links the cuda test and bench binaries.
check-cuda:
	.ci/install-cuda
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(NVCC) $(NVCCFLAGS) -o $$tmp/lora.fatbin kernels/lora.cu && \
	if cmp -s $$tmp/lora.fatbin kernels/lora.fatbin; then echo "kernels/lora.fatbin is up to date"; \
	else echo "kernels/lora.fatbin differs from a fresh nvcc build: run make kernels and commit it"; exit 1; fi
	$(GO) vet -tags cuda ./...
	$(GO) test -tags cuda -c -o /dev/null .
	$(GO) build -tags cuda -o /dev/null ./bench

# The GPU check, for a machine with a GPU but no Go: the cuda test and bench
# binaries (the package's and package cuda's), the PyTorch peer and
# bench/gpu-run.sh in gpu-bundle/. There, run `gpu-bundle/run.sh OUTDIR`;
# every result lands in OUTDIR. The last line printed is the newest glibc
# symbol version the binaries need (the README's GPU section).
gpu-bundle:
	rm -rf gpu-bundle && mkdir -p gpu-bundle
	$(GO) test -tags cuda -c -o gpu-bundle/lora.test .
	$(GO) test -tags cuda -c -o gpu-bundle/cuda.test ./cuda
	$(GO) build -tags cuda -o gpu-bundle/bench ./bench
	cp bench/peer_torch.py gpu-bundle/peer_torch.py
	cp bench/gpu-run.sh gpu-bundle/run.sh
	@du -sh gpu-bundle
	@objdump -T gpu-bundle/lora.test gpu-bundle/cuda.test gpu-bundle/bench | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 | sed 's/^/needs glibc symbols up to /'
