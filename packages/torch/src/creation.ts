// Tensor creation and the free functions of the torch namespace (torch.cat, torch.where, ...).
import { native } from "./native.js";
import { type DType, type Device, ELEMENT_SIZE, dtypeCode, dtypeOfTypedArray } from "./dtype.js";
import { Tensor, type TensorLike } from "./tensor.js";
import type { Generator } from "./random.js";

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}
export interface RandomOptions extends CreateOptions {
  generator?: Generator;
}

const dt = (o: CreateOptions, fallback: DType = "float32"): number => dtypeCode(o.dtype ?? fallback);
const dev = (o: CreateOptions): string => o.device ?? "cpu";
const rg = (o: CreateOptions): boolean => o.requiresGrad ?? false;

function checkShape(shape: number[], fn: string): number[] {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new RangeError(`${fn}: shape [${shape.join(", ")}] must hold non-negative integers`);
  }
  return shape;
}

export function zeros(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native.zeros(checkShape(shape, "zeros"), dt(o), dev(o), rg(o)));
}
export function ones(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native.ones(checkShape(shape, "ones"), dt(o), dev(o), rg(o)));
}
/** Uninitialised memory, as torch.empty. */
export function empty(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native.empty(checkShape(shape, "empty"), dt(o), dev(o), rg(o)));
}
/** A tensor filled with value: float32 by default (a JS number cannot say 7 vs 7.0), bool for booleans. */
export function full(shape: number[], value: number | boolean, o: CreateOptions = {}): Tensor {
  const fallback: DType = typeof value === "boolean" ? "bool" : "float32";
  return new Tensor(native.full(checkShape(shape, "full"), value, dt(o, fallback), dev(o), rg(o)));
}
/** Standard normal samples. */
export function randn(shape: number[], o: RandomOptions = {}): Tensor {
  return new Tensor(native.randn(checkShape(shape, "randn"), dt(o), dev(o), rg(o), o.generator?._g ?? null));
}
/** Uniform samples in [0, 1). */
export function rand(shape: number[], o: RandomOptions = {}): Tensor {
  return new Tensor(native.rand(checkShape(shape, "rand"), dt(o), dev(o), rg(o), o.generator?._g ?? null));
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: number[], o: RandomOptions = {}): Tensor {
  return new Tensor(native.randint(low, high, checkShape(shape, "randint"), dt(o, "int64"), dev(o), o.generator?._g ?? null));
}
export function randperm(n: number, o: { generator?: Generator } = {}): Tensor {
  return new Tensor(native.randperm(n, o.generator?._g ?? null));
}
/** torch.arange(end) or torch.arange(start, end, step); int64 unless a bound is fractional. */
export function arange(startOrEnd: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  const [s, e] = end === undefined ? [0, startOrEnd] : [startOrEnd, end];
  const integral = Number.isInteger(s) && Number.isInteger(e) && Number.isInteger(step);
  return new Tensor(native.arange(s, e, step, dt(o, integral ? "int64" : "float32"), dev(o), rg(o)));
}
export function eye(n: number, m = n, o: CreateOptions = {}): Tensor {
  return new Tensor(native.eye(n, m, dt(o), dev(o), rg(o)));
}
export function zerosLike(t: Tensor, o: CreateOptions = {}): Tensor { return zeros(t.shape, like(t, o)); }
export function onesLike(t: Tensor, o: CreateOptions = {}): Tensor { return ones(t.shape, like(t, o)); }
export function emptyLike(t: Tensor, o: CreateOptions = {}): Tensor { return empty(t.shape, like(t, o)); }
export function fullLike(t: Tensor, value: number, o: CreateOptions = {}): Tensor { return full(t.shape, value, like(t, o)); }
export function randnLike(t: Tensor, o: RandomOptions = {}): Tensor { return randn(t.shape, { ...like(t, o), generator: o.generator }); }
export function randLike(t: Tensor, o: RandomOptions = {}): Tensor { return rand(t.shape, { ...like(t, o), generator: o.generator }); }
function like(t: Tensor, o: CreateOptions): CreateOptions {
  return { dtype: o.dtype ?? t.dtype, device: o.device ?? t.device, requiresGrad: o.requiresGrad ?? false };
}

type Nested = number | boolean | Nested[];

/**
 * A tensor from data: a TypedArray (with its shape), or nested arrays of numbers.
 * ```ts
 * torch.tensor([[1, 2], [3, 4]])                        // float32 [2, 2]
 * torch.tensor(new Int32Array([1, 2, 3]), { shape: [3] })
 * torch.tensor([0, 2, 1], { dtype: "int64" })
 * ```
 */
export function tensor(data: Nested | ArrayBufferView, o: CreateOptions & { shape?: number[] } = {}): Tensor {
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    const dtype = o.dtype ?? dtypeOfTypedArray(data);
    const shape = o.shape ?? [data.byteLength / ELEMENT_SIZE[dtype]];
    t = new Tensor(native.fromBytes(data, shape, dtypeCode(dtype)));
  } else {
    const shape: number[] = [];
    let probe: Nested = data;
    while (Array.isArray(probe)) { shape.push(probe.length); probe = probe[0] as Nested; }
    const flat = (Array.isArray(data) ? (data as unknown[]).flat(Infinity) : [data]) as (number | boolean)[];
    const expected = shape.reduce((a, b) => a * b, 1);
    if (flat.length !== expected) throw new RangeError(`tensor(): ragged nested array (shape [${shape.join(", ")}] needs ${expected} elements, got ${flat.length})`);
    const dtype: DType = o.dtype ?? (typeof probe === "boolean" ? "bool" : "float32");
    if (dtype === "bfloat16" || dtype === "float16") {
      // Built in float32, then rounded natively (round-to-nearest-even, as torch does).
      const f = new Tensor(native.fromBytes(encode(flat, "float32"), o.shape ?? shape, dtypeCode("float32")));
      t = f.to({ dtype });
      f.dispose();
    } else {
      t = new Tensor(native.fromBytes(encode(flat, dtype), o.shape ?? shape, dtypeCode(dtype)));
    }
  }
  if (o.device !== undefined && o.device !== "cpu") {
    const moved = t.to({ device: o.device });
    t.dispose();
    t = moved;
  }
  if (o.requiresGrad) t.requiresGrad_(true);
  return t;
}

function encode(flat: (number | boolean)[], dtype: DType): ArrayBufferView {
  const nums = flat.map(Number);
  switch (dtype) {
    case "float32": return Float32Array.from(nums);
    case "float64": return Float64Array.from(nums);
    case "int64": return BigInt64Array.from(nums, (x) => BigInt(Math.trunc(x)));
    case "int32": return Int32Array.from(nums);
    case "int16": return Int16Array.from(nums);
    case "int8": return Int8Array.from(nums);
    case "uint8": case "bool": return Uint8Array.from(nums, (x) => (dtype === "bool" ? (x ? 1 : 0) : x));
    case "bfloat16": case "float16": throw new Error("unreachable: 16-bit floats are converted from float32");
  }
}

/** Raw little-endian bytes as a tensor (safetensors loading). The bytes are copied. */
export function fromBytes(bytes: Uint8Array, shape: number[], dtype: DType): Tensor {
  return new Tensor(native.fromBytes(bytes, shape, dtypeCode(dtype)));
}

const hs = (ts: Tensor[]) => ts.map((t) => t._h);
const hl = (x: TensorLike) => (x instanceof Tensor ? x._h : x);

export function cat(tensors: Tensor[], dim = 0): Tensor { return new Tensor(native.cat(hs(tensors), dim)); }
export function stack(tensors: Tensor[], dim = 0): Tensor { return new Tensor(native.stack(hs(tensors), dim)); }
/** cond ? a : b elementwise; a and b may be numbers. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  return new Tensor(native.where(cond._h, hl(a), hl(b), (a instanceof Tensor ? 0 : 1) | (b instanceof Tensor ? 0 : 2)));
}
/** Einstein summation, e.g. einsum("bij,bjk->bik", a, b). */
export function einsum(equation: string, ...tensors: Tensor[]): Tensor { return new Tensor(native.einsum(equation, hs(tensors))); }
export function matmul(a: Tensor, b: Tensor): Tensor { return a.matmul(b); }
export function bmm(a: Tensor, b: Tensor): Tensor { return a.bmm(b); }
/** torch.linalg: the few linear-algebra routines the framework needs. */
export const linalg = {
  /** Singular values of a [.., M, N] matrix, descending (differentiable). */
  svdvals: (a: Tensor): Tensor => new Tensor(native.svdvals(a._h)),
};
export function outer(a: Tensor, b: Tensor): Tensor { return new Tensor(native.outer(a._h, b._h)); }
export function maximum(a: Tensor, b: TensorLike): Tensor { return a.maximum(b); }
export function minimum(a: Tensor, b: TensorLike): Tensor { return a.minimum(b); }
/** base ** exponent for a number base (torch.pow(2, t)). */
export function pow(base: TensorLike, exponent: TensorLike): Tensor {
  if (base instanceof Tensor) return base.pow(exponent);
  if (exponent instanceof Tensor) return new Tensor(native.powScalarBase(exponent._h, Number(base)));
  throw new TypeError("pow: at least one argument must be a tensor");
}
export function triu(t: Tensor, diagonal = 0): Tensor { return t.triu(diagonal); }
export function tril(t: Tensor, diagonal = 0): Tensor { return t.tril(diagonal); }
export function unique(t: Tensor, opts: { sorted?: boolean } = {}): { values: Tensor; inverse: Tensor } {
  const [v, i] = native.unique(t._h, opts.sorted ?? true);
  return { values: new Tensor(v), inverse: new Tensor(i) };
}
export function nonzero(t: Tensor): Tensor { return new Tensor(native.nonzero(t._h)); }
export function searchsorted(sortedSequence: Tensor, values: Tensor, opts: { right?: boolean } = {}): Tensor {
  return new Tensor(native.searchsorted(sortedSequence._h, values._h, opts.right ?? false));
}
export function multinomial(probs: Tensor, numSamples: number, opts: { replacement?: boolean; generator?: Generator } = {}): Tensor {
  return new Tensor(native.multinomial(probs._h, numSamples, opts.replacement ?? false, opts.generator?._g ?? null));
}
export function bernoulli(t: Tensor, p: number, opts: { generator?: Generator } = {}): Tensor {
  return new Tensor(native.bernoulli(t._h, p, opts.generator?._g ?? null));
}

/** Live native tensors held by JavaScript, and the bytes of the distinct storages they reference. */
export function memory(): { tensors: number; bytes: number } { return native.memory(); }
