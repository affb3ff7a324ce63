// The latent prediction head of the method (DESIGN.md §1, step 2): the language model reads a
// caption followed by K learned latent query tokens <|latent_0|> … <|latent_{K-1}|>; its last hidden
// states at those K positions, h ∈ R^{K×H}, go through the head M_φ to ẑ = M_φ(h) ∈ R^{K×D}, the
// prediction of the frozen vision encoder's K pooled latents.
//
//   const ids = tok.addTokens(latentTokens(K), { special: true });        // data/tokenizer.ts
//   resizeTokenEmbeddings(lm.embed_tokens, tok.vocabSize, { lmHead });     // only if it must grow
//   const input = appendLatentQueries(tok.encode(caption), K, ids);
//   const h = gatherLatentPositions(hidden, inputIds, ids);                // [B, K, H]
//   const zHat = head.forward(h);                                          // [B, K, D]
//
// Weight names (the model holds the head as `latent_head`): `latent_head.proj.{weight,bias}` for the
// linear head (and for the identity head when it must change the width); `latent_head.fc1.*`,
// `latent_head.fc2.*` for the MLP (fc1 -> GELU -> fc2).
//
// Besides the query positions, two readouts of the literature's alignment baselines take hidden
// states where they already are: the prompt's last position (gatherLastPosition, Mirage-style) and
// the image tokens' positions (gatherImagePositions, VIRAL-style); train/stages/latent_pretrain.ts
// cites both.
import { torch, nn, F, type Tensor, type Generator } from "@mindseye/torch";
import { ensure, hfField, type HfJson } from "../config/hf.js";
import { ConfigError } from "../config/errors.js";

export const LATENT_HEAD_TYPES = ["linear", "mlp", "identity"] as const;
export type LatentHeadType = (typeof LATENT_HEAD_TYPES)[number];

export interface LatentHeadConfig {
  /**
   * "linear": ẑ = W h + b; "mlp": ẑ = W₂ GELU(W₁ h + b₁) + b₂ (the proposal's two options);
   * "identity": ẑ = h, the hidden state itself is the prediction (Mirage's latent visual tokens) —
   * with a linear projection only when inputSize ≠ latentSize, since the widths must match.
   */
  type: LatentHeadType;
  /** Width of the LM hidden states it reads (the LM's hidden_size, H). */
  inputSize: number;
  /** Width of the MLP's hidden layer (mlp only; defaults to inputSize). */
  hiddenSize: number;
  /** Width of the predicted latents: the frozen encoder's feature width D. */
  latentSize: number;
  /** Whether the linear layers have biases. */
  bias: boolean;
}

export const LATENT_HEAD_PRESETS = {
  /**
   * Qwen2.5-VL-7B predicting its own frozen vision tower's merged features: LM hidden_size 3584,
   * vision_config.out_hidden_size 3584 (reference/formats.md §3.1-3.2).
   */
  "qwen2.5-vl-7b-mlp": { type: "mlp", inputSize: 3584, hiddenSize: 3584, latentSize: 3584, bias: true },
  /** Tests and quick runs. */
  tiny: { type: "mlp", inputSize: 64, hiddenSize: 96, latentSize: 32, bias: true },
} as const satisfies Record<string, LatentHeadConfig>;

/** Validates a head config once; hiddenSize defaults to inputSize. */
export function resolveLatentHead(p: Partial<LatentHeadConfig>): Readonly<LatentHeadConfig> {
  const c = { type: "mlp", bias: true, ...p } as LatentHeadConfig;
  ensure(LATENT_HEAD_TYPES.includes(c.type), "latent_head", `type must be one of ${LATENT_HEAD_TYPES.join(", ")}, got ${JSON.stringify(c.type)}`);
  for (const key of ["inputSize", "latentSize"] as const) {
    ensure(Number.isInteger(c[key]) && c[key] > 0, "latent_head", `${key} must be a positive integer, got ${JSON.stringify(c[key])}`);
  }
  const hiddenSize = p.hiddenSize ?? c.inputSize;
  ensure(Number.isInteger(hiddenSize) && hiddenSize > 0, "latent_head", `hiddenSize must be a positive integer, got ${JSON.stringify(hiddenSize)}`);
  ensure(typeof c.bias === "boolean", "latent_head", `bias must be a boolean, got ${JSON.stringify(c.bias)}`);
  return Object.freeze({ ...c, hiddenSize });
}

/**
 * The head's entry in a checkpoint's config.json (MindsEye's extension of the HF layout, under the
 * key "latent_head"): {"type", "input_size", "hidden_size", "latent_size", "bias"}.
 */
export function latentHeadToHfConfig(c: LatentHeadConfig): HfJson {
  return { type: c.type, input_size: c.inputSize, hidden_size: c.hiddenSize, latent_size: c.latentSize, bias: c.bias };
}

export function latentHeadFromHfConfig(json: HfJson): LatentHeadConfig {
  const where = "config.json latent_head";
  const known = new Set(["type", "input_size", "hidden_size", "latent_size", "bias"]);
  for (const k of Object.keys(json)) if (!known.has(k)) throw new ConfigError(`${where}: unknown field "${k}" (known: ${[...known].join(", ")})`);
  const type = hfField<string>(json, "type", "string", where);
  if (!(LATENT_HEAD_TYPES as readonly string[]).includes(type)) throw new ConfigError(`${where}: "type" must be one of ${LATENT_HEAD_TYPES.join(", ")}, got "${type}"`);
  const inputSize = hfField<number>(json, "input_size", "integer", where);
  return resolveLatentHead({
    type: type as LatentHeadType,
    inputSize,
    hiddenSize: hfField<number>(json, "hidden_size", "integer", where, inputSize),
    latentSize: hfField<number>(json, "latent_size", "integer", where),
    bias: hfField<boolean>(json, "bias", "boolean", where, true),
  });
}

/**
 * M_φ: hidden states at the latent query positions -> predicted latents. Initialised as PyTorch
 * initialises nn.Linear (pass a seeded generator for reproducible runs).
 * ```ts
 * const head = new LatentHead({ type: "mlp", inputSize: 3584, latentSize: 1280 }, { generator });
 * head.forward(h);   // [B, K, 3584] -> [B, K, 1280]
 * ```
 */
export class LatentHead extends nn.Module {
  /** The linear head's only layer; the identity head's projection when the widths differ (else null). */
  proj: nn.Linear | null = null;
  /** The MLP's layers (null for the linear head). */
  fc1: nn.Linear | null = null;
  fc2: nn.Linear | null = null;
  readonly config: Readonly<LatentHeadConfig>;
  constructor(config: Partial<LatentHeadConfig>, o: nn.FactoryOptions = {}) {
    super();
    this.config = resolveLatentHead(config);
    const { type, inputSize, hiddenSize, latentSize, bias } = this.config;
    if (type === "linear" || (type === "identity" && inputSize !== latentSize)) {
      this.proj = new nn.Linear(inputSize, latentSize, { ...o, bias });
    } else if (type === "mlp") {
      this.fc1 = new nn.Linear(inputSize, hiddenSize, { ...o, bias });
      this.fc2 = new nn.Linear(hiddenSize, latentSize, { ...o, bias });
    }
  }
  /** h [.., inputSize] -> ẑ [.., latentSize] */
  forward(h: Tensor): Tensor {
    if (this.proj !== null) return this.proj.forward(h);
    if (this.fc1 === null) return h; // identity of equal widths: no weights
    return this.fc2!.forward(F.gelu(this.fc1.forward(h)));
  }
}

/** The latent query token strings: ["<|latent_0|>", …, "<|latent_{k-1}|>"]. */
export function latentTokens(k: number): string[] {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`latentTokens: k must be a positive integer, got ${k}`);
  return Array.from({ length: k }, (_, i) => `<|latent_${i}|>`);
}

/**
 * A sequence's ids followed by the first k latent query ids (latent_0 … latent_{k-1}).
 * ```ts
 * appendLatentQueries([64, 2518, 23739], 2, latentIds);   // [64, 2518, 23739, latentIds[0], latentIds[1]]
 * ```
 */
export function appendLatentQueries(ids: readonly number[], k: number, latentIds: readonly number[]): number[] {
  if (!Number.isInteger(k) || k < 1 || k > latentIds.length) {
    throw new RangeError(`appendLatentQueries: k must be an integer in 1..${latentIds.length} (the latent token ids given), got ${k}`);
  }
  return [...ids, ...latentIds.slice(0, k)];
}

/**
 * Position of each latent id in each sequence: [B][K], in the order of latentIds. Throws, naming the
 * sequence, when a sequence lacks one of them or holds one more than once.
 */
export function findLatentPositions(inputIds: Tensor | readonly (readonly number[])[], latentIds: readonly number[]): number[][] {
  if (latentIds.length === 0) throw new RangeError("findLatentPositions: no latent token ids given");
  const slot = new Map<number, number>();
  latentIds.forEach((id, k) => {
    if (slot.has(id)) throw new RangeError(`findLatentPositions: latent token id ${id} is given twice (latent_${slot.get(id)} and latent_${k})`);
    slot.set(id, k);
  });
  let rows: ArrayLike<number>[];
  if (Array.isArray(inputIds)) {
    rows = inputIds as number[][];
  } else {
    const t = inputIds as Tensor;
    if (t.ndim !== 2) throw new RangeError(`findLatentPositions: inputIds must be [B, T], got [${t.shape.join(", ")}]`);
    const [b, len] = t.shape as [number, number];
    const flat = t.toFloat64Values();
    rows = Array.from({ length: b }, (_, i) => flat.subarray(i * len, (i + 1) * len));
  }
  return rows.map((row, b) => {
    const pos = new Array<number>(latentIds.length).fill(-1);
    for (let t = 0; t < row.length; t++) {
      const k = slot.get(row[t]!);
      if (k === undefined) continue;
      if (pos[k] !== -1) throw new RangeError(`sequence ${b} holds latent_${k} (id ${latentIds[k]}) more than once (positions ${pos[k]} and ${t}); each latent query token must appear exactly once`);
      pos[k] = t;
    }
    const missing = pos.flatMap((p, k) => (p === -1 ? [`latent_${k} (id ${latentIds[k]})`] : []));
    if (missing.length > 0) throw new RangeError(`sequence ${b} lacks ${missing.join(", ")}; append them with appendLatentQueries (and check that truncation did not cut them off)`);
    return pos;
  });
}

/**
 * The LM's last hidden states at the latent query positions, in the order latent_0 … latent_{K-1}.
 * Differentiable with respect to hidden (a gather).
 * ```ts
 * const h = gatherLatentPositions(lastHidden, inputIds, latentIds);   // [B, T, H] -> [B, K, H]
 * ```
 */
export function gatherLatentPositions(hidden: Tensor, inputIds: Tensor, latentTokenIds: readonly number[]): Tensor {
  if (hidden.ndim !== 3 || inputIds.ndim !== 2 || hidden.shape[0] !== inputIds.shape[0] || hidden.shape[1] !== inputIds.shape[1]) {
    throw new RangeError(`gatherLatentPositions: expected hidden [B, T, H] and inputIds [B, T], got [${hidden.shape.join(", ")}] and [${inputIds.shape.join(", ")}]`);
  }
  const positions = findLatentPositions(inputIds, latentTokenIds);
  const [b, , h] = hidden.shape as [number, number, number];
  const k = latentTokenIds.length;
  return torch.scope(() => {
    const index = torch.tensor(positions, { dtype: "int64", device: hidden.device }); // [B, K]
    return hidden.gather(1, index.unsqueeze(-1).expand(b, k, h));                      // [B, K, H]
  });
}

/**
 * The hidden state at each sequence's last real position, where the next token would be predicted:
 * hidden [B, T, H] -> [B, 1, H]. `attentionMask` [B, T] (1 = token) finds it under left or right
 * padding. Mirage's first latent visual token is the hidden state at this position (the prompt's end).
 * ```ts
 * const h = gatherLastPosition(out.lastHiddenState, attentionMask);   // [B, 1, H]
 * ```
 */
export function gatherLastPosition(hidden: Tensor, attentionMask: Tensor): Tensor {
  if (hidden.ndim !== 3 || attentionMask.ndim !== 2 || hidden.shape[0] !== attentionMask.shape[0] || hidden.shape[1] !== attentionMask.shape[1]) {
    throw new RangeError(`gatherLastPosition: expected hidden [B, T, H] and attentionMask [B, T], got [${hidden.shape.join(", ")}] and [${attentionMask.shape.join(", ")}]`);
  }
  const [b, len, h] = hidden.shape as [number, number, number];
  const mask = attentionMask.toFloat64Values();
  const last = Array.from({ length: b }, (_, i) => {
    for (let t = len - 1; t >= 0; t--) if (mask[i * len + t] !== 0) return t;
    throw new RangeError(`gatherLastPosition: sequence ${i} has no token (its attention mask is all 0)`);
  });
  return torch.scope(() => {
    const index = torch.tensor(last, { dtype: "int64", device: hidden.device }).view(b, 1, 1); // [B, 1, 1]
    return hidden.gather(1, index.expand(b, 1, h));                                              // [B, 1, H]
  });
}

/**
 * The hidden states at the image tokens' positions, in order: hidden [B, T, H] -> [B, N, H], where
 * every sequence holds exactly N tokens `imageTokenId` (one image each). VIRAL aligns these, taken
 * from an intermediate layer, to the vision encoder's patch features.
 * ```ts
 * const v = gatherImagePositions(out.hiddenStates![2], inputIds, imageTokenId);   // [B, 9, H]
 * ```
 */
export function gatherImagePositions(hidden: Tensor, inputIds: Tensor, imageTokenId: number): Tensor {
  if (hidden.ndim !== 3 || inputIds.ndim !== 2 || hidden.shape[0] !== inputIds.shape[0] || hidden.shape[1] !== inputIds.shape[1]) {
    throw new RangeError(`gatherImagePositions: expected hidden [B, T, H] and inputIds [B, T], got [${hidden.shape.join(", ")}] and [${inputIds.shape.join(", ")}]`);
  }
  const [b, len, h] = hidden.shape as [number, number, number];
  const ids = inputIds.toFloat64Values();
  const positions = Array.from({ length: b }, (_, i) => {
    const row: number[] = [];
    for (let t = 0; t < len; t++) if (ids[i * len + t] === imageTokenId) row.push(t);
    return row;
  });
  const n = positions[0]!.length;
  positions.forEach((row, i) => {
    if (row.length === 0 || row.length !== n) throw new RangeError(`gatherImagePositions: sequence ${i} holds ${row.length} image tokens (id ${imageTokenId}), sequence 0 holds ${n}; every sequence needs the same one image`);
  });
  return torch.scope(() => {
    const index = torch.tensor(positions, { dtype: "int64", device: hidden.device }); // [B, N]
    return hidden.gather(1, index.unsqueeze(-1).expand(b, n, h));                    // [B, N, H]
  });
}

export interface ResizeOptions {
  /** The output projection: resized too; if it shares the embedding's weight (tied) it stays tied. */
  lmHead?: nn.Linear;
  /**
   * New rows: "mean" (default, transformers' mean_resizing=True) samples N(μ, 1e-9·Σ) of the old
   * rows' mean and covariance; "normal" draws N(0, std²) (transformers' mean_resizing=False, std =
   * initializer_range).
   */
  init?: "mean" | "normal";
  /** Standard deviation for init "normal" (initializer_range, 0.02 for Qwen2). */
  std?: number;
  /** Seeded CPU generator for the new rows. */
  generator?: Generator;
}

/**
 * Resizes a token embedding (and its output head) to newVocab rows, as transformers'
 * resize_token_embeddings: the first min(old, new) rows are kept, new rows are initialised per
 * `init`, ties are preserved, requiresGrad carries over. The weights are replaced by new
 * Parameters and the old ones freed: resize before building the optimizer. Growing only when the
 * tokenizer outgrows the matrix avoids dropping rows a checkpoint pads in (Qwen2.5-VL-7B has
 * 152064 rows for a 151665-token tokenizer):
 * ```ts
 * const rows = lm.embed_tokens.numEmbeddings;
 * if (tok.vocabSize > rows) resizeTokenEmbeddings(lm.embed_tokens, tok.vocabSize, { lmHead: lm.lm_head, generator });
 * ```
 */
export function resizeTokenEmbeddings(embedding: nn.Embedding, newVocab: number, opts: ResizeOptions = {}): void {
  if (!Number.isInteger(newVocab) || newVocab < 1) throw new RangeError(`resizeTokenEmbeddings: newVocab must be a positive integer, got ${newVocab}`);
  const init = opts.init ?? "mean";
  const std = opts.std ?? 0.02;
  const old = embedding.weight;
  const [oldVocab, dim] = old.shape as [number, number];
  if (newVocab === oldVocab) return;
  const head = opts.lmHead;
  const tied = head !== undefined && head.weight === old;
  if (head !== undefined && !tied && (head.weight.shape[0] !== oldVocab || head.weight.shape[1] !== dim)) {
    throw new RangeError(`resizeTokenEmbeddings: lmHead weight [${head.weight.shape.join(", ")}] does not match the embedding [${oldVocab}, ${dim}]`);
  }

  embedding.weight = resizedRows(old, newVocab, init, std, opts.generator);
  // HF keeps the module and updates num_embeddings; a padding row that no longer exists is dropped.
  embedding.numEmbeddings = newVocab;
  if (embedding.paddingIdx >= newVocab) embedding.paddingIdx = -1;
  if (head !== undefined) {
    if (tied) {
      head.weight = embedding.weight;
    } else {
      const oldHead = head.weight;
      head.weight = resizedRows(oldHead, newVocab, init, std, opts.generator);
      oldHead.dispose();
    }
    if (head.bias !== null) {
      const oldBias = head.bias;
      head.bias = resizedBias(oldBias, newVocab, init, opts.generator);
      oldBias.dispose();
    }
    head.outFeatures = newVocab;
  }
  old.dispose();
}

/** weight [V, D] -> a new Parameter [newV, D]: old rows kept, new rows per init. */
function resizedRows(w: nn.Parameter, newVocab: number, init: "mean" | "normal", std: number, generator?: Generator): nn.Parameter {
  const [v, d] = w.shape as [number, number];
  const data = torch.noGrad(() => torch.scope(() => {
    if (newVocab < v) return w.narrow(0, 0, newVocab).clone();
    const added = newVocab - v;
    let rows: Tensor; // [added, D] float32; sampled on the CPU (seeded generators are CPU ones), computed on w's device
    if (init === "normal") {
      rows = torch.randn([added, d], { generator }).mul(std);
    } else {
      // transformers draws MultivariateNormal(μ, 1e-9·Σ) with Σ = CᵀC/V, C = W - μ. Since
      // (g C)/√V with g ~ N(0, I_V) has covariance exactly Σ, no Cholesky is needed:
      // rows = μ + √(1e-9/V) · (G W - rowsum(G) μ), G [added, V] standard normal.
      const w32 = w.to({ dtype: "float32" });                                        // [V, D]
      const mu = w32.mean(0, { keepdim: true });                                     // [1, D]
      const g = torch.randn([added, v], { generator }).to({ device: w.device });     // [added, V]
      const spread = g.matmul(w32).sub(g.sum(1, { keepdim: true }).mul(mu));         // [added, D] = G C
      rows = mu.add(spread.mul(Math.sqrt(1e-9 / v)));
    }
    return torch.cat([w.detach(), rows.to({ dtype: w.dtype, device: w.device })], 0); // [newV, D]
  }));
  return parameterOf(data, w.requiresGrad);
}

/** bias [V] -> a new Parameter [newV]: new entries N(mean, (1e-9·std)²) as transformers, or zeros for "normal". */
function resizedBias(b: nn.Parameter, newVocab: number, init: "mean" | "normal", generator?: Generator): nn.Parameter {
  const v = b.shape[0]!;
  const data = torch.noGrad(() => torch.scope(() => {
    if (newVocab < v) return b.narrow(0, 0, newVocab).clone();
    const b32 = b.to({ dtype: "float32", device: "cpu" });
    // transformers' _init_weights zeroes Linear biases (mean_resizing=False).
    const rows = init === "normal"
      ? torch.zeros([newVocab - v])
      : torch.randn([newVocab - v], { generator }).mul(1e-9 * b32.std().item()).add(b32.mean().item());
    return torch.cat([b.detach(), rows.to({ dtype: b.dtype, device: b.device })], 0);
  }));
  return parameterOf(data, b.requiresGrad);
}

/**
 * A Parameter taking over data. Made outside torch.scope: a Parameter returned from a scope would
 * be handed to the enclosing scope and freed with it.
 */
function parameterOf(data: Tensor, requiresGrad: boolean): nn.Parameter {
  const p = new nn.Parameter(data, requiresGrad);
  data.dispose();
  return p;
}
