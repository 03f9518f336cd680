#!/usr/bin/env bash
# The GPU checks of lora, run from the bundle that `make gpu-bundle` builds,
# on a machine with an NVIDIA GPU, its driver, compute-sanitizer and PyTorch
# (no Go needed). Usage: ./run.sh OUTDIR
#
# Writes into OUTDIR: nvidia-smi.txt; results.txt (first: every kernel the
# planner chooses on this GPU against float64 references, and the planned-
# variant tests of every dtype) and results-mma.txt (the tensor-core
# kernels launched directly), whose verdicts, one FAMILY line a kernel
# family, summary.txt repeats; cuda-tests.txt (the driver layer's own
# tests: allocation-free launches, staged copies of every size); tests.txt
# (the rest of the suite on the GPU); memcheck.txt, racecheck.txt,
# synccheck.txt and initcheck.txt (compute-sanitizer on the kernel tests);
# bench.txt and bench.json (the benchmark table with the PyTorch peer);
# bench-bank.txt (the Bank table, many adapters in one batch);
# summary.txt (each step's verdict, exit status and seconds, the FAMILY
# lines of the result tests, and a plain MISSING line for any tool that is
# not there).
#
# compute-sanitizer is looked for in $COMPUTE_SANITIZER (a path), on PATH,
# in $CUDA_HOME/bin and $CUDA_PATH/bin, then where the toolkits put it:
# /usr/local/cuda/bin, /usr/local/cuda-*/bin (newest first), Debian's
# /usr/lib/nvidia-cuda-toolkit, the HPC SDK under /opt/nvidia and /opt/cuda.
#
# The whole run takes under 5 minutes: every step has a time limit, capped
# by what is left of a budget of $LORA_BUNDLE_SECONDS (default 290); a step
# with no time left is reported as not run. Exit status: 0 when every step
# passed, 1 when one failed or timed out, 2 when all that ran passed but a
# step did not run (a missing tool, the budget spent).
set -u
out=${1:?usage: run.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
: >"$out/summary.txt"
budget=${LORA_BUNDLE_SECONDS:-290}
reserve=0 # seconds of the budget kept for the steps after this one
failed=0
incomplete=0

say() { echo "$*" | tee -a "$out/summary.txt"; }

# step NAME LIMIT CMD...: runs CMD with its output in OUTDIR/NAME.txt, for at
# most LIMIT seconds and at most what is left of the budget after $reserve.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - reserve - SECONDS))
  if ((left < 1)); then
    say "== $name: NOT RUN: the bundle's ${budget} s budget is spent"
    incomplete=1
    return
  fi
  ((limit > left)) && limit=$left
  local t0=$SECONDS
  say "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  local verdict=PASS
  if ((rc == 124 || rc == 137)); then
    verdict="TIMEOUT after ${limit} s"
    failed=1
  elif ((rc != 0)); then
    verdict=FAIL
    failed=1
  fi
  say "   $name: $verdict (exit $rc after $((SECONDS - t0)) s)"
  tail -n 3 "$out/$name.txt" | sed 's/^/   | /' | tee -a "$out/summary.txt"
}

# find_sanitizer prints the path of compute-sanitizer, or nothing. The
# toolkit locations are under $LORA_TOOLKIT_ROOT (empty: the real ones),
# which the bundle's own test sets.
find_sanitizer() {
  local root=${LORA_TOOLKIT_ROOT:-} d
  if [[ -n ${COMPUTE_SANITIZER:-} && -x $COMPUTE_SANITIZER ]]; then
    echo "$COMPUTE_SANITIZER"
    return
  fi
  if command -v compute-sanitizer >/dev/null 2>&1; then
    command -v compute-sanitizer
    return
  fi
  local dirs=()
  [[ -n ${CUDA_HOME:-} ]] && dirs+=("$CUDA_HOME/bin" "$CUDA_HOME/compute-sanitizer")
  [[ -n ${CUDA_PATH:-} ]] && dirs+=("$CUDA_PATH/bin" "$CUDA_PATH/compute-sanitizer")
  dirs+=("$root/usr/local/cuda/bin" "$root/usr/local/cuda/compute-sanitizer")
  # Versioned toolkits, newest first (cuda-12.10 after cuda-12.9).
  while IFS= read -r d; do
    [[ -n $d ]] && dirs+=("$d/bin" "$d/compute-sanitizer")
  done < <(ls -d "$root"/usr/local/cuda-* 2>/dev/null | sort -V -r)
  dirs+=("$root/usr/lib/nvidia-cuda-toolkit/compute-sanitizer" "$root/usr/lib/nvidia-cuda-toolkit/bin")
  while IFS= read -r d; do
    [[ -n $d ]] && dirs+=("$d")
  done < <(ls -d "$root"/opt/nvidia/hpc_sdk/*/*/cuda/*/bin "$root"/opt/nvidia/hpc_sdk/*/*/cuda/*/compute-sanitizer \
    "$root"/opt/nvidia/hpc_sdk/*/*/cuda/bin "$root"/opt/nvidia/*/bin 2>/dev/null | sort -V -r)
  dirs+=("$root/opt/cuda/bin" "$root/opt/cuda/compute-sanitizer")
  for d in "${dirs[@]}"; do
    if [[ -x $d/compute-sanitizer && ! -d $d/compute-sanitizer ]]; then
      echo "$d/compute-sanitizer"
      return
    fi
  done
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$out/summary.txt"

# families FILE...: copies the FAMILY lines of the result tests' logs into
# the summary; none at all fails the run (the tests did not get to their
# verdicts).
families() {
  local lines
  lines=$(cat "$@" 2>/dev/null | grep -o 'FAMILY .*')
  if [[ -z $lines ]]; then
    say "   FAMILY verdicts: none in $*"
    failed=1
    return
  fi
  sed 's/^/   /' <<<"$lines" | tee -a "$out/summary.txt"
}

# The bench is last and keeps 150 s of the budget for itself.
reserve=$((budget * 150 / 290))
# The result tests first: every kernel family the planner chooses on this
# GPU (TestResultFamilies), the planned variants of every dtype on devices
# made to reach them, the tensor-core kernels launched directly. tests
# runs the rest of the suite.
result_tests='TestResultFamilies|TestForwardPlannedVariants|TestGradXPlannedVariants|TestForwardHalfPlannedVariants|TestHalfGradX|TestHalfMergeMatchesF32|TestNF4ForwardPlannedVariants|TestNF4GradXPlannedVariants|TestNF4TiledPlannedVariants|TestConvertAll'
step results 60 ./lora.test -test.v -test.count=1 -test.run "$result_tests"
step results-mma 20 ./cuda.test -test.v -test.count=1 -test.run 'TestForwardMMA'
families "$out/results.txt" "$out/results-mma.txt"
step cuda-tests 30 ./cuda.test -test.v -test.count=1 -test.run 'TestLaunchAllocatesNothing|TestCopyRoundTrip|TestStagedCopy|TestArgs'
step tests 90 ./lora.test -test.v -test.count=1 -test.skip "$result_tests"

# The kernel tests under each compute-sanitizer tool. Between them they
# launch every kernel: shrink, forward_small, forward_tiled and the
# small-M tiles (TestKernelForwardPaths, TestForwardPlannedVariants,
# TestKernelRank256), grad_u, grad_ab, grad_x_small and grad_x_tiled
# (TestKernelBackwardPaths), merge (TestMergeUnmerge), absmax (TestAbsMax),
# mse (TestMSE), the optimizers (TestKernelOptimizerBlocks) and the Bank's
# kernels (TestBankForward). racecheck and synccheck get every one with a
# barrier or a warp-synchronous step, the backward ones included.
kernel_tests='TestKernelForwardPaths|TestForwardPlannedVariants|TestKernelRank256|TestKernelBackwardPaths|TestMergeUnmerge$|TestAbsMax|TestMSE$|TestBankForward'
sanitizer=$(find_sanitizer)
if [[ -n $sanitizer ]]; then
  say "compute-sanitizer: $sanitizer ($("$sanitizer" --version 2>&1 | grep -i -m1 version || echo "version unknown"))"
  step memcheck 60 "$sanitizer" --tool memcheck --error-exitcode 3 --leak-check no \
    ./lora.test -test.count=1 -test.run "$kernel_tests|TestKernelOptimizerBlocks|TestForward$|TestErrors|TestFreshLayerIsBase"
  step racecheck 60 "$sanitizer" --tool racecheck --error-exitcode 3 \
    ./lora.test -test.count=1 -test.run "$kernel_tests"
  step synccheck 40 "$sanitizer" --tool synccheck --error-exitcode 3 \
    ./lora.test -test.count=1 -test.run "$kernel_tests"
  step initcheck 40 "$sanitizer" --tool initcheck --error-exitcode 3 \
    ./lora.test -test.count=1 -test.run "$kernel_tests|TestKernelOptimizerBlocks"
else
  say "MISSING: compute-sanitizer not found (looked in \$COMPUTE_SANITIZER, PATH, \$CUDA_HOME, \$CUDA_PATH, /usr/local/cuda/bin, /usr/local/cuda-*/bin, /usr/lib/nvidia-cuda-toolkit, /opt/nvidia, /opt/cuda)"
  say "MISSING: memcheck, racecheck, synccheck and initcheck NOT RUN: install the CUDA toolkit's compute-sanitizer or set COMPUTE_SANITIZER=/path/to/compute-sanitizer"
  incomplete=1
fi

reserve=0
peer=()
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  peer=(-peer torch -peer-script ./peer_torch.py)
else
  say "MISSING: PyTorch with CUDA not found: the bench runs without the peer"
fi
step bench 200 ./bench ${peer[@]+"${peer[@]}"} -json-out "$out/bench.json"
[[ -f $out/bench.txt ]] && cat "$out/bench.txt"
# The Bank table (many adapters in one batch), with what the budget leaves.
step bench-bank 60 ./bench -bank ${peer[@]+"${peer[@]}"}
[[ -f $out/bench-bank.txt ]] && cat "$out/bench-bank.txt"

if ((failed)); then
  say "RESULT: FAIL (a step failed or timed out) after $SECONDS s"
  exit 1
elif ((incomplete)); then
  say "RESULT: INCOMPLETE (every step that ran passed, some did not run) after $SECONDS s"
  exit 2
fi
say "RESULT: PASS after $SECONDS s"
