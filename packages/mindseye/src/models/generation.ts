// Autoregressive generation for any causal LM with Qwen2's forward shape: greedy or sampled
// (temperature → top-k → top-p, in HF's order), batched with left padding, a KV cache across
// steps, per-sequence stop tokens.
//
//   const { inputIds, attentionMask } = padLeft([[1, 5, 9], [4, 2]], 0);
//   const { tokens } = generate(model, { inputIds, attentionMask, maxNewTokens: 20, stopTokenIds: [2] });
//
// The model contract (GenerativeLM) is what Qwen2ForCausalLM.forward already is: the first call
// gets the whole prompt (token ids, or embeddings — a VLM splices image features into them) and
// its attention mask; later calls get one token per sequence, the mask grown by one column, and
// the cache the first call returned. The model derives positions from the mask and the cache.
import { torch, F, type Tensor, type Generator } from "@mindseye/torch";

/** A per-sequence cache of past keys and values that generation disposes when done. */
export interface GenerationCache {
  dispose(): void;
}

/** One forward step of a causal LM. */
export interface GenerationStep<C extends GenerationCache> {
  /** int64 [B, T] (later steps: [B, 1]). */
  inputIds?: Tensor;
  /** [B, T, D], first step only, instead of inputIds. */
  inputsEmbeds?: Tensor;
  /** [B, P + T]: 1 = token, 0 = left padding, over cached and new tokens. */
  attentionMask: Tensor;
  pastKeyValues?: C;
  useCache: true;
  /** Only the last position's logits are needed. */
  logitsToKeep: 1;
}

/** What generate() needs of a model (Qwen2ForCausalLM fits; a VLM wrapping it can too). */
export interface GenerativeLM<C extends GenerationCache = GenerationCache> {
  forward(input: GenerationStep<C>): { logits: Tensor; pastKeyValues?: C };
}

export interface GenerateOptions {
  /** Prompt token ids, int64 [B, T], left-padded (see padLeft). */
  inputIds?: Tensor;
  /** Prompt embeddings [B, T, D] for the first step instead of inputIds (VLMs). */
  inputsEmbeds?: Tensor;
  /** [B, T], 1 = token, 0 = padding; all ones when absent. */
  attentionMask?: Tensor;
  /** At most this many new tokens per sequence. */
  maxNewTokens: number;
  /** A sequence ends after producing any of these (the stop token is included in its output). */
  stopTokenIds?: number[];
  /** Fed to finished sequences while others run on (default: the first stop token, else 0). */
  padTokenId?: number;
  /** Sample instead of taking the argmax. */
  doSample?: boolean;
  /** Logits are divided by this before sampling (> 0). */
  temperature?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1: off). */
  topP?: number;
  /** Seeded generator for sampling (the global one when absent). */
  generator?: Generator;
}

export interface GenerateResult {
  /** New token ids per sequence, up to and including its stop token. */
  tokens: number[][];
  /** Why each sequence ended. */
  finishReasons: ("stop" | "length")[];
}

/**
 * Generates up to maxNewTokens per sequence, with gradients off and every intermediate freed.
 * ```ts
 * const g = new torch.Generator(7);
 * const out = generate(model, { inputIds, attentionMask, maxNewTokens: 32, doSample: true, topP: 0.9, generator: g });
 * ```
 */
export function generate<C extends GenerationCache>(model: GenerativeLM<C>, o: GenerateOptions): GenerateResult {
  if ((o.inputIds === undefined) === (o.inputsEmbeds === undefined)) throw new Error("generate: pass exactly one of inputIds and inputsEmbeds");
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1) throw new RangeError(`generate: maxNewTokens must be a positive integer, got ${o.maxNewTokens}`);
  const sampling = checkSampling(o);
  const prompt = (o.inputIds ?? o.inputsEmbeds)!;
  const [B, T] = prompt.shape as [number, number];
  const stop = new Set(o.stopTokenIds ?? []);
  const pad = o.padTokenId ?? o.stopTokenIds?.[0] ?? 0;

  return torch.noGrad(() => torch.scope(() => {
    let mask = o.attentionMask ?? torch.ones([B, T], { dtype: "int64", device: prompt.device });
    if (mask.shape[0] !== B || mask.shape[1] !== T) throw new RangeError(`generate: attentionMask has shape [${mask.shape.join(", ")}] but the prompt is [${B}, ${T}]`);
    const tokens: number[][] = Array.from({ length: B }, () => []);
    const finishReasons: ("stop" | "length")[] = Array<"stop" | "length">(B).fill("length");
    const done = Array<boolean>(B).fill(false);
    let cache: C | undefined;
    try {
      let step: GenerationStep<C> = { ...(o.inputIds ? { inputIds: o.inputIds } : { inputsEmbeds: o.inputsEmbeds! }), attentionMask: mask, useCache: true, logitsToKeep: 1 };
      for (let n = 0; n < o.maxNewTokens; n++) {
        // 1. One forward step; only the next-token choice leaves the step's scope.
        const next = torch.scope(() => {
          const out = model.forward(step);
          cache = out.pastKeyValues;
          return chooseNext(out.logits.select(1, -1), sampling); // [B] int64
        });
        const chosen = Array.from(next.toFloat64Values());
        next.dispose();
        // 2. Record per sequence; finished ones are fed the pad token from now on.
        for (let b = 0; b < B; b++) {
          if (done[b]) continue;
          tokens[b]!.push(chosen[b]!);
          if (stop.has(chosen[b]!)) { done[b] = true; finishReasons[b] = "stop"; }
        }
        if (done.every(Boolean) || n === o.maxNewTokens - 1) break;
        if (cache === undefined) throw new Error("generate: the model returned no pastKeyValues although useCache was set");
        const feed = torch.tensor(BigInt64Array.from(chosen, (t, b) => BigInt(done[b] ? pad : t)), { shape: [B, 1] }).to({ device: prompt.device });
        const grown = torch.cat([mask, torch.ones([B, 1], { dtype: mask.dtype, device: mask.device })], 1); // [B, P + 1]
        if (mask !== o.attentionMask) mask.dispose();
        if (step.inputIds && step.inputIds !== o.inputIds) step.inputIds.dispose();
        mask = grown;
        step = { inputIds: feed, attentionMask: mask, pastKeyValues: cache, useCache: true, logitsToKeep: 1 };
      }
    } finally {
      (cache as C | undefined)?.dispose();
    }
    return { tokens, finishReasons };
  }));
}

/** Decoding settings, validated (see GenerateOptions). */
export interface Sampling {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  generator?: Generator;
}

function checkSampling(o: GenerateOptions): Sampling {
  const s: Sampling = { doSample: o.doSample ?? false, temperature: o.temperature ?? 1, topK: o.topK ?? 0, topP: o.topP ?? 1, ...(o.generator ? { generator: o.generator } : {}) };
  if (!(s.temperature > 0)) throw new RangeError(`generate: temperature must be > 0, got ${s.temperature} (use doSample: false for greedy decoding)`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw new RangeError(`generate: topK must be a non-negative integer (0 = off), got ${s.topK}`);
  if (!(s.topP > 0 && s.topP <= 1)) throw new RangeError(`generate: topP must be in (0, 1], got ${s.topP}`);
  if (!s.doSample && (o.temperature !== undefined || o.topK !== undefined || o.topP !== undefined || o.generator !== undefined)) {
    throw new RangeError("generate: temperature, topK, topP and generator apply to sampling; set doSample: true (or drop them for greedy decoding)");
  }
  return s;
}

/** Next token per row of logits [B, V]: the argmax, or a sample after HF's warpers. -> int64 [B] */
export function chooseNext(logits: Tensor, s: Sampling): Tensor {
  return torch.scope(() => {
    if (!s.doSample) return logits.argmax(-1);
    let x = logits.float();
    if (s.temperature !== 1) x = x.div(s.temperature);
    const V = x.shape[1]!;
    if (s.topK > 0 && s.topK < V) {
      const kth = x.topk(s.topK, -1).values.narrow(1, s.topK - 1, 1); // [B, 1]
      x = x.maskedFill(x.lt(kth), -Infinity);
    }
    if (s.topP < 1) {
      // As HF's TopPLogitsWarper: drop the low tail whose total probability is at most 1 − p,
      // never the most likely token.
      const { values, indices } = x.sort(-1); // ascending
      const cum = F.softmax(values, -1).cumsum(-1);
      const drop = cum.le(1 - s.topP);
      drop.narrow(1, V - 1, 1).fill_(false);
      x = x.maskedFill(drop.scatter(1, indices, drop), -Infinity);
    }
    return torch.multinomial(F.softmax(x, -1), 1, s.generator ? { generator: s.generator } : {}).view(-1);
  });
}

/**
 * Left-pads token sequences into a batch: inputIds int64 [B, T] and attentionMask [B, T]
 * (0 over the padding), T the longest length.
 */
export function padLeft(sequences: number[][], padTokenId: number): { inputIds: Tensor; attentionMask: Tensor } {
  if (sequences.length === 0 || sequences.some((s) => s.length === 0)) throw new RangeError("padLeft: need at least one sequence, none of them empty");
  const T = Math.max(...sequences.map((s) => s.length));
  const ids = new BigInt64Array(sequences.length * T), mask = new BigInt64Array(sequences.length * T);
  sequences.forEach((s, b) => {
    const off = b * T + T - s.length;
    for (let i = 0; i < T - s.length; i++) ids[b * T + i] = BigInt(padTokenId);
    s.forEach((t, i) => { ids[off + i] = BigInt(t); mask[off + i] = 1n; });
  });
  return { inputIds: torch.tensor(ids, { shape: [sequences.length, T] }), attentionMask: torch.tensor(mask, { shape: [sequences.length, T] }) };
}
