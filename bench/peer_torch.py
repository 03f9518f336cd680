#!/usr/bin/env python3
"""PyTorch doing a LoRA layer the way PEFT does, timed like `go run ./bench`.

The Go bench runs this script as a subprocess (`-peer torch`), writes a JSON
request on its standard input and reads a JSON answer from its standard
output. For every shape it times, in float32 (TF32 off on the GPU), or, for
a shape with "dtype": "bf16", with W and x in bfloat16 and A and B in
float32, as PEFT keeps an adapter over a bf16 model (PyTorch's default
reduced-precision settings for bf16 products, stated in the answer):

  unmerged   F.linear(x, W) + s * F.linear(F.linear(x, A), B)   (PEFT's forward;
             in bf16: the base in bf16, the adapter on x cast to float32,
             the sum cast back to bf16, as PEFT's lora.Linear.forward)
  merged     F.linear(x, W')                                    (after merging)
  merge      W.add_(s * (B @ A))                                (PEFT's merge;
             in bf16: B @ A in float32, added into the bf16 W)
  train      the unmerged forward and its backward, W frozen, x needing a
             gradient (forward + backward, train_s), and the forward alone
             on the same tensors (unmerged_s): the Go side takes the difference
  bank       a mixed batch, each row with its own adapter (ids, -1: none), as
             PEFT's _mixed_batch_forward computes it: the base layer on every
             row, then for each adapter present its rows selected and
             s * lora_B(lora_A(rows)) added to them in place (mixed_s)

Each operation is warmed up, then timed in batches of calls until it has run
for min_time seconds and min_reps batches; the answer holds the median
seconds per call. Rows with n <= 16 rotate through copies of W whose total
exceeds rotate_bytes, as the Go side does, so that W streams from memory.

Request:  {"device": "cpu"|"cuda", "threads": 2, "min_time": 0.3, "min_reps": 5,
           "rotate_bytes": 268435456,
           "forward": [{"n": 1, "in": 1024, "out": 1024, "r": 16}, ...,
                       {"n": 1, "in": 4096, "out": 4096, "r": 16, "dtype": "bf16"}],
           "merge":   [{"in": 1024, "out": 1024, "r": 16}, ...],
           "train":   [{"n": 256, "in": 4096, "out": 4096, "r": 16}, ...],
           "bank":    [{"n": 16, "in": 4096, "out": 4096, "r": 16, "ids": [3, -1, 0, ...]}, ...]}
Answer:   {"torch": "2.x", "device": "...", "threads": 2, "blas": "...", "settings": "...",
           "forward": [{..., "unmerged_s": ..., "merged_s": ...}],
           "merge": [{..., "merge_s": ...}], "train": [{..., "train_s": ...}],
           "bank": [{..., "mixed_s": ...}]}
"""

import json
import statistics
import sys
import time


def blas_library(torch):
    """The BLAS shared library this process actually loaded, after a product."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line}
    except OSError:
        libs = set()
    if libs:
        import os
        return ", ".join(sorted(os.path.basename(os.path.realpath(p)) for p in libs))
    try:
        return torch.__config__.show().split("BLAS_INFO=")[1].split(",")[0]
    except Exception:
        return "unknown"


def main():
    req = json.load(sys.stdin)
    import torch
    import torch.nn.functional as F

    device = req.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("peer_torch: CUDA requested but torch.cuda.is_available() is False")
    dev = torch.device(device)
    torch.set_grad_enabled(False)
    if device == "cpu":
        torch.set_num_threads(int(req.get("threads", 1)))
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    min_time = float(req.get("min_time", 0.3))
    min_reps = int(req.get("min_reps", 5))
    rotate = int(req.get("rotate_bytes", 256 << 20))

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(fn, calls):
        """Seconds per call over one batch: CUDA events on the GPU."""
        if device == "cuda":
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(calls):
                fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3 / calls
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls

    def measure(fn):
        fn()
        sync()
        one = timed(fn, 1)
        calls = max(1, min(1000, int(2e-3 / max(one, 1e-9))))
        samples, total = [], 0.0
        while len(samples) < min_reps or total < min_time:
            t = timed(fn, calls)
            samples.append(t)
            total += t * calls
            if len(samples) >= 200:
                break
        return statistics.median(samples)

    def copies(n, nin, nout, r, size=4):
        if n > 16:
            return 1
        b = size * (nout * nin + n * (nin + nout)) + 4 * r * (nin + nout)
        return max(1, min(64, -(-rotate // b)))

    def rand(*shape, scale=0.03, dtype=torch.float32):
        return ((torch.rand(*shape, device=dev) * 2 - 1) * scale).to(dtype)

    def dtype_of(sh):
        d = sh.get("dtype", "")
        if d in ("", "f32"):
            return torch.float32
        if d == "bf16":
            return torch.bfloat16
        raise SystemExit("peer_torch: unknown dtype %r" % d)

    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "forward": [],
        "merge": [],
        "train": [],
        "bank": [],
    }
    out["blas"] = blas_library(torch)
    if device == "cuda":
        m = torch.backends.cuda.matmul
        out["settings"] = "f32 with TF32 off; bf16 with PyTorch's defaults: allow_bf16_reduced_precision_reduction=%s" % (
            getattr(m, "allow_bf16_reduced_precision_reduction", "n/a"))
    else:
        out["settings"] = "f32; bf16 through PyTorch's CPU kernels"
    s = 2.0

    for sh in req.get("forward", []):
        n, nin, nout, r = sh["n"], sh["in"], sh["out"], sh["r"]
        dt = dtype_of(sh)
        k = copies(n, nin, nout, r, torch.tensor([], dtype=dt).element_size())
        ws = [rand(nout, nin, dtype=dt) for _ in range(k)]
        As = [rand(r, nin) for _ in range(k)]
        Bs = [rand(nout, r) for _ in range(k)]
        merged = [(w.float() + s * (b @ a)).to(dt) for w, a, b in zip(ws, As, Bs)]
        x = rand(n, nin, scale=1.0, dtype=dt)
        i = [0]

        if dt == torch.float32:
            def unmerged():
                j = i[0] = (i[0] + 1) % k
                return F.linear(x, ws[j]) + s * F.linear(F.linear(x, As[j]), Bs[j])
        else:
            def unmerged():
                # PEFT's lora.Linear.forward over a bf16 base with float32
                # adapter weights: the base layer in bf16, x cast to the
                # adapter's dtype, the sum (float32) cast back.
                j = i[0] = (i[0] + 1) % k
                result = F.linear(x, ws[j])
                xa = x.to(As[j].dtype)
                result = result + F.linear(F.linear(xa, As[j]), Bs[j]) * s
                return result.to(dt)

        def merged_fwd():
            j = i[0] = (i[0] + 1) % k
            return F.linear(x, merged[j])

        row = dict(sh)
        row["unmerged_s"] = measure(unmerged)
        row["merged_s"] = measure(merged_fwd)
        out["forward"].append(row)
        del ws, As, Bs, merged

    for sh in req.get("merge", []):
        nin, nout, r = sh["in"], sh["out"], sh["r"]
        dt = dtype_of(sh)
        k = copies(1, nin, nout, r, torch.tensor([], dtype=dt).element_size())
        ws = [rand(nout, nin, dtype=dt) for _ in range(k)]
        a, b = rand(r, nin), rand(nout, r)
        i = [0]
        sign = [1.0]

        def merge():
            j = i[0] = (i[0] + 1) % k
            if j == 0:
                sign[0] = -sign[0]
            ws[j].add_(sign[0] * s * (b @ a))

        row = dict(sh)
        row["merge_s"] = measure(merge)
        out["merge"].append(row)
        del ws

    for sh in req.get("train", []):
        n, nin, nout, r = sh["n"], sh["in"], sh["out"], sh["r"]
        w = rand(nout, nin)
        a = rand(r, nin).requires_grad_(True)
        b = rand(nout, r).requires_grad_(True)
        x = rand(n, nin, scale=1.0).requires_grad_(True)
        dy = rand(n, nout, scale=1.0)

        def step():
            with torch.enable_grad():
                y = F.linear(x, w) + s * F.linear(F.linear(x, a), b)
                y.backward(dy)
            a.grad = b.grad = x.grad = None

        def forward():
            return F.linear(x, w) + s * F.linear(F.linear(x, a), b)

        row = dict(sh)
        row["train_s"] = measure(step)
        row["unmerged_s"] = measure(forward)
        out["train"].append(row)

    for sh in req.get("bank", []):
        n, nin, nout, r, ids = sh["n"], sh["in"], sh["out"], sh["r"], sh["ids"]
        present = sorted({k for k in ids if k >= 0})
        w = rand(nout, nin)
        As = {k: rand(r, nin) for k in present}
        Bs = {k: rand(nout, r) for k in present}
        x = rand(n, nin, scale=1.0)

        def mixed():
            # PEFT's LoraLayer._mixed_batch_forward, for every call: the row
            # indices of each adapter listed in Python, the rows gathered,
            # the update added back through advanced indexing.
            result = F.linear(x, w)
            for k in present:
                rows = [i for i, a in enumerate(ids) if a == k]
                sub = x[rows]
                result[rows] += F.linear(F.linear(sub, As[k]), Bs[k]) * s
            return result

        row = {key: v for key, v in sh.items() if key != "ids"}
        row["mixed_s"] = measure(mixed)
        out["bank"].append(row)
        del w, As, Bs

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
