"""PyTorch reference for bench:data's target extraction (driven by bench/data.ts over stdin/stdout, one JSON per line).

The tower is HF's CLIPVisionModel as fixtures/models/make_vit_golden.py implements it in plain
PyTorch (eager attention, quick_gelu, pre_layrnorm), imported from there so the golden test and
the benchmark share one reference. Same weights and pixels as the MindsEye side (read from the
safetensors file the driver writes). One extraction is what `mindseye targets extract` computes
for a batch, under torch.no_grad: the last layer's hidden states (HF's hidden_states[-1], before
post_layernorm), then grid:K pooling — the patch tokens after the class token laid out as their
square grid, adaptive-average-pooled to sqrt(K) x sqrt(K) cells, row-major — made contiguous.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/data_ref.py
"""
import base64
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models"))
from make_vit_golden import VisionModel  # noqa: E402

DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).clone()
    return out


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    cfg = msg["config"]  # HF config.json fields (CLIPVisionConfig)
    if cfg["model_type"] != "clip_vision_model":
        raise ValueError(f"expected a CLIP vision config, got model_type {cfg['model_type']}")
    tensors = load_safetensors(msg["weights"])
    model = VisionModel(cfg, "clip").eval()
    model.load_state_dict({k: v for k, v in tensors.items() if k != "pixels"})  # strict: every name must fit
    for p in model.parameters():
        p.requires_grad_(False)
    cells = int(round(math.sqrt(int(msg["pool"].split(":")[1]))))
    state.update(model=model, pixels=tensors["pixels"], cells=cells)
    return {"threads": torch.get_num_threads(), "torch": torch.__version__}


def extract():
    vm, cells = state["model"].vision_model, state["cells"]
    with torch.no_grad():
        h = vm.pre_layrnorm(vm.embeddings(state["pixels"]))  # [B, 1 + N, D]
        for layer in vm.encoder.layers:
            h = layer(h)
        B, total, D = h.shape
        side = int(round(math.sqrt(total - 1)))
        grid = h[:, 1:].transpose(1, 2).reshape(B, D, side, side)  # [B, D, h, w]
        return F.adaptive_avg_pool2d(grid, (cells, cells)).flatten(2).transpose(1, 2).contiguous()  # [B, K, D]


def cmd_threads(msg):
    torch.set_num_threads(msg["threads"])
    return {"threads": torch.get_num_threads()}


def cmd_allocator(msg):
    """The same glibc malloc tuning MindsEye applies (packages/torch/src/runtime.ts)."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = all(libc.mallopt(k, v) == 1 for k, v in ((M_MMAP_THRESHOLD, msg["mmap"]), (M_TRIM_THRESHOLD, msg["trim"]), (M_TOP_PAD, msg["topPad"])))
    return {"ok": ok}


def cmd_output(msg):
    out = extract()
    return {"shape": list(out.shape), "data": base64.b64encode(out.numpy().tobytes()).decode()}


def cmd_steps(msg):
    times = []
    for _ in range(msg["n"]):
        t0 = time.perf_counter()
        extract()
        times.append((time.perf_counter() - t0) * 1000)
    return {"ms": times}


def cmd_profile(msg):
    """Self CPU time per op over n extractions (torch.autograd.profiler), and how many ops Python called."""
    extract()
    with torch.autograd.profiler.profile() as prof:
        for _ in range(msg["n"]):
            extract()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=msg.get("rows", 25))
    return {"table": table, "top_level": sum(1 for e in prof.function_events if e.cpu_parent is None)}


COMMANDS = {"init": cmd_init, "threads": cmd_threads, "allocator": cmd_allocator, "output": cmd_output, "steps": cmd_steps, "profile": cmd_profile}

for line in sys.stdin:
    msg = json.loads(line)
    if msg["cmd"] == "exit":
        break
    try:
        reply = COMMANDS[msg["cmd"]](msg)
    except Exception as e:
        reply = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
