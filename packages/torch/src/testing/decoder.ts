// A GPT-style reference decoder (pre-LayerNorm, causal self-attention, GELU MLP, tied output
// embedding). It is the engine's own yardstick: golden fixtures from PyTorch, the leak test and
// bench:engine all train this exact model, defined identically in
// fixtures/make_golden.py and bench/engine_ref.py.
import { Tensor } from "../tensor.js";
import * as F from "../functional.js";
import { arange } from "../creation.js";
import { Module, ModuleList } from "../nn/module.js";
import { Embedding, LayerNorm, Linear, type FactoryOptions } from "../nn/layers.js";

export interface DecoderConfig {
  vocabSize: number;
  width: number;
  layers: number;
  heads: number;
  maxSeq: number;
}

export class CausalSelfAttention extends Module {
  qkv: Linear;
  proj: Linear;
  constructor(readonly cfg: DecoderConfig, o: FactoryOptions) {
    super();
    this.qkv = new Linear(cfg.width, 3 * cfg.width, o);
    this.proj = new Linear(cfg.width, cfg.width, o);
  }
  /** x [B, T, D] -> [B, T, D] */
  forward(x: Tensor): Tensor {
    const [B, T, D] = x.shape as [number, number, number];
    const H = this.cfg.heads, hd = D / H;
    const [q, k, v] = this.qkv.forward(x).split(D, 2).map((t) => t.view(B, T, H, hd).transpose(1, 2)); // (B, H, T, hd)
    const y = F.scaledDotProductAttention(q!, k!, v!, { isCausal: true }); // (B, H, T, hd)
    return this.proj.forward(y.transpose(1, 2).reshape(B, T, D));
  }
}

export class Block extends Module {
  ln1: LayerNorm;
  attn: CausalSelfAttention;
  ln2: LayerNorm;
  fc: Linear;
  out: Linear;
  constructor(cfg: DecoderConfig, o: FactoryOptions) {
    super();
    this.ln1 = new LayerNorm(cfg.width, 1e-5, o);
    this.attn = new CausalSelfAttention(cfg, o);
    this.ln2 = new LayerNorm(cfg.width, 1e-5, o);
    this.fc = new Linear(cfg.width, 4 * cfg.width, o);
    this.out = new Linear(4 * cfg.width, cfg.width, o);
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.out.forward(F.gelu(this.fc.forward(this.ln2.forward(h)))));
  }
}

export class ReferenceDecoder extends Module {
  tok_emb: Embedding;
  pos_emb: Embedding;
  blocks: ModuleList<Block>;
  ln_f: LayerNorm;
  constructor(readonly cfg: DecoderConfig, o: FactoryOptions = {}) {
    super();
    if (cfg.width % cfg.heads) throw new RangeError(`width ${cfg.width} is not divisible by heads ${cfg.heads}`);
    this.tok_emb = new Embedding(cfg.vocabSize, cfg.width, o);
    this.pos_emb = new Embedding(cfg.maxSeq, cfg.width, o);
    this.blocks = new ModuleList(Array.from({ length: cfg.layers }, () => new Block(cfg, o)));
    this.ln_f = new LayerNorm(cfg.width, 1e-5, o);
  }
  /** tokens int64 [B, T] -> logits [B, T, V] (output projection tied to tok_emb) */
  forward(tokens: Tensor): Tensor {
    const T = tokens.shape[1]!;
    let x = this.tok_emb.forward(tokens).add(this.pos_emb.forward(arange(T)));
    for (const block of this.blocks) x = block.forward(x);
    return F.linear(this.ln_f.forward(x), this.tok_emb.weight);
  }
  /** Mean next-token cross-entropy of logits [B, T, V] against targets [B, T]. */
  loss(tokens: Tensor, targets: Tensor): Tensor {
    const logits = this.forward(tokens);
    const V = this.cfg.vocabSize;
    return F.crossEntropy(logits.view(-1, V), targets.view(-1));
  }
}
