"""PyTorch reference for bench:models (driven by bench/models.ts over stdin/stdout, one JSON per line).

The model is HF's Qwen2ForCausalLM as fixtures/models/make_qwen2_golden.py implements it in plain
PyTorch (eager attention with HF's additive 4-D mask; torch 1.13 has no SDPA), imported from
there so the golden test and the benchmark share one reference. Same weights and batch as the
MindsEye side (read from the safetensors file the driver writes); one step is forward, next-token
cross-entropy and backward, gradients set to None before each step, no optimizer step.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/models_ref.py (on a GPU, `--device
cuda`: any CUDA PyTorch, the model and batch moved there, the forward under torch.autocast with
`autocast`, torch's AdamW step with `adamw`, each step timed to torch.cuda.synchronize()).
The protocol (one JSON request and reply per line), the `threads` and `allocator` commands and the
safetensors reader are bench/ref_common.py's.
"""
import contextlib
import time

import torch
import torch.nn.functional as F

from ref_common import load_safetensors, self_cpu_table, serve
from make_qwen2_golden import Qwen2Attention, Qwen2ForCausalLM  # fixtures/models, on sys.path by ref_common


def sdpa_attention(self, x, cos, sin, mask):
    """HF's attn_implementation="sdpa" on an unpadded batch (the bench's): the fused causal kernel
    of torch 2.x, as a user of transformers runs it on a GPU. `mask` is then causal only."""
    B, T, _ = x.shape
    q, k, v = self.qkv(x, cos, sin)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.hd ** -0.5)
    return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    cfg = msg["config"]  # HF config.json fields
    device = msg.get("device", "cpu")
    # On a GPU the reference attends as transformers does there (SDPA); on the CPU (Debian's torch
    # 1.13 has no SDPA) eagerly, with the additive mask, as the golden fixtures do.
    attention = "sdpa" if device != "cpu" and hasattr(F, "scaled_dot_product_attention") else "eager"
    if attention == "sdpa":
        Qwen2Attention.forward = sdpa_attention
    tensors, _ = load_safetensors(msg["weights"])
    model = Qwen2ForCausalLM(cfg)
    weights = {k: v for k, v in tensors.items() if k not in ("tokens", "targets")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    allowed = ["lm_head.weight"] if cfg["tie_word_embeddings"] else []
    if list(missing) != allowed or unexpected:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.to(device).train()
    # --adamw: torch's default AdamW (foreach on CUDA), as a user writes it.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5) if msg.get("adamw") else None
    state.update(model=model, vocab=cfg["vocab_size"], tokens=tensors["tokens"].to(device), targets=tensors["targets"].to(device),
                 device=device, autocast=msg.get("autocast", False), opt=opt)
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters()), "attention": attention}


def sync():
    if state["device"] != "cpu":
        torch.cuda.synchronize()


def step():
    model, V = state["model"], state["vocab"]
    model.zero_grad(set_to_none=True)
    sync()
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16) if state["autocast"] else contextlib.nullcontext():
        logits, _ = model(state["tokens"])
        loss = F.cross_entropy(logits.view(-1, V), state["targets"].view(-1))
    sync()
    t1 = time.perf_counter()
    loss.backward()
    if state["opt"] is not None:
        state["opt"].step()
    sync()
    t2 = time.perf_counter()
    return (t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000, loss.item()


def cmd_steps(msg):
    out = {"ms": [], "forward_ms": [], "backward_ms": [], "losses": []}
    for _ in range(msg["n"]):
        ms, f, b, loss = step()
        out["ms"].append(ms)
        out["forward_ms"].append(f)
        out["backward_ms"].append(b)
        out["losses"].append(loss)
    return out


def cmd_profile(msg):
    """Self CPU time per op over n steps (torch.autograd.profiler), for comparing with MindsEye's."""
    step()
    with torch.autograd.profiler.profile() as prof:
        for _ in range(msg["n"]):
            step()
    table = self_cpu_table(prof, msg.get("rows", 25))
    return {"table": table}


if __name__ == "__main__":
    serve({"init": cmd_init, "steps": cmd_steps, "profile": cmd_profile})
