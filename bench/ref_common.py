"""What the PyTorch reference workers of the benchmarks share (bench/*_ref.py, each driven by its
bench/<name>.ts through bench/common.ts's PythonWorker).

- serve(commands): the protocol. One JSON request per line on stdin ({"cmd": name, ...}), one JSON
  reply per line on stdout, flushed at once; {"cmd": "exit"} (or the end of stdin) ends it; a
  command that raises replies {"error": "Type: message"}, which the driver raises as an Error.
  Every worker also answers `threads` (torch.set_num_threads) and `allocator` (glibc mallopt).
- load_safetensors(path): fixtures/safetensors_io.py's reader, returning (name -> torch tensor,
  metadata); the driver writes the weights and the batch with MindsEye's io.saveFile.
- gflops(fn, n, reps): n x n matmul throughput of the best of reps timed calls;
  self_cpu_table(prof, rows): an autograd profiler's ops by self CPU time.
Importing this module puts fixtures/ (safetensors_io) and fixtures/models/ (the make_*_golden.py
scripts whose plain-PyTorch models the references import) on sys.path.
"""
import json
import os
import sys
import time

import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
sys.path.insert(0, os.path.join(FIXTURES, "models"))
sys.path.insert(0, FIXTURES)
from safetensors_io import load_safetensors  # noqa: E402

__all__ = ["serve", "load_safetensors", "gflops", "self_cpu_table"]


def cmd_threads(msg):
    torch.set_num_threads(msg["threads"])
    return {"threads": torch.get_num_threads()}


def cmd_allocator(msg):
    """The same glibc malloc tuning MindsEye applies (see packages/torch/src/runtime.ts), so the
    driver can give PyTorch whichever allocator setting is faster for it."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = all(libc.mallopt(k, v) == 1 for k, v in ((M_MMAP_THRESHOLD, msg["mmap"]), (M_TRIM_THRESHOLD, msg["trim"]), (M_TOP_PAD, msg["topPad"])))
    return {"ok": ok}


COMMON = {"threads": cmd_threads, "allocator": cmd_allocator}


def serve(commands):
    """Answers requests until `exit`: `commands` (name -> fn(msg) -> reply dict) and the common ones."""
    clash = COMMON.keys() & commands.keys()
    if clash:
        raise ValueError(f"serve: {sorted(clash)} are common commands")
    table = {**commands, **COMMON}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "exit":
            break
        try:
            reply = table[msg["cmd"]](msg)
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def gflops(fn, n, reps):
    """GFLOP/s of fn, an n x n by n x n matmul: one warm-up call, then the fastest of reps."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def self_cpu_table(prof, rows):
    """torch.autograd.profiler's per-op table, slowest self CPU time first, `rows` rows."""
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
