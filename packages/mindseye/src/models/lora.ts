// LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") on nn.Linear
// modules, saved and loaded in Hugging Face PEFT's layout so adapters move between MindsEye and
// PEFT: y = x Wᵀ + b + (α / r) · B A dropout(x), W frozen, A [r, in] ~ kaiming-uniform(a=√5)
// (nn.Linear's init, as PEFT's init_lora_weights=True), B [out, r] = 0, so training starts at the
// base model.
//
//   const lora = applyLora(model, resolveLora({ r: 16, loraAlpha: 32 }), { generator });
//   const opt = new optim.AdamW(lora.parameters(), { lr: 2e-4 });   // only A and B train
//   lora.save("out/adapter/");                 // adapter_config.json + adapter_model.safetensors
//   lora.merge();                              // W += (α/r)·B·A; plain nn.Linear modules again
//
// Module names are the model's dotted paths (HF's), so a wrapped `model.layers.0.self_attn.q_proj`
// saves as `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, PEFT's name.
//
// Besides the adapters, two PEFT options train parts of the model itself:
//   modulesToSave          whole modules (a new head) train and are saved in the adapter file.
//                          PEFT trains a copy (`<name>.modules_to_save.default.*` in memory) and its
//                          save_pretrained strips "modules_to_save." and ".default", so the file holds
//                          `base_model.model.<name>.<param>` (peft src/peft/utils/save_and_load.py,
//                          get_peft_model_state_dict / set_peft_model_state_dict). Here the module
//                          trains in place (no frozen copy: MindsEye has no disable_adapter), under the
//                          same saved names; merge and unload both keep the trained module, as PEFT's
//                          merge_and_unload and unload put the trained copy in the model.
//   trainableTokenIndices  chosen rows of an nn.Embedding train (new tokens): PEFT's TrainableTokens.
//                          The rows' values (initialised from the rows, not deltas despite the name)
//                          are `<embed>.token_adapter.trainable_tokens_delta` [n, dim], saved as
//                          `base_model.model.<embed>.token_adapter.trainable_tokens_delta`; the base
//                          weight stays frozen and the forward reads it with those rows replaced.
//                          merge writes the rows into the weight; unload drops them (as PEFT).
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { torch, nn, F, io, type Tensor, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { ensure } from "../config/hf.js";

// =============================================================================================
// Config

export interface LoraConfig {
  /** Rank r: A is [r, in], B is [out, r]. */
  r: number;
  /** Scale numerator α: the update is (α / r)·B·A. */
  loraAlpha: number;
  /**
   * Which nn.Linear modules get an adapter, by dotted name, with PEFT's rule: a list matches a
   * name equal to an entry or ending in "." + entry; a string is a regular expression that must
   * match the whole name.
   */
  targetModules: string[] | string;
  /** Dropout on the adapter's input while training (0: none). */
  loraDropout: number;
  /** Written to adapter_config.json: the base checkpoint this adapter belongs to. */
  baseModelNameOrPath: string | null;
  /** PEFT's task type ("CAUSAL_LM" for a decoder LM), or null. */
  taskType: string | null;
  /**
   * Modules trained whole and saved beside the adapters (PEFT's modules_to_save), by name with
   * the list rule of targetModules; a match inside another match is part of it. null: none.
   */
  modulesToSave: string[] | null;
  /**
   * Embedding rows that train (PEFT's trainable_token_indices, dict form): embedding module name
   * (list rule of targetModules) -> token ids. null: none.
   */
  trainableTokenIndices: Readonly<Record<string, readonly number[]>> | null;
}

export type ResolvedLoraConfig = Readonly<LoraConfig & { /** α / r */ scaling: number }>;

/** PEFT's LoraConfig defaults (r 8, α 8, no dropout), with every projection of a Qwen2/Llama layer targeted. */
export const LORA_DEFAULTS: Readonly<LoraConfig> = Object.freeze({
  r: 8,
  loraAlpha: 8,
  targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
  loraDropout: 0,
  baseModelNameOrPath: null,
  taskType: "CAUSAL_LM",
  modulesToSave: null,
  trainableTokenIndices: null,
});

/**
 * Defaults + overrides, validated once; scaling derived.
 * ```ts
 * const cfg = resolveLora({ r: 16, loraAlpha: 32, targetModules: ["q_proj", "v_proj"] });
 * ```
 */
export function resolveLora(p: Partial<LoraConfig>, where = "lora"): ResolvedLoraConfig {
  for (const k of Object.keys(p)) {
    if (!(k in LORA_DEFAULTS)) throw new ConfigError(`${where}.${k}: unknown LoRA field (known: ${Object.keys(LORA_DEFAULTS).join(", ")})`);
  }
  const c = { ...LORA_DEFAULTS, ...p };
  ensure(Number.isInteger(c.r) && c.r > 0, `${where}.r`, `must be a positive integer, got ${JSON.stringify(c.r)}`);
  ensure(typeof c.loraAlpha === "number" && c.loraAlpha > 0, `${where}.loraAlpha`, `must be a positive number, got ${JSON.stringify(c.loraAlpha)}`);
  ensure(typeof c.loraDropout === "number" && c.loraDropout >= 0 && c.loraDropout < 1, `${where}.loraDropout`, `must be in [0, 1), got ${JSON.stringify(c.loraDropout)}`);
  const t = c.targetModules;
  ensure(typeof t === "string" ? t.length > 0 : Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === "string" && x.length > 0),
    `${where}.targetModules`, `must be a non-empty list of module names or a regular expression, got ${JSON.stringify(t)}`);
  if (typeof t === "string") {
    try { new RegExp(t); } catch (e) { throw new ConfigError(`${where}.targetModules: ${JSON.stringify(t)} is not a regular expression (${(e as Error).message})`); }
  }
  const s = c.modulesToSave;
  ensure(s === null || (Array.isArray(s) && s.every((x) => typeof x === "string" && x.length > 0)), `${where}.modulesToSave`, `must be a list of module names or null, got ${JSON.stringify(s)}`);
  const tti = c.trainableTokenIndices;
  ensure(tti === null || (typeof tti === "object" && !Array.isArray(tti) && Object.values(tti).every((ids) => Array.isArray(ids) && ids.length > 0 && ids.every((i) => Number.isInteger(i) && i >= 0))),
    `${where}.trainableTokenIndices`, `must map embedding module names to non-empty lists of token ids, or be null, got ${JSON.stringify(tti)}`);
  return Object.freeze({
    ...c,
    targetModules: typeof t === "string" ? t : Object.freeze([...t]) as string[],
    modulesToSave: s === null || s.length === 0 ? null : Object.freeze([...new Set(s)]) as string[],
    trainableTokenIndices: tti === null || Object.keys(tti).length === 0 ? null : Object.freeze(Object.fromEntries(Object.entries(tti).map(([k, ids]) => [k, Object.freeze([...new Set(ids)].sort((a, b) => a - b))]))),
    scaling: c.loraAlpha / c.r,
  });
}

/** PEFT's target rule (check_target_module_exists): regex full match, or exact / "."-suffix match. */
export function matchesTarget(name: string, target: string[] | string): boolean {
  if (typeof target === "string") return new RegExp(`^(?:${target})$`).test(name);
  return target.some((t) => name === t || name.endsWith(`.${t}`));
}

// =============================================================================================
// The adapted layer

/**
 * An nn.Linear with a LoRA update. It shares the base layer's weight and bias (same Parameter
 * objects, so names and state dict entries stay `<path>.weight` / `<path>.bias`) and adds
 * `<path>.lora_A.weight` [r, in] and `<path>.lora_B.weight` [out, r].
 */
export class LoraLinear extends nn.Module {
  weight: nn.Parameter;
  bias: nn.Parameter | null;
  lora_A: nn.Linear;
  lora_B: nn.Linear;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The wrapped layer (a private field, so not a submodule: its weights are listed once). */
  readonly #base: nn.Linear;

  constructor(base: nn.Linear, readonly r: number, readonly scaling: number, readonly loraDropout: number, generator?: Generator) {
    super();
    this.#base = base;
    this.weight = base.weight;
    this.bias = base.bias;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    const o = { bias: false, dtype: base.weight.dtype, device: base.weight.device, ...(generator ? { generator } : {}) };
    this.lora_A = new nn.Linear(base.inFeatures, r, o); // kaiming_uniform_(a=√5), as PEFT
    this.lora_B = new nn.Linear(r, base.outFeatures, o);
    nn.init.zeros_(this.lora_B.weight);
  }

  /** x [.., in] -> [.., out] */
  forward(x: Tensor): Tensor {
    const y = F.linear(x, this.weight, this.bias);
    const h = this.loraDropout > 0 ? F.dropout(x, this.loraDropout, this.training) : x;
    return y.add(this.lora_B.forward(this.lora_A.forward(h)).mul(this.scaling));
  }

  /** (α/r)·B·A [out, in], in float32. */
  delta(): Tensor {
    return torch.scope(() => this.lora_B.weight.float().matmul(this.lora_A.weight.float()).mul(this.scaling));
  }

  /** Folds the update into the base weight (W += (α/r)·B·A) and returns the base layer. */
  mergeIntoBase(): nn.Linear {
    torch.noGrad(() => torch.scope(() => {
      const merged = this.weight.float().add(this.delta());
      this.weight.copy_(merged.to({ dtype: this.weight.dtype }));
    }));
    return this.#base;
  }

  /** The base layer as it was (no merge). */
  unwrap(): nn.Linear { return this.#base; }
}

/** The trained rows of a TrainableTokensEmbedding, under PEFT's name (`token_adapter.trainable_tokens_delta`). */
export class TrainableTokens extends nn.Module {
  /** [n, dim]: the rows' values (PEFT initialises them from the rows; they replace, not add). */
  trainable_tokens_delta: nn.Parameter;
  constructor(rows: Tensor) {
    super();
    this.trainable_tokens_delta = new nn.Parameter(rows);
  }
}

/**
 * An nn.Embedding some of whose rows train (PEFT's trainable_token_indices). It shares the base
 * weight (frozen, still `<path>.weight`) and reads it with rows `tokenIds` replaced by
 * `token_adapter.trainable_tokens_delta`, so only those rows get gradients and the rest stay
 * bit-identical. Exposes numEmbeddings / embeddingDim / paddingIdx as nn.Embedding does.
 */
export class TrainableTokensEmbedding extends nn.Module {
  weight: nn.Parameter;
  token_adapter: TrainableTokens;
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number;
  readonly #base: nn.Embedding;
  /** int64 [n] on the weight's device (a private field: not a buffer, not saved with the model). */
  readonly #index: Tensor;

  constructor(base: nn.Embedding, readonly tokenIds: readonly number[]) {
    super();
    const bad = tokenIds.find((i) => i >= base.numEmbeddings);
    if (bad !== undefined) throw new ConfigError(`lora.trainableTokenIndices: token id ${bad} is outside the embedding's ${base.numEmbeddings} rows`);
    this.#base = base;
    this.weight = base.weight;
    this.numEmbeddings = base.numEmbeddings;
    this.embeddingDim = base.embeddingDim;
    this.paddingIdx = base.paddingIdx;
    this.#index = torch.tensor([...tokenIds], { dtype: "int64" }).to({ device: base.weight.device });
    const rows = torch.noGrad(() => base.weight.indexSelect(0, this.#index)); // [n, dim]
    this.token_adapter = new TrainableTokens(rows);
    rows.dispose();
  }

  /** ids [..] -> [.., dim], the chosen rows read from the adapter. */
  forward(ids: Tensor): Tensor {
    return torch.scope(() => F.embedding(ids, this.weight.indexPut([this.#index], this.token_adapter.trainable_tokens_delta), this.paddingIdx));
  }

  /** Writes the trained rows into the base weight and returns the base layer. */
  mergeIntoBase(): nn.Embedding {
    torch.noGrad(() => { this.weight.indexPut_([this.#index], this.token_adapter.trainable_tokens_delta.to({ dtype: this.weight.dtype })); });
    return this.unwrap();
  }

  /** The base layer as it was (the trained rows dropped). */
  unwrap(): nn.Embedding {
    this.#index.dispose();
    return this.#base;
  }
}

// =============================================================================================
// Applying, saving, loading, merging

const ADAPTER_CONFIG = "adapter_config.json";
const ADAPTER_WEIGHTS = "adapter_model.safetensors";
/** PEFT's prefix on saved adapter weights (PeftModel.base_model = LoraModel, its .model = the base). */
const PEFT_PREFIX = "base_model.model.";

/** A model with LoRA adapters: the wrapped modules by name, and what to save or merge. */
export class LoraAdapter {
  constructor(
    readonly model: nn.Module, readonly config: ResolvedLoraConfig, readonly modules: ReadonlyMap<string, LoraLinear>,
    /** The modules trained whole (config.modulesToSave), by full name. */
    readonly saved: ReadonlyMap<string, nn.Module> = new Map(),
    /** The embeddings with trainable rows (config.trainableTokenIndices), by full name. */
    readonly tokens: ReadonlyMap<string, TrainableTokensEmbedding> = new Map(),
  ) {}

  /** What the adapter owns (freed by merge / unload): `<path>.lora_{A,B}.weight`, `<embed>.token_adapter.trainable_tokens_delta`. */
  #owned(): [string, nn.Parameter][] {
    return [
      ...[...this.modules].flatMap(([n, m]) => [[`${n}.lora_A.weight`, m.lora_A.weight], [`${n}.lora_B.weight`, m.lora_B.weight]] as [string, nn.Parameter][]),
      ...[...this.tokens].map(([n, m]) => [`${n}.token_adapter.trainable_tokens_delta`, m.token_adapter.trainable_tokens_delta] as [string, nn.Parameter]),
    ];
  }

  /** Everything that trains, by model name: the adapters, the token rows, and the saved modules' parameters (`<name>.<param>`). */
  namedParameters(): [string, nn.Parameter][] {
    return [...this.#owned(), ...[...this.saved].flatMap(([n, m]) => m.namedParameters().map(([k, p]) => [`${n}.${k}`, p] as [string, nn.Parameter]))];
  }
  parameters(): nn.Parameter[] { return this.namedParameters().map(([, p]) => p); }

  /** What adapter_model.safetensors holds, under PEFT's names (`base_model.model.<path>.lora_A.weight`, `base_model.model.<saved>.<param>`, ...). */
  peftStateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters().map(([n, p]) => [PEFT_PREFIX + n, p]));
  }

  /** Writes `adapter_config.json` and `adapter_model.safetensors` (PEFT's save_pretrained layout) into dir. */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, ADAPTER_CONFIG), `${JSON.stringify(loraConfigToPeft(this.config), null, 2)}\n`);
    io.saveFile(join(dir, ADAPTER_WEIGHTS), this.peftStateDict(), { format: "pt" });
  }

  /**
   * Folds every adapter into its base weight (W += (α/r)·B·A, PEFT's merge_and_unload) and puts
   * the plain nn.Linear modules back, so the model saves as a normal checkpoint. Returns the
   * merged module names; the adapter is spent.
   */
  merge(): string[] {
    for (const [name, m] of this.modules) replaceModule(this.model, name, m.mergeIntoBase());
    for (const [name, m] of this.tokens) replaceModule(this.model, name, m.mergeIntoBase());
    for (const [, p] of this.#owned()) p.dispose();
    return [...this.modules.keys()];
  }

  /**
   * Puts the base layers back without merging (PEFT's unload): the adapted weights and the
   * embedding keep their base values, the trainable token rows are dropped; the saved modules
   * keep their trained weights (PEFT puts the trained copy in the model). The adapter is spent.
   */
  unload(): void {
    for (const [name, m] of this.modules) replaceModule(this.model, name, m.unwrap());
    for (const [name, m] of this.tokens) replaceModule(this.model, name, m.unwrap());
    for (const [, p] of this.#owned()) p.dispose();
  }
}

/**
 * Freezes every parameter of `model` and wraps each nn.Linear whose name matches
 * config.targetModules in a LoraLinear (A, B trainable). A target that matches nothing, or matches
 * a module that is not an nn.Linear, is an error naming it.
 */
export function applyLora(model: nn.Module, config: ResolvedLoraConfig, o: { generator?: Generator } = {}): LoraAdapter {
  // modules_to_save: the outermost modules that match (a match inside one is part of it).
  const saved = new Map<string, nn.Module>();
  if (config.modulesToSave !== null) {
    for (const [name, m] of model.namedModules()) {
      if (name === "" || !matchesTarget(name, config.modulesToSave) || [...saved.keys()].some((s) => name.startsWith(`${s}.`))) continue;
      saved.set(name, m);
    }
    if (saved.size === 0) throw new ConfigError(`lora.modulesToSave ${JSON.stringify(config.modulesToSave)} matches no module of ${model.constructor.name}`);
  }
  const inSaved = (name: string) => [...saved.keys()].some((s) => name === s || name.startsWith(`${s}.`));
  // trainable_token_indices: one nn.Embedding per entry.
  const tokenTargets: [string, nn.Embedding, readonly number[]][] = [];
  for (const [key, ids] of Object.entries(config.trainableTokenIndices ?? {})) {
    const found = model.namedModules().filter(([name]) => name !== "" && matchesTarget(name, [key]));
    if (found.length !== 1) throw new ConfigError(`lora.trainableTokenIndices: ${JSON.stringify(key)} must name one module of ${model.constructor.name}, matches ${found.length}${found.length ? ` (${found.map(([n]) => n).slice(0, 3).join(", ")})` : ""}`);
    const [name, m] = found[0]!;
    if (m instanceof TrainableTokensEmbedding) throw new ConfigError(`lora: ${name} already has trainable token rows`);
    if (!(m instanceof nn.Embedding)) throw new ConfigError(`lora.trainableTokenIndices names ${name}, a ${m.constructor.name}; trainable tokens need an nn.Embedding`);
    if (inSaved(name)) throw new ConfigError(`lora: ${name} is in modulesToSave (all of it trains) and in trainableTokenIndices; give it in one only`);
    tokenTargets.push([name, m, ids]);
  }
  // LoRA targets inside a saved module are left out: the module trains whole.
  const matched = model.namedModules().filter(([name]) => name !== "" && matchesTarget(name, config.targetModules) && !inSaved(name));
  if (matched.length === 0) {
    const linears = model.namedModules().filter(([, m]) => m instanceof nn.Linear).map(([n]) => n);
    throw new ConfigError(`lora.targetModules ${JSON.stringify(config.targetModules)} matches no module of ${model.constructor.name} (its nn.Linear modules include ${linears.slice(0, 6).join(", ")}${linears.length > 6 ? ", ..." : ""})`);
  }
  for (const [name, m] of matched) {
    if (m instanceof LoraLinear) throw new ConfigError(`lora: ${name} already has a LoRA adapter (merge it or build a fresh model first)`);
    if (!(m instanceof nn.Linear)) throw new ConfigError(`lora.targetModules matches ${name}, a ${m.constructor.name}; LoRA wraps nn.Linear only (narrow targetModules)`);
  }
  model.requiresGrad_(false);
  const modules = new Map<string, LoraLinear>();
  for (const [name, m] of matched) {
    const lora = new LoraLinear(m as nn.Linear, config.r, config.scaling, config.loraDropout, o.generator);
    lora.training = model.training;
    replaceModule(model, name, lora);
    modules.set(name, lora);
  }
  for (const m of saved.values()) m.requiresGrad_(true);
  const tokens = new Map<string, TrainableTokensEmbedding>();
  for (const [name, m, ids] of tokenTargets) {
    const t = new TrainableTokensEmbedding(m, ids);
    t.training = model.training;
    replaceModule(model, name, t);
    tokens.set(name, t);
  }
  return new LoraAdapter(model, config, modules, saved, tokens);
}

/**
 * Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors), wraps the
 * base model's targets as its config says, and loads the weights. Every adapter weight must be
 * present with its shape, and no other; PEFT options MindsEye does not implement are refused.
 */
export function loadLoraAdapter(model: nn.Module, dir: string): LoraAdapter {
  const config = readLoraConfig(dir);
  const lora = applyLora(model, config);
  const file = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) throw new ConfigError(`${file}: missing (a PEFT adapter directory holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS})`);
  const saved = io.loadFile(file);
  try {
    const own = lora.peftStateDict();
    const missing = [...own.keys()].filter((k) => !saved.has(k));
    const unexpected = [...saved.keys()].filter((k) => !own.has(k));
    if (missing.length || unexpected.length) {
      throw new ConfigError(`${file}: adapter weights do not match the model's targets: ` +
        `${missing.length} missing (${missing.slice(0, 3).join(", ")}), ${unexpected.length} unexpected (${unexpected.slice(0, 3).join(", ")})`);
    }
    torch.noGrad(() => {
      for (const [k, p] of own) {
        const t = saved.get(k)!;
        if (t.shape.join() !== p.shape.join()) throw new ConfigError(`${file}: ${k} is [${t.shape.join(", ")}], the model needs [${p.shape.join(", ")}] (r = ${config.r})`);
        p.copy_(t);
      }
    });
  } finally {
    for (const t of saved.values()) t.dispose();
  }
  return lora;
}

/** The fields of PEFT's adapter_config.json for a plain LoRA (PEFT's defaults for what MindsEye does not use). */
export function loraConfigToPeft(c: ResolvedLoraConfig): Record<string, unknown> {
  return {
    peft_type: "LORA",
    task_type: c.taskType,
    base_model_name_or_path: c.baseModelNameOrPath,
    r: c.r,
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    target_modules: c.targetModules,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: c.modulesToSave,
    // newer PEFT's key, written only when used so that plain adapters' configs are unchanged
    ...(c.trainableTokenIndices === null ? {} : { trainable_token_indices: c.trainableTokenIndices }),
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    use_rslora: false,
    use_dora: false,
    revision: null,
  };
}

/** Reads adapter_config.json; options that change the computation and that MindsEye lacks are errors. */
export function readLoraConfig(dir: string): ResolvedLoraConfig {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new ConfigError(`${path}: missing (a PEFT adapter directory holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS})`);
  const j = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  const at = (k: string) => `${path} "${k}"`;
  ensure(j.peft_type === "LORA", at("peft_type"), `must be "LORA", got ${JSON.stringify(j.peft_type)}`);
  ensure((j.bias ?? "none") === "none", at("bias"), `only "none" is supported (biases stay frozen), got ${JSON.stringify(j.bias)}`);
  for (const k of ["use_rslora", "use_dora", "fan_in_fan_out"]) ensure(!j[k], at(k), "is not supported by MindsEye's LoRA (must be false)");
  for (const k of ["rank_pattern", "alpha_pattern"]) ensure(j[k] === undefined || j[k] === null || Object.keys(j[k] as object).length === 0, at(k), "per-module ranks or alphas are not supported (must be empty)");
  for (const k of ["layers_to_transform", "layers_pattern"]) {
    const v = j[k];
    ensure(v === undefined || v === null || (Array.isArray(v) && v.length === 0), at(k), `is not supported by MindsEye's LoRA (must be null), got ${JSON.stringify(v)}`);
  }
  const mts = j.modules_to_save ?? null;
  ensure(mts === null || (Array.isArray(mts) && mts.every((x) => typeof x === "string")), at("modules_to_save"), `must be a list of module names or null, got ${JSON.stringify(mts)}`);
  // PEFT's list form means the input embedding (get_input_embeddings), taken here as the module named embed_tokens.
  const tti = j.trainable_token_indices ?? null;
  const tokens = Array.isArray(tti) ? { embed_tokens: tti as number[] } : (tti as Record<string, number[]> | null);
  const str = (v: unknown) => (typeof v === "string" ? v : null);
  return resolveLora({
    r: j.r as number,
    loraAlpha: j.lora_alpha as number,
    targetModules: j.target_modules as string[] | string,
    loraDropout: (j.lora_dropout ?? 0) as number,
    baseModelNameOrPath: str(j.base_model_name_or_path),
    taskType: str(j.task_type),
    modulesToSave: mts as string[] | null,
    trainableTokenIndices: tokens,
  }, path);
}

/** Puts `m` at dotted `name` in `root` (the parent holds it as a plain property). */
function replaceModule(root: nn.Module, name: string, m: nn.Module): void {
  const dot = name.lastIndexOf(".");
  const parentName = dot < 0 ? "" : name.slice(0, dot), key = name.slice(dot + 1);
  const parent = root.namedModules().find(([n]) => n === parentName)?.[1];
  if (parent === undefined || parent instanceof nn.ModuleList || !(key in parent)) {
    throw new ConfigError(`lora: cannot replace ${name}: its parent is not a module with a "${key}" property`);
  }
  (parent as unknown as Record<string, nn.Module>)[key] = m;
}
