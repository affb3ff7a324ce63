"""PyTorch reference for bench:data's target extraction (driven by bench/data.ts over stdin/stdout, one JSON per line).

The tower is HF's CLIPVisionModel as fixtures/models/make_vit_golden.py implements it in plain
PyTorch (eager attention, quick_gelu, pre_layrnorm), imported from there so the golden test and
the benchmark share one reference. Same weights and pixels as the MindsEye side (read from the
safetensors file the driver writes). One extraction is what `mindseye targets extract` computes
for a batch, under torch.no_grad: the last layer's hidden states (HF's hidden_states[-1], before
post_layernorm), then grid:K pooling — the patch tokens after the class token laid out as their
square grid, adaptive-average-pooled to sqrt(K) x sqrt(K) cells, row-major — made contiguous.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/data_ref.py
The protocol (one JSON request and reply per line), the `threads` and `allocator` commands and the
safetensors reader are bench/ref_common.py's.
"""
import base64
import math
import time

import torch
import torch.nn.functional as F

from ref_common import load_safetensors, self_cpu_table, serve
from make_vit_golden import VisionModel  # fixtures/models, on sys.path by ref_common


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    cfg = msg["config"]  # HF config.json fields (CLIPVisionConfig)
    if cfg["model_type"] != "clip_vision_model":
        raise ValueError(f"expected a CLIP vision config, got model_type {cfg['model_type']}")
    tensors, _ = load_safetensors(msg["weights"])
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
    table = self_cpu_table(prof, msg.get("rows", 25))
    return {"table": table, "top_level": sum(1 for e in prof.function_events if e.cpu_parent is None)}


if __name__ == "__main__":
    serve({"init": cmd_init, "output": cmd_output, "steps": cmd_steps, "profile": cmd_profile})
