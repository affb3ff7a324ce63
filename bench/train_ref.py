"""PyTorch reference for bench:train (driven by bench/train.ts over stdin/stdout, one JSON per line).

One latent-pretrain step as packages/mindseye/src/train/stages/latent_pretrain.ts takes it, in
plain PyTorch:
- the language model is HF's Qwen2ForCausalLM as fixtures/models/make_qwen2_golden.py implements
  it (eager attention, additive 4-D causal + padding mask), imported from there; positions come
  from the attention mask as MindsEye's Qwen2 derives them for left padding (cumsum - 1, 1 at
  padding; the golden's positions_from_mask);
- the latent head (models/latent_head.ts, "mlp"): fc2(gelu(fc1(h))) on the last hidden states at
  the latent query tokens, found by their ids (gatherLatentPositions);
- the loss (objectives/combined.ts) op for op: CE on the next token over the caption
  (objectives/next_token.ts), S = mean(1 - cos(pred, LayerNorm(targets))) with LayerNorm without
  affine, eps 1e-6 (instance.ts), A = symmetric InfoNCE of the latent means with a fixed
  temperature (alignment.ts, pooling.ts poolLatents), L = lambda_nt*CE + lambda_sim*S + lambda_align*A;
- torch.optim.AdamW (lr, weight decay; betas and eps at their defaults, as MindsEye's) over the
  LM's and the head's parameters, gradients set to None before each step.
Same weights, batch and targets as the MindsEye side (read from the safetensors file the driver writes).
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/train_ref.py
The protocol (one JSON request and reply per line), the `threads` and `allocator` commands and the
safetensors reader are bench/ref_common.py's.
"""
import contextlib
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ref_common import load_safetensors, self_cpu_table, serve
from make_qwen2_golden import Qwen2ForCausalLM, positions_from_mask  # fixtures/models, on sys.path by ref_common

IGNORE_INDEX = -100
BATCH_NAMES = ("input_ids", "labels", "attention_mask", "targets")


class LatentHead(nn.Module):
    """models/latent_head.ts, type "mlp": fc2(GELU(fc1(h))), exact GELU."""

    def __init__(self, fc1_weight, fc2_weight):
        super().__init__()
        self.fc1 = nn.Linear(fc1_weight.shape[1], fc1_weight.shape[0])
        self.fc2 = nn.Linear(fc2_weight.shape[1], fc2_weight.shape[0])

    def forward(self, h):
        return self.fc2(F.gelu(self.fc1(h)))


def gather_latent_positions(hidden, input_ids, latent_ids):
    """hidden [B, T, H] at the position of each latent id in each row, in latent order: [B, K, H]."""
    positions = (input_ids.unsqueeze(-1) == latent_ids).int().argmax(1)  # [B, K]
    B, K = positions.shape
    return hidden.gather(1, positions.unsqueeze(-1).expand(B, K, hidden.shape[-1]))


def next_token_ce(logits, labels):  # objectives/next_token.ts
    T, V = logits.shape[1], logits.shape[2]
    return F.cross_entropy(logits.narrow(1, 0, T - 1).reshape(-1, V), labels.narrow(1, 1, T - 1).reshape(-1), ignore_index=IGNORE_INDEX)


def infonce(p, t, temperature):  # objectives/alignment.ts
    logits = F.normalize(p, dim=-1).matmul(F.normalize(t.detach(), dim=-1).t())  # [B, B]
    scaled = logits.div(temperature)
    labels = torch.arange(p.shape[0])
    return F.cross_entropy(scaled, labels).add(F.cross_entropy(scaled.t(), labels)).div(2)


def latent_objective(c, logits, labels, pred, targets):  # objectives/combined.ts with cosine, layernorm, infonce
    ce = next_token_ce(logits, labels)
    t = targets.detach()
    z = F.layer_norm(t, [t.shape[-1]], None, None, 1e-6)  # normalizeTargets(..., "layernorm")
    sim = F.cosine_similarity(pred, z.detach(), -1, 1e-8).neg().add(1).mean()  # instanceSimilarity(..., "cosine")
    align = infonce(pred.mean(1), z.mean(1), c["temperature"])  # poolLatents: the mean over the K latents
    loss = ce.mul(c["lambdaNt"])
    loss = loss.add(sim.mul(c["lambdaSim"]))
    loss = loss.add(align.mul(c["lambdaAlign"]))
    return loss, ce, sim, align


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    torch.manual_seed(0)  # module constructors draw weights that are overwritten below
    cfg = msg["config"]  # HF config.json fields of the LM
    tensors, _ = load_safetensors(msg["weights"])
    lm = Qwen2ForCausalLM(cfg)
    lm_weights = {k: v for k, v in tensors.items() if k not in BATCH_NAMES and not k.startswith("latent_head.")}
    missing, unexpected = lm.load_state_dict(lm_weights, strict=False)
    allowed = ["lm_head.weight"] if cfg["tie_word_embeddings"] else []
    if list(missing) != allowed or unexpected:
        raise ValueError(f"LM weights do not fit: missing {missing}, unexpected {unexpected}")
    head_weights = {k[len("latent_head."):]: v for k, v in tensors.items() if k.startswith("latent_head.")}
    head = LatentHead(head_weights["fc1.weight"], head_weights["fc2.weight"])
    head.load_state_dict(head_weights)
    lm.train()
    head.train()
    params = list(lm.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=msg["lr"], weight_decay=msg["weightDecay"])
    state.update(lm=lm, head=head, opt=opt, loss=msg["loss"], latent_ids=torch.tensor(msg["latentIds"], dtype=torch.int64),
                 **{k: tensors[k] for k in BATCH_NAMES})
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "parameters": sum(p.numel() for p in params)}


PHASES = ("forward + loss (zero_grad included)", "backward", "AdamW")


def step(phase=lambda name: contextlib.nullcontext()):
    """One step: the ends of forward + loss and of backward (perf_counter) and the loss terms;
    `phase(name)` wraps each part (record_function under --profile). The step's tensors are freed
    when it returns, so callers read the clock after the call."""
    lm, head, opt = state["lm"], state["head"], state["opt"]
    ids, mask = state["input_ids"], state["attention_mask"]
    with phase(PHASES[0]):
        opt.zero_grad(set_to_none=True)
        logits, hidden = lm(ids, mask, positions_from_mask(mask))  # [B, T, V], [B, T, H]
        pred = head(gather_latent_positions(hidden, ids, state["latent_ids"]))  # [B, K, D]
        loss, ce, sim, align = latent_objective(state["loss"], logits, state["labels"], pred, state["targets"])
    t1 = time.perf_counter()
    with phase(PHASES[1]):
        loss.backward()
    t2 = time.perf_counter()
    with phase(PHASES[2]):
        opt.step()
    return t1, t2, (loss.detach(), ce.detach(), sim.detach(), align.detach())


def timed_step(phase=lambda name: contextlib.nullcontext()):
    """step() with its times in ms: total, forward + loss, backward, AdamW + freeing the step's tensors."""
    t0 = time.perf_counter()
    t1, t2, terms = step(phase)
    t3 = time.perf_counter()
    return (t3 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, terms


def cmd_first(msg):
    *_, terms = timed_step()
    return dict(zip(("loss", "ce", "sim", "align"), (t.item() for t in terms)))


def cmd_steps(msg):
    out = {"ms": [], "forward_ms": [], "backward_ms": [], "optimizer_ms": [], "losses": []}
    for _ in range(msg["n"]):
        ms, f, b, o, terms = timed_step()
        out["ms"].append(ms)
        out["forward_ms"].append(f)
        out["backward_ms"].append(b)
        out["optimizer_ms"].append(o)
        out["losses"].append(terms[0].item())
    return out


def cmd_profile(msg):
    """The ops of one step (torch.autograd.profiler): the table by self CPU time, and per phase the
    ops issued: called from Python in the forward, autograd nodes run by backward, called by
    AdamW.step (ops nested inside those, e.g. bmm's per-matrix selects, are not counted)."""
    timed_step()
    with torch.autograd.profiler.profile() as prof:
        total_ms = timed_step(torch.autograd.profiler.record_function)[0]
    table = self_cpu_table(prof, msg.get("rows", 25))

    phases = []
    for e in prof.function_events:
        if e.name not in PHASES or e.cpu_parent is not None:
            continue
        issued = [g for c in e.cpu_children for g in (c.cpu_children if c.name.startswith("Optimizer.") else [c])]
        phases.append(f"{e.name}: {len(issued)} ops issued ({e.cpu_time_total / 1000:.2f} ms)")
    return {"table": table, "phases": phases, "total_ms": total_ms}


if __name__ == "__main__":
    serve({"init": cmd_init, "first": cmd_first, "steps": cmd_steps, "profile": cmd_profile})
