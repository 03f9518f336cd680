#!/usr/bin/env bash
# The GPU checks of lora, run from the bundle that `make gpu-bundle` builds,
# on a machine with an NVIDIA GPU, its driver, compute-sanitizer and PyTorch
# (no Go needed). Usage: ./run.sh OUTDIR
#
# Writes into OUTDIR: nvidia-smi.txt; tests.txt (the whole suite on the GPU);
# memcheck.txt and racecheck.txt (compute-sanitizer on the kernel tests);
# bench.txt and bench.json (the benchmark table with the PyTorch peer);
# summary.txt (each step's exit status and seconds). Every step has a time
# limit; the whole run takes under 5 minutes.
set -u
out=${1:?usage: run.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"

step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "   $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
  tail -n 3 "$out/$name.txt" | sed 's/^/   | /' | tee -a "$out/summary.txt"
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/summary.txt"

step tests 150 ./lora.test -test.v -test.count=1
if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 3 \
    ./lora.test -test.run 'TestKernel|TestForward$|TestMergeUnmerge|TestErrors|TestFreshLayerIsBase' -test.count=1
  step racecheck 90 compute-sanitizer --tool racecheck --error-exitcode 3 \
    ./lora.test -test.run 'TestKernelForwardPaths|TestKernelRank256|TestMergeUnmerge' -test.count=1
else
  echo "compute-sanitizer not found: memcheck and racecheck not run" | tee -a "$out/summary.txt"
fi
peer=()
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  peer=(-peer torch -peer-script ./peer_torch.py)
else
  echo "PyTorch with CUDA not found: the bench runs without the peer" | tee -a "$out/summary.txt"
fi
step bench 200 ./bench "${peer[@]}" -json-out "$out/bench.json"
cat "$out/bench.txt"
