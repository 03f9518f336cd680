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

  nf4        the NF4 table's rows: for each of a W in float32, in bf16, and
             in NF4 (W's packed codes and float32 absmax as lora.Quantize made
             them, read from the files the request names), PEFT's forward
             ("forward"), its backward with x needing a gradient, timed alone
             after each forward ("backward"), and its mixed-batch forward over 4
             adapters ("bank"); x, y, dy and dx in bf16 except over a float32 W.
             The NF4 W is dequantized on every call as bitsandbytes' default
             (pure PyTorch) backend does: the codes unpacked, high nibble
             first, into indices of the NF4 table cast to the compute dtype,
             times each block's absmax (a float32 product), cast to bf16; in
             the backward, as bitsandbytes' MatMul4Bit, W is dequantized again
             for dx. Before timing, the same routine run with dtype float32
             must equal lora's Read of the NF4 W (the "values" file) bit for
             bit, or the peer fails.

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
           "bank":    [{"n": 16, "in": 4096, "out": 4096, "r": 16, "ids": [3, -1, 0, ...]}, ...],
           "nf4":     {"in": 4096, "out": 4096, "r": 16, "block": 64, "codes": "/tmp/…/codes",
                       "absmax": "/tmp/…/absmax", "values": "/tmp/…/values",
                       "rows": [{"op": "forward", "n": 1, "dtype": "nf4"},
                                {"op": "bank", "n": 16, "dtype": "bf16", "ids": [2, 0, ...]}, ...]}}
Answer:   {"torch": "2.x", "device": "...", "threads": 2, "blas": "...", "settings": "...",
           "forward": [{..., "unmerged_s": ..., "merged_s": ...}],
           "merge": [{..., "merge_s": ...}], "train": [{..., "train_s": ...}],
           "bank": [{..., "mixed_s": ...}],
           "nf4": {"check": "...", "rows": [{"op": ..., "n": ..., "dtype": ..., "s": ...}]}}
"""

import json
import math
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

    def measure_after(setup, fn):
        """Seconds per call of fn(setup()), setup untimed: call by call
        (CUDA events around fn on the GPU), until min_reps calls and
        min_time seconds of fn (at most 200); their median."""
        fn(setup())
        sync()
        samples, total = [], 0.0
        while len(samples) < min_reps or total < min_time:
            arg = setup()
            sync()
            if device == "cuda":
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                fn(arg)
                b.record()
                b.synchronize()
                t = a.elapsed_time(b) / 1e3
            else:
                t0 = time.perf_counter()
                fn(arg)
                t = time.perf_counter() - t0
            samples.append(t)
            total += t
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

    if "nf4" in req:
        out["nf4"] = nf4_table(req["nf4"], torch, F, dev, measure, measure_after, rotate, rand, s)

    json.dump(out, sys.stdout)


# bitsandbytes' NF4 table (functional.py's get_4bit_type("nf4")), float32.
NF4_TABLE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def dequantize_nf4(torch, codes, absmax, table, shape, block, dtype):
    """W from its packed codes and absmax, the way bitsandbytes' default backend
    dequantizes a 4-bit tensor: each byte's high nibble is the element of even
    index, its low nibble the next; the nibbles index the table cast to dtype;
    each block of `block` elements is multiplied by its float32 absmax (the
    product float32, by type promotion); the result is cast to dtype."""
    # bitsandbytes unpacks into int32; torch before 2.0 indexes only with
    # int64, which this takes.
    idx = torch.empty(codes.numel() * 2, dtype=torch.int64, device=codes.device)
    idx[0::2] = codes >> 4
    idx[1::2] = codes & 0xF
    n = math.prod(shape)
    # The lookup bitsandbytes writes code[idx]; index_select is the same
    # lookup, which torch 1.13 runs several times faster.
    vals = table.to(dtype).index_select(0, idx)[:n]
    rem = n % block
    if rem:
        out = torch.empty(n, dtype=dtype, device=codes.device)
        out[: n - rem] = (vals[: n - rem].view(-1, block) * absmax[:-1].view(-1, 1)).reshape(-1)
        out[n - rem:] = vals[n - rem:] * absmax[-1]
    else:
        out = vals.view(-1, block) * absmax.view(-1, 1)
    return out.reshape(shape).to(dtype)


def nf4_table(q, torch, F, dev, measure, measure_after, rotate, rand, s):
    """The NF4 table's rows (see the module's doc)."""
    nin, nout, r, block = q["in"], q["out"], q["r"], q["block"]
    n_elems = nin * nout
    with open(q["codes"], "rb") as f:
        codes = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).to(dev)
    with open(q["absmax"], "rb") as f:
        absmax = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).to(dev)
    with open(q["values"], "rb") as f:
        want = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).to(dev)
    if codes.numel() != (n_elems + 1) // 2 or absmax.numel() != -(-n_elems // block) or want.numel() != n_elems:
        raise SystemExit("peer_torch: NF4 W of %d codes, %d absmax and %d values, want %d, %d and %d for %dx%d in blocks of %d" % (
            codes.numel(), absmax.numel(), want.numel(), (n_elems + 1) // 2, -(-n_elems // block), n_elems, nout, nin, block))
    table = torch.tensor(NF4_TABLE, dtype=torch.float32, device=dev)
    got = dequantize_nf4(torch, codes, absmax, table, (nout, nin), block, torch.float32).reshape(-1)
    same = got.view(torch.int32) == want.view(torch.int32)
    if not bool(same.all()):
        bad = (~same).nonzero()[0].item()
        raise SystemExit("peer_torch: the NF4 W dequantized here differs from lora's Read at %d of %d elements; the first, [%d, %d]: %r here, %r in lora" % (
            int((~same).sum()), n_elems, bad // nin, bad % nin, got[bad].item(), want[bad].item()))
    check = "dequantized here equal to lora's Read bit for bit (%d elements, block %d)" % (n_elems, block)
    del got, want, same

    bf16 = torch.bfloat16

    class Linear4bit(torch.autograd.Function):
        """x · Wᵀ over an NF4 W, as bitsandbytes' MatMul4Bit: W dequantized in
        the forward, and again in the backward for dx."""

        @staticmethod
        def forward(ctx, x, c, a):
            ctx.save_for_backward(c, a)
            return F.linear(x, dequantize_nf4(torch, c, a, table, (nout, nin), block, x.dtype))

        @staticmethod
        def backward(ctx, dy):
            c, a = ctx.saved_tensors
            return dy @ dequantize_nf4(torch, c, a, table, (nout, nin), block, dy.dtype), None, None

    def copies(n, wbytes):
        if n > 16:
            return 1
        return max(1, min(256, -(-rotate // wbytes)))

    rows = []
    for row in q["rows"]:
        op, n, dt = row["op"], row["n"], row["dtype"]
        act = torch.float32 if dt == "f32" else bf16
        if dt == "nf4":
            k = copies(n, codes.numel() + 4 * absmax.numel())
            ws = [(codes.clone(), absmax.clone()) for _ in range(k)]
        else:
            k = copies(n, nin * nout * (4 if dt == "f32" else 2))
            ws = [rand(nout, nin, dtype=act) for _ in range(k)]
        adapters = 4 if op == "bank" else 1
        As = [[rand(r, nin) for _ in range(adapters)] for _ in range(k)]
        Bs = [[rand(nout, r) for _ in range(adapters)] for _ in range(k)]
        x = rand(n, nin, scale=1.0, dtype=act)
        i = [0]

        def turn():
            j = i[0] = (i[0] + 1) % k
            return j

        def base(x, w):
            if dt == "nf4":
                return Linear4bit.apply(x, w[0], w[1])
            return F.linear(x, w)

        def lora_update(x, a, b, dtype):
            # PEFT: the input cast to the adapter's dtype (float32), the
            # update scaled, then cast back to the result's dtype.
            return (F.linear(F.linear(x.to(a.dtype), a), b) * s).to(dtype)

        def forward(x, j):
            result = base(x, ws[j])
            if dt == "nf4":
                # PEFT's bnb Linear4bit.forward: the base's result cloned,
                # the update cast to its dtype, then added.
                result = result.clone()
                return result + lora_update(x, As[j][0], Bs[j][0], result.dtype)
            # PEFT's lora.Linear.forward: the float32 update added to the
            # base's result, the sum cast back to the result's dtype.
            a, b = As[j][0], Bs[j][0]
            return (result + F.linear(F.linear(x.to(a.dtype), a), b) * s).to(result.dtype)

        if op == "forward":
            secs = measure(lambda: forward(x, turn()))
        elif op == "backward":
            for j in range(k):
                for t in As[j] + Bs[j]:
                    t.requires_grad_(True)
            xg = x.clone().requires_grad_(True)
            dy = rand(n, nout, scale=1.0, dtype=act)

            def fwd():
                j = turn()
                xg.grad = None
                As[j][0].grad = Bs[j][0].grad = None
                with torch.enable_grad():
                    return forward(xg, j)

            # The backward alone, each after its forward (untimed): the
            # difference of two separately measured medians (forward and
            # backward, less the forward) can come out at zero or below on
            # a busy machine.
            secs = measure_after(fwd, lambda y: y.backward(dy))
        elif op == "bank":
            ids = row["ids"]
            present = sorted({a for a in ids if a >= 0})
            where = {a: [i for i, b in enumerate(ids) if b == a] for a in present}

            def mixed():
                # PEFT's _mixed_batch_forward: the base layer on every row,
                # then each adapter's rows gathered, updated, added back.
                j = turn()
                result = base(x, ws[j])
                for a in present:
                    rows_a = where[a]
                    result[rows_a] += lora_update(x[rows_a], As[j][a], Bs[j][a], result.dtype)
                return result

            secs = measure(mixed)
        else:
            raise SystemExit("peer_torch: unknown NF4 table operation %r" % op)
        rows.append({"op": op, "n": n, "dtype": dt, "s": secs})
        del ws, As, Bs
    return {"check": check, "rows": rows}


if __name__ == "__main__":
    main()
