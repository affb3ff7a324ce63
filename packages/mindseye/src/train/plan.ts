// Per-GPU training memory, estimated from a model's config.json alone (nothing is allocated):
// weights, gradients, AdamW state and activations, for plain data parallelism or ZeRO-1/2, with
// or without gradient checkpointing and LoRA. `mindseye plan` prints it (cli/plan.ts).
//
// Sources of the formulas:
// - Model states (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
//   Parameter Models", §3.1, §5): mixed-precision AdamW keeps, per trained parameter, 2 bytes of
//   bf16 weight, 2 of bf16 gradient and K = 12 of fp32 state (master weight, m, v). ZeRO-1 splits
//   the K bytes over N GPUs, ZeRO-2 the gradients as well. In float32 there is no master copy:
//   4 + 4 + 8 bytes. The trainer implements both (train.zero_stage: 1 or 2, optim/zero.ts):
//   ZeRO-1 shards AdamW's m and v, the optimizer's whole state, over the ranks; ZeRO-2 also
//   reduce-scatters each gradient onto its owner and frees the other ranks' copies. It does so
//   after backward (the engine's backward has no per-parameter hooks, and accumulation
//   communicates once per step), not during backward as the paper and DeepSpeed do, so each rank
//   still holds the full gradients at the end of backward, when the activations are freed: the
//   total counts max(sharded gradients + activations, full gradients) beside weights and state.
// - Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
//   Models", §4.1): a GPT layer keeps sbh(34 + 5as/h) bytes in 16-bit precision. Their accounting
//   redone for a Qwen2 layer (RMSNorm, SwiGLU MLP of width I, no dropout, fused attention that
//   keeps no s×s matrix), counting each saved tensor, in elements per token:
//     attention: norm input h, norm output h, q h, k h and v h (repeat_kv expands GQA's keys and
//                values to all heads before attention, as HF does), attention output h   = 6h
//     MLP:       norm input h, norm output h, gate I, up I, silu(gate) I, silu(gate)·up I = 2h + 4I
//   so 8h + 4I elements per token and layer. With checkpointing a layer keeps only its input (h)
//   and one layer's full set exists at a time, while it is rerun.
// - The output layer: bf16 logits and the fp32 log-softmax cross-entropy keeps, 2 + 4 bytes per
//   vocabulary entry and token (Korthikanti et al. count the same 4sbv for the fp32 softmax).
import type { ResolvedQwen2Config } from "../models/qwen2.js";
import type { ResolvedVisionConfig } from "../models/qwen2_5_vl.js";
import type { ResolvedLlamaConfig } from "../models/llama.js";
import type { ResolvedInternLM2Config } from "../models/internlm2.js";
import type { ResolvedVitConfig } from "../models/vit.js";
import type { ResolvedInternVitConfig } from "../models/intern_vit.js";

/**
 * What the estimate needs of a language model: the shapes of a Llama-style decoder (Qwen2, Llama,
 * InternLM2: attention with GQA, SwiGLU MLP, two RMSNorms a layer) and the biases its family adds.
 */
export interface TextShape {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /** Bias elements per layer (Qwen2: q, k and v; Llama and InternLM2 as their config says). */
  biasPerLayer: number;
}

/** A vision tower with the projector into the LM: its block shapes (for activations) and its exact parameter count. */
export interface VisionShape {
  hiddenSize: number;
  intermediateSize: number;
  depth: number;
  /** Tower and projector parameters, counted from the family's modules. */
  parameters: number;
}

/** What the estimate needs of a model: a language model, and a vision tower if any. */
export interface ModelShape {
  text: TextShape;
  vision: VisionShape | null;
}

export interface ParameterCount {
  text: number;
  vision: number;
  total: number;
  /** Per text decoder layer (every layer has the same shapes). */
  perTextLayer: number;
}

/** A decoder's shape, by family. */
export function qwen2TextShape(t: ResolvedQwen2Config): TextShape {
  const kv = t.numKeyValueHeads * t.headDim;
  return { ...decoderDims(t), biasPerLayer: t.numAttentionHeads * t.headDim + 2 * kv };
}
export function llamaTextShape(t: ResolvedLlamaConfig): TextShape {
  const q = t.numAttentionHeads * t.headDim, kv = t.numKeyValueHeads * t.headDim;
  return { ...decoderDims(t), biasPerLayer: (t.attentionBias ? q + 2 * kv + t.hiddenSize : 0) + (t.mlpBias ? 2 * t.intermediateSize + t.hiddenSize : 0) };
}
export function internLM2TextShape(t: ResolvedInternLM2Config): TextShape {
  const q = t.numAttentionHeads * t.headDim, kv = t.numKeyValueHeads * t.headDim;
  return { ...decoderDims(t), biasPerLayer: t.bias ? q + 2 * kv + t.hiddenSize : 0 }; // wqkv and wo
}
function decoderDims(t: Omit<TextShape, "biasPerLayer">): Omit<TextShape, "biasPerLayer"> {
  return {
    hiddenSize: t.hiddenSize, intermediateSize: t.intermediateSize, numHiddenLayers: t.numHiddenLayers, numAttentionHeads: t.numAttentionHeads,
    numKeyValueHeads: t.numKeyValueHeads, headDim: t.headDim, vocabSize: t.vocabSize, tieWordEmbeddings: t.tieWordEmbeddings,
  };
}

const linear = (i: number, o: number, bias = true) => i * o + (bias ? o : 0);
const layerNorm = (d: number) => 2 * d;

/**
 * The Qwen2.5-VL tower: Conv3d patch embedding without bias, blocks with biased qkv/proj and MLP
 * (gate, up, down), two RMSNorms, and the 2×2 PatchMerger (an RMSNorm, then two linears) into the LM.
 */
export function qwen2_5_vlVisionShape(v: ResolvedVisionConfig): VisionShape {
  const d = v.hiddenSize, vi = v.intermediateSize;
  const block = linear(d, 3 * d) + linear(d, d) + 2 * linear(d, vi) + linear(vi, d) + 2 * d;
  const merged = d * v.spatialMergeSize ** 2;
  const merger = d + linear(merged, merged) + linear(merged, v.outHiddenSize);
  return { hiddenSize: d, intermediateSize: vi, depth: v.depth, parameters: v.patchDim * d + v.depth * block + merger };
}

/** LLaVA's CLIP tower (class token, unbiased patch conv, positions, pre- and post-LayerNorm, biased layers) and its mlp2x_gelu projector. */
export function llavaVisionShape(v: ResolvedVitConfig, textHidden: number, projectorBias: boolean): VisionShape {
  const d = v.hiddenSize, vi = v.intermediateSize;
  if (v.variant !== "clip" || v.useHead) throw new Error(`plan: a LLaVA vision tower of variant ${v.variant}${v.useHead ? " with a pooling head" : ""} is not one plan counts (CLIP)`);
  const embeddings = d + v.numChannels * v.patchSize ** 2 * d + v.numPositions * d;
  const layer = 4 * linear(d, d) + 2 * layerNorm(d) + linear(d, vi) + linear(vi, d);
  const projector = linear(d, textHidden, projectorBias) + linear(textHidden, textHidden, projectorBias);
  return { hiddenSize: d, intermediateSize: vi, depth: v.numHiddenLayers, parameters: embeddings + 2 * layerNorm(d) + v.numHiddenLayers * layer + projector };
}

/** InternVL's InternViT (class token, biased patch conv, positions, layer scales, qk norms if any) and its mlp1 projector after the pixel shuffle. */
export function internVLVisionShape(v: ResolvedInternVitConfig, textHidden: number, downsampleRatio: number): VisionShape {
  const d = v.hiddenSize, vi = v.intermediateSize;
  const norm = v.normType === "rms_norm" ? d : layerNorm(d);
  const embeddings = d + linear(v.numChannels * v.patchSize ** 2, d) + v.numPositions * d;
  const layer = linear(d, 3 * d, v.qkvBias) + (v.qkNormalization ? 2 * d : 0) + linear(d, d) + 2 * d + 2 * norm + linear(d, vi) + linear(vi, d);
  const shuffled = Math.round(d / downsampleRatio ** 2);
  const mlp1 = layerNorm(shuffled) + linear(shuffled, textHidden) + linear(textHidden, textHidden);
  return { hiddenSize: d, intermediateSize: vi, depth: v.numHiddenLayers, parameters: embeddings + v.numHiddenLayers * layer + mlp1 };
}

/**
 * Parameters counted from the shapes of MindsEye's (and HF's) modules: decoder layers (q/k/v/o,
 * the SwiGLU MLP, two RMSNorms, the family's biases), embeddings, the final norm, lm_head unless
 * tied; the vision tower and projector as its VisionShape counts them.
 */
export function countParameters(m: ModelShape): ParameterCount {
  const t = m.text;
  const h = t.hiddenSize, q = t.numAttentionHeads * t.headDim, kv = t.numKeyValueHeads * t.headDim, I = t.intermediateSize;
  const attention = h * q + 2 * h * kv + q * h;
  const perTextLayer = attention + 3 * h * I + 2 * h + t.biasPerLayer;
  const embeddings = t.vocabSize * h * (t.tieWordEmbeddings ? 1 : 2);
  const text = t.numHiddenLayers * perTextLayer + h + embeddings;
  const vision = m.vision?.parameters ?? 0;
  return { text, vision, total: text + vision, perTextLayer };
}

export interface PlanOptions {
  /** Data-parallel GPUs. */
  worldSize: number;
  /** 0: plain DDP; 1: optimizer state sharded; 2: gradients too (what train.zero_stage 1 and 2 do). */
  zero: 0 | 1 | 2;
  /** Rerun each layer in backward (torch.checkpoint per layer). */
  checkpointing: boolean;
  /** LoRA rank on the language model's q/k/v/o and gate/up/down projections (base frozen, the vision tower too), or null for full fine-tuning. */
  loraRank: number | null;
  /** Sequences per GPU per micro-step. */
  batchSize: number;
  /** Tokens per sequence (image tokens included). */
  seqLen: number;
  /** Vision patches per sequence (before the 2×2 merge); 0 without images. */
  imagePatches: number;
  /** Weights and activations in bfloat16 (with fp32 master weights) or float32. */
  dtype: "bfloat16" | "float32";
}

export interface PlanRow {
  weights: number;
  /** Gradients held from the reduction on (ZeRO-2: this rank's shard). */
  gradients: number;
  /** Gradients held at the end of backward, before the reduction: full-size at every stage (see the header). */
  unreducedGradients: number;
  optimizer: number;
  activations: number;
  total: number;
  /** Parameters that train (all, or the LoRA adapters). */
  trainable: number;
}

/** LoRA adapter parameters: r·(in + out) per adapted projection. */
export function loraParameters(t: TextShape, r: number): number {
  const h = t.hiddenSize, kv = t.numKeyValueHeads * t.headDim, I = t.intermediateSize;
  const perLayer = r * (h + h) + 2 * r * (h + kv) + r * (h + h) + 2 * r * (h + I) + r * (I + h);
  return t.numHiddenLayers * perLayer;
}

/** Saved activation elements per token of one layer (8h + 4I, see the header). */
export function layerActivationElements(hidden: number, intermediate: number): number {
  return 8 * hidden + 4 * intermediate;
}

/** Bytes per GPU, by part. */
export function estimateMemory(m: ModelShape, o: PlanOptions): PlanRow {
  const params = countParameters(m);
  const bf16 = o.dtype === "bfloat16";
  const wBytes = bf16 ? 2 : 4;
  const lora = o.loraRank === null ? 0 : loraParameters(m.text, o.loraRank);
  const trainable = o.loraRank === null ? params.total : lora;
  const N = o.worldSize;
  // 1. model states (ZeRO §3.1): weights replicated; gradients and AdamW state per trained parameter.
  const weights = (params.total + lora) * wBytes;
  const unreducedGradients = trainable * wBytes;
  const gradients = unreducedGradients / (o.zero >= 2 ? N : 1);
  const optimizer = (trainable * (bf16 ? 12 : 8)) / (o.zero >= 1 ? N : 1);
  // 2. activations (Korthikanti et al. §4.1, redone for Qwen2 in the header), per micro-batch.
  const t = m.text;
  const tokens = o.batchSize * o.seqLen;
  const layer = layerActivationElements(t.hiddenSize, t.intermediateSize);
  const textElems = o.checkpointing ? t.numHiddenLayers * t.hiddenSize + layer : t.numHiddenLayers * layer;
  let act = tokens * textElems * wBytes;
  act += tokens * t.vocabSize * (wBytes + 4); // logits + fp32 log-softmax
  // The tower keeps activations only when it trains (LoRA here adapts the language model alone).
  if (m.vision !== null && o.loraRank === null && o.imagePatches > 0) {
    const v = m.vision;
    const patches = o.batchSize * o.imagePatches;
    const block = layerActivationElements(v.hiddenSize, v.intermediateSize);
    act += patches * (o.checkpointing ? v.depth * v.hiddenSize + block : v.depth * block) * wBytes;
  }
  // the peak: during backward (activations, gradients) or at its end (full gradients, activations freed)
  const total = weights + optimizer + Math.max(gradients + act, unreducedGradients);
  return { weights, gradients, unreducedGradients, optimizer, activations: act, total, trainable };
}

/**
 * Whether a row fits a GPU of `gpuBytes`, keeping 10% back for the CUDA context, the caching
 * allocator's fragmentation and temporary buffers (a rule of thumb, not a measurement).
 */
export function fits(row: PlanRow, gpuBytes: number): boolean {
  return row.total <= 0.9 * gpuBytes;
}

/** "80GiB", "80 GB", "141e9" -> bytes. */
export function parseBytes(text: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i.exec(text);
  if (m === null) throw new RangeError(`cannot read ${JSON.stringify(text)} as a size (e.g. 80GiB, 80GB or 85899345920)`);
  const unit = (m[2] ?? "B").toLowerCase();
  const scale: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };
  return Number(m[1]) * scale[unit]!;
}
