// torch.nn.functional with TypeScript casing. Native ATen kernels throughout; rmsNorm and (on
// libtorch < 2.1) scaledDotProductAttention are composed natively from ATen ops.
import { native, UNARY } from "./native.js";
import { type DType, dtypeCode } from "./dtype.js";
import { Tensor } from "./tensor.js";

export type Reduction = "mean" | "sum" | "none";
const opt = (t: Tensor | null | undefined) => (t ? t._h : null);
const pair = (x: number | number[], n: number): number[] => (typeof x === "number" ? Array(n).fill(x) : x);

/** y = x Wᵀ + b. x [.., in], weight [out, in], bias [out] -> [.., out] */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(native.linear(x._h, weight._h, opt(bias)));
}
/** Rows of weight [V, D] at int64 indices [..] -> [.., D]. paddingIdx rows get no gradient. */
export function embedding(indices: Tensor, weight: Tensor, paddingIdx = -1): Tensor {
  return new Tensor(native.embedding(weight._h, indices._h, paddingIdx));
}
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return new Tensor(native.layerNorm(x._h, normalizedShape, opt(weight), opt(bias), eps));
}
/** RMSNorm over the last dim, computed in float32 and cast back before the weight (Qwen2/LLaMA). */
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  return new Tensor(native.rmsNorm(x._h, opt(weight), eps));
}

export function relu(x: Tensor): Tensor { return x.relu(); }
/** GELU, exact (erf) by default or the tanh approximation. */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  return new Tensor(native.unary(approximate === "tanh" ? UNARY.geluTanh! : UNARY.gelu!, x._h));
}
export function silu(x: Tensor): Tensor { return new Tensor(native.unary(UNARY.silu!, x._h)); }
export function sigmoid(x: Tensor): Tensor { return x.sigmoid(); }
export function tanh(x: Tensor): Tensor { return x.tanh(); }
export function logSigmoid(x: Tensor): Tensor { return new Tensor(native.unary(UNARY.logSigmoid!, x._h)); }
export function softplus(x: Tensor, beta = 1, threshold = 20): Tensor { return new Tensor(native.softplus(x._h, beta, threshold)); }
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor { return new Tensor(native.leakyRelu(x._h, negativeSlope)); }

export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(native.softmax(x._h, dim, dtype ? dtypeCode(dtype) : null));
}
export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(native.logSoftmax(x._h, dim, dtype ? dtypeCode(dtype) : null));
}

export interface CrossEntropyOptions {
  weight?: Tensor;
  reduction?: Reduction;
  /** Targets equal to this contribute nothing (and are excluded from the mean). Default -100. */
  ignoreIndex?: number;
  labelSmoothing?: number;
}
/** Cross-entropy of logits [N, C] (or [N, C, d..]) against class indices [N] (int64) or probabilities. */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return new Tensor(native.crossEntropy(logits._h, target._h, opt(o.weight), o.reduction ?? "mean", o.ignoreIndex ?? -100, o.labelSmoothing ?? 0));
}
export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return new Tensor(native.mseLoss(input._h, target._h, reduction));
}
export function smoothL1Loss(input: Tensor, target: Tensor, o: { reduction?: Reduction; beta?: number } = {}): Tensor {
  return new Tensor(native.smoothL1Loss(input._h, target._h, o.reduction ?? "mean", o.beta ?? 1));
}
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, o: { reduction?: Reduction; posWeight?: Tensor } = {}): Tensor {
  return new Tensor(native.binaryCrossEntropyWithLogits(input._h, target._h, o.reduction ?? "mean", opt(o.posWeight)));
}
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return new Tensor(native.cosineSimilarity(a._h, b._h, dim, eps));
}
/** x / max(‖x‖_p, eps) along dim. */
export function normalize(x: Tensor, o: { p?: number; dim?: number; eps?: number } = {}): Tensor {
  return new Tensor(native.normalize(x._h, o.p ?? 2, o.dim ?? 1, o.eps ?? 1e-12));
}
/** Zeroes elements with probability p and scales the rest by 1/(1-p) when training. */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return new Tensor(native.dropout(x._h, p, training));
}

export interface ConvOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
}
/** x [N, Cin, H, W], weight [Cout, Cin/groups, kH, kW] -> [N, Cout, H', W'] */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  return new Tensor(native.conv2d(x._h, weight._h, opt(bias), pair(o.stride ?? 1, 2), pair(o.padding ?? 0, 2), pair(o.dilation ?? 1, 2), o.groups ?? 1));
}
/** x [N, Cin, T, H, W], weight [Cout, Cin/groups, kT, kH, kW] -> [N, Cout, T', H', W'] */
export function conv3d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  return new Tensor(native.conv3d(x._h, weight._h, opt(bias), pair(o.stride ?? 1, 3), pair(o.padding ?? 0, 3), pair(o.dilation ?? 1, 3), o.groups ?? 1));
}
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | [number, number]): Tensor {
  return new Tensor(native.adaptiveAvgPool2d(x._h, pair(outputSize, 2)));
}
export function avgPool2d(x: Tensor, kernel: number | number[], stride?: number | number[], padding: number | number[] = 0): Tensor {
  return new Tensor(native.avgPool2d(x._h, pair(kernel, 2), pair(stride ?? kernel, 2), pair(padding, 2)));
}
export function maxPool2d(x: Tensor, kernel: number | number[], stride?: number | number[], padding: number | number[] = 0): Tensor {
  return new Tensor(native.maxPool2d(x._h, pair(kernel, 2), pair(stride ?? kernel, 2), pair(padding, 2)));
}
/** Resizes x [N, C, H, W] to size [H', W'] (nearest, bilinear, bicubic; antialias as torchvision). */
export function interpolate(
  x: Tensor, size: [number, number], o: { mode?: "nearest" | "bilinear" | "bicubic"; alignCorners?: boolean; antialias?: boolean } = {},
): Tensor {
  return new Tensor(native.interpolate(x._h, size, o.mode ?? "nearest", o.alignCorners ?? false, o.antialias ?? false));
}
/** Pads the last dims: pad = [left, right, top, bottom, ...] as torch.nn.functional.pad. */
export function pad(x: Tensor, padding: number[], mode: "constant" | "reflect" | "replicate" | "circular" = "constant", value = 0): Tensor {
  return new Tensor(native.pad(x._h, padding, mode, value));
}

export interface AttentionOptions {
  /** bool (true = may attend) or float (added to the scores), broadcastable to [.., L, S]. */
  attnMask?: Tensor | null;
  dropoutP?: number;
  isCausal?: boolean;
  scale?: number;
}
/** softmax(q kᵀ · scale + mask) v. q [.., L, E], k [.., S, E], v [.., S, Ev] -> [.., L, Ev] */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  return new Tensor(native.scaledDotProductAttention(q._h, k._h, v._h, opt(o.attnMask), o.dropoutP ?? 0, o.isCausal ?? false, o.scale ?? null));
}
