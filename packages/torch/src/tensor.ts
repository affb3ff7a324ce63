// The Tensor class: PyTorch's tensor methods with TypeScript casing, each one native call.
import { native, BINARY, UNARY, type Handle } from "./native.js";
import { type DType, type Device, type TypedArray, dtypeCode, dtypeFromCode, typedArrayFor, isFloatingPoint } from "./dtype.js";
import { track, setOwnedPredicate } from "./scope.js";

/** A tensor or a number (numbers act as Python scalars in type promotion). */
export type TensorLike = Tensor | number | boolean;

const h = (x: TensorLike): Handle | number | boolean => (x instanceof Tensor ? x._h : x);
/** Bit `bit` set when x is a scalar (handles are numbers too; see native/ops.cc). */
const scalarBit = (x: TensorLike, bit: number): number => (x instanceof Tensor ? 0 : 1 << bit);

// The safety net for tensors never disposed: when a Tensor object is garbage-collected, its
// native tensor is freed. dispose() unregisters, so disposed tensors leave nothing pending.
const finalizer = new FinalizationRegistry<Handle>((handle) => native.dispose(handle));

function normDims(dim: number | number[] | undefined | null): number[] | null {
  if (dim === undefined || dim === null) return null;
  return typeof dim === "number" ? [dim] : dim;
}

export interface BackwardOptions { retainGraph?: boolean; createGraph?: boolean }
/** @internal Set by checkpoint.ts: runs Tensor.backward and then reruns the checkpointed segments it reached. */
let backwardRunner: ((t: Tensor, gradient: Tensor | undefined, opts: BackwardOptions) => void) | null = null;
/** @internal */
export function setBackwardRunner(run: (t: Tensor, gradient: Tensor | undefined, opts: BackwardOptions) => void): void { backwardRunner = run; }

export interface ReduceOptions {
  keepdim?: boolean;
  dtype?: DType;
}

export class Tensor {
  /** @internal The native handle. */
  _h: Handle;

  /** @internal Wraps a handle; the innermost torch.scope now owns the tensor. */
  constructor(handle: Handle, tracked = true) {
    this._h = handle;
    finalizer.register(this, handle, this);
    if (tracked) track(this);
  }

  /** @internal Points this object at another native tensor, freeing the old one (Module.to). */
  _replaceHandle(handle: Handle): void {
    finalizer.unregister(this);
    native.dispose(this._h);
    this._h = handle;
    finalizer.register(this, handle, this);
  }

  // ----------------------------------------------------------------------------------------
  // Properties

  get shape(): number[] { return native.shape(this._h); }
  get dtype(): DType { return dtypeFromCode(native.dtype(this._h)); }
  get device(): Device { return native.device(this._h); }
  get ndim(): number { return native.shape(this._h).length; }
  get requiresGrad(): boolean { return native.requiresGrad(this._h); }
  get isLeaf(): boolean { return native.isLeaf(this._h); }
  get gradFn(): string | null { return native.gradFnName(this._h); }
  get disposed(): boolean { return native.isDisposed(this._h); }
  get isFloatingPoint(): boolean { return isFloatingPoint(this.dtype); }
  size(dim?: number): number {
    const s = this.shape;
    if (dim === undefined) return s.reduce((a, b) => a * b, 1);
    return s[dim < 0 ? s.length + dim : dim]!;
  }
  numel(): number { return native.numel(this._h); }
  stride(): number[] { return native.strides(this._h); }
  isContiguous(): boolean { return native.isContiguous(this._h); }
  toString(): string { return native.toString(this._h); }

  /** Frees the native tensor now (a view keeps its base's storage alive until it is freed too). */
  dispose(): void {
    finalizer.unregister(this);
    native.dispose(this._h);
  }

  // ----------------------------------------------------------------------------------------
  // Conversion

  /** The value of a one-element tensor. */
  item(): number {
    const v = native.item(this._h);
    return typeof v === "boolean" ? Number(v) : v;
  }
  /** A copy of the elements, row-major, in the dtype's TypedArray (16-bit floats as raw bits). */
  toTypedArray(): TypedArray { return typedArrayFor(this.dtype, native.toBytes(this._h)); }
  /** Float32 values as a Float32Array (converting any dtype). */
  toFloat32Array(): Float32Array {
    if (this.dtype === "float32") return this.toTypedArray() as Float32Array;
    const f = this.to({ dtype: "float32" });
    try { return f.toTypedArray() as Float32Array; } finally { f.dispose(); }
  }
  /** Elements as a nested JS array of numbers (for small tensors, tests and printing). */
  tolist(): unknown {
    const flat = Array.from(this.toFloat64Values());
    const shape = this.shape;
    const build = (d: number, off: number): unknown => {
      if (d === shape.length) return flat[off];
      const stride = shape.slice(d + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: shape[d]! }, (_, i) => build(d + 1, off + i * stride));
    };
    return build(0, 0);
  }
  /** Elements as a flat Float64 array (int64 exact up to 2^53). */
  toFloat64Values(): Float64Array {
    const a = this.toTypedArray();
    if (a instanceof Float64Array) return a;
    if (a instanceof BigInt64Array) return Float64Array.from(a, (x) => Number(x));
    if (a instanceof Uint16Array) return Float64Array.from(this.toFloat32Array());
    return Float64Array.from(a as ArrayLike<number>);
  }
  /** Raw bytes, row-major, little-endian (what safetensors stores). */
  toBytes(): Uint8Array { return new Uint8Array(native.toBytes(this._h)); }

  to(target: Device | DType | { dtype?: DType; device?: Device; copy?: boolean }): Tensor {
    let dtype: DType | undefined, device: Device | undefined, copy = false;
    if (typeof target === "string") {
      if (target === "cpu" || target.startsWith("cuda")) device = target;
      else dtype = target as DType;
    } else {
      ({ dtype, device } = target);
      copy = target.copy ?? false;
    }
    return new Tensor(native.to(this._h, dtype === undefined ? null : dtypeCode(dtype), device ?? null, copy));
  }
  float(): Tensor { return this.to({ dtype: "float32" }); }
  double(): Tensor { return this.to({ dtype: "float64" }); }
  long(): Tensor { return this.to({ dtype: "int64" }); }
  bool(): Tensor { return this.to({ dtype: "bool" }); }
  cpu(): Tensor { return this.to({ device: "cpu" }); }
  cuda(index = 0): Tensor { return this.to({ device: `cuda:${index}` }); }
  clone(): Tensor { return new Tensor(native.unary(UNARY.clone!, this._h)); }
  contiguous(): Tensor { return new Tensor(native.unary(UNARY.contiguous!, this._h)); }

  // ----------------------------------------------------------------------------------------
  // Autograd

  get grad(): Tensor | null {
    const g = native.grad(this._h);
    return g === null ? null : new Tensor(g);
  }
  set grad(g: Tensor | null) { native.setGrad(this._h, g === null ? null : g._h); }
  /** Sets requiresGrad in place and returns this tensor. */
  requiresGrad_(value = true): this { native.setRequiresGrad(this._h, value); return this; }
  detach(): Tensor { return new Tensor(native.detach(this._h)); }
  retainGrad(): void { native.retainGrad(this._h); }
  /** Accumulates gradients of this tensor into the leaves' .grad (a scalar, or pass `gradient`). */
  backward(gradient?: Tensor, opts: BackwardOptions = {}): void {
    if (backwardRunner !== null) { backwardRunner(this, gradient, opts); return; }
    native.backward(this._h, gradient ? gradient._h : null, opts.retainGraph ?? false, opts.createGraph ?? false);
  }

  // ----------------------------------------------------------------------------------------
  // Elementwise

  add(other: TensorLike, alpha?: number): Tensor {
    if (alpha !== undefined && alpha !== 1 && other instanceof Tensor) return new Tensor(native.addScaled(this._h, other._h, alpha));
    return bin("add", this, alpha === undefined || typeof other !== "number" ? other : other * alpha);
  }
  sub(other: TensorLike, alpha?: number): Tensor {
    if (alpha !== undefined && alpha !== 1 && other instanceof Tensor) return new Tensor(native.addScaled(this._h, other._h, -alpha));
    return bin("sub", this, alpha === undefined || typeof other !== "number" ? other : other * alpha);
  }
  mul(other: TensorLike): Tensor { return bin("mul", this, other); }
  /** True division; roundingMode "trunc" or "floor" as torch.div. */
  div(other: TensorLike, roundingMode?: "trunc" | "floor"): Tensor {
    return bin(roundingMode === undefined ? "div" : roundingMode === "trunc" ? "divTrunc" : "divFloor", this, other);
  }
  pow(exponent: TensorLike): Tensor { return bin("pow", this, exponent); }
  remainder(other: TensorLike): Tensor { return bin("remainder", this, other); }
  fmod(other: TensorLike): Tensor { return bin("fmod", this, other); }
  floorDivide(other: TensorLike): Tensor { return bin("floorDivide", this, other); }
  maximum(other: TensorLike): Tensor { return bin("maximum", this, other); }
  minimum(other: TensorLike): Tensor { return bin("minimum", this, other); }
  atan2(other: TensorLike): Tensor { return bin("atan2", this, other); }
  eq(other: TensorLike): Tensor { return bin("eq", this, other); }
  ne(other: TensorLike): Tensor { return bin("ne", this, other); }
  lt(other: TensorLike): Tensor { return bin("lt", this, other); }
  le(other: TensorLike): Tensor { return bin("le", this, other); }
  gt(other: TensorLike): Tensor { return bin("gt", this, other); }
  ge(other: TensorLike): Tensor { return bin("ge", this, other); }
  logicalAnd(other: TensorLike): Tensor { return bin("logicalAnd", this, other); }
  logicalOr(other: TensorLike): Tensor { return bin("logicalOr", this, other); }
  logicalXor(other: TensorLike): Tensor { return bin("logicalXor", this, other); }
  bitwiseAnd(other: TensorLike): Tensor { return bin("bitwiseAnd", this, other); }
  bitwiseOr(other: TensorLike): Tensor { return bin("bitwiseOr", this, other); }

  exp(): Tensor { return un("exp", this); }
  log(): Tensor { return un("log", this); }
  log2(): Tensor { return un("log2", this); }
  log1p(): Tensor { return un("log1p", this); }
  expm1(): Tensor { return un("expm1", this); }
  sqrt(): Tensor { return un("sqrt", this); }
  rsqrt(): Tensor { return un("rsqrt", this); }
  abs(): Tensor { return un("abs", this); }
  neg(): Tensor { return un("neg", this); }
  sign(): Tensor { return un("sign", this); }
  reciprocal(): Tensor { return un("reciprocal", this); }
  square(): Tensor { return un("square", this); }
  sin(): Tensor { return un("sin", this); }
  cos(): Tensor { return un("cos", this); }
  tanh(): Tensor { return un("tanh", this); }
  sigmoid(): Tensor { return un("sigmoid", this); }
  relu(): Tensor { return un("relu", this); }
  erf(): Tensor { return un("erf", this); }
  floor(): Tensor { return un("floor", this); }
  ceil(): Tensor { return un("ceil", this); }
  round(): Tensor { return un("round", this); }
  trunc(): Tensor { return un("trunc", this); }
  logicalNot(): Tensor { return un("logicalNot", this); }
  bitwiseNot(): Tensor { return un("bitwiseNot", this); }
  isnan(): Tensor { return un("isnan", this); }
  isinf(): Tensor { return un("isinf", this); }
  isfinite(): Tensor { return un("isfinite", this); }
  clamp(min?: number | null, max?: number | null): Tensor { return new Tensor(native.clamp(this._h, min ?? null, max ?? null)); }
  clampMin(min: number): Tensor { return this.clamp(min, null); }
  clampMax(max: number): Tensor { return this.clamp(null, max); }

  // ----------------------------------------------------------------------------------------
  // In place (for optimizers and initialisers; they do not record a graph on leaves)

  add_(other: TensorLike, alpha?: number): this { native.binaryInplace(BINARY.add!, this._h, h(other), alpha ?? null, scalarBit(other, 0)); return this; }
  sub_(other: TensorLike, alpha?: number): this { native.binaryInplace(BINARY.sub!, this._h, h(other), alpha ?? null, scalarBit(other, 0)); return this; }
  mul_(other: TensorLike): this { native.binaryInplace(BINARY.mul!, this._h, h(other), null, scalarBit(other, 0)); return this; }
  div_(other: TensorLike): this { native.binaryInplace(BINARY.div!, this._h, h(other), null, scalarBit(other, 0)); return this; }
  pow_(other: TensorLike): this { native.binaryInplace(BINARY.pow!, this._h, h(other), null, scalarBit(other, 0)); return this; }
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this { native.addcmul_(this._h, t1._h, t2._h, value); return this; }
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this { native.addcdiv_(this._h, t1._h, t2._h, value); return this; }
  lerp_(end: Tensor, weight: number): this { native.lerp_(this._h, end._h, weight); return this; }
  sqrt_(): this { native.unary(UNARY.sqrt_!, this._h); return this; }
  exp_(): this { native.unary(UNARY.exp_!, this._h); return this; }
  erfinv_(): this { native.unary(UNARY.erfinv_!, this._h); return this; }
  zero_(): this { native.unary(UNARY.zero_!, this._h); return this; }
  fill_(value: number | boolean): this { native.fill_(this._h, value); return this; }
  copy_(src: Tensor): this { native.copy_(this._h, src._h); return this; }
  clamp_(min?: number | null, max?: number | null): this { native.clamp_(this._h, min ?? null, max ?? null); return this; }
  maskedFill_(mask: Tensor, value: number | boolean): this { native.maskedFill_(this._h, mask._h, value); return this; }
  uniform_(a = 0, b = 1, generator?: { _g: import("./native.js").GeneratorHandle }): this {
    native.uniform_(this._h, a, b, generator ? generator._g : null); return this;
  }
  normal_(mean = 0, std = 1, generator?: { _g: import("./native.js").GeneratorHandle }): this {
    native.normal_(this._h, mean, std, generator ? generator._g : null); return this;
  }
  indexPut_(indices: (Tensor | null)[], values: TensorLike, accumulate = false): this {
    native.indexPut_(this._h, indices.map((t) => (t === null ? null : t._h)), h(values), accumulate, scalarBit(values, 0));
    return this;
  }

  // ----------------------------------------------------------------------------------------
  // Reductions. dim: a dimension, a list, or none (all).

  sum(dim?: number | number[] | null, opts: ReduceOptions = {}): Tensor {
    return new Tensor(native.sum(this._h, normDims(dim), opts.keepdim ?? false, opts.dtype ? dtypeCode(opts.dtype) : null));
  }
  mean(dim?: number | number[] | null, opts: ReduceOptions = {}): Tensor {
    return new Tensor(native.mean(this._h, normDims(dim), opts.keepdim ?? false, opts.dtype ? dtypeCode(opts.dtype) : null));
  }
  prod(dim?: number | null, opts: ReduceOptions = {}): Tensor {
    return new Tensor(native.prod(this._h, normDims(dim), opts.keepdim ?? false, opts.dtype ? dtypeCode(opts.dtype) : null));
  }
  /** Variance; unbiased (Bessel's correction) by default, as torch.var. */
  var(dim?: number | number[] | null, opts: { keepdim?: boolean; unbiased?: boolean } = {}): Tensor {
    return new Tensor(native.var(this._h, normDims(dim), opts.keepdim ?? false, opts.unbiased ?? true));
  }
  std(dim?: number | number[] | null, opts: { keepdim?: boolean; unbiased?: boolean } = {}): Tensor {
    return new Tensor(native.std(this._h, normDims(dim), opts.keepdim ?? false, opts.unbiased ?? true));
  }
  /** Vector p-norm over dim (all elements by default), as torch.linalg.vector_norm. */
  norm(p = 2, dim?: number | number[] | null, opts: { keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.vectorNorm(this._h, p, normDims(dim), opts.keepdim ?? false));
  }
  logsumexp(dim: number | number[], opts: { keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.logsumexp(this._h, normDims(dim), opts.keepdim ?? false));
  }
  /** Max over all elements, or over dims without indices (torch.amax). */
  amax(dim?: number | number[] | null, opts: { keepdim?: boolean } = {}): Tensor {
    if (dim === undefined || dim === null) return new Tensor(native.maxAll(this._h));
    return new Tensor(native.amax(this._h, normDims(dim), opts.keepdim ?? false));
  }
  amin(dim?: number | number[] | null, opts: { keepdim?: boolean } = {}): Tensor {
    if (dim === undefined || dim === null) return new Tensor(native.minAll(this._h));
    return new Tensor(native.amin(this._h, normDims(dim), opts.keepdim ?? false));
  }
  /** torch.max: over all elements, or along dim returning { values, indices }. */
  max(): Tensor;
  max(dim: number, opts?: { keepdim?: boolean }): { values: Tensor; indices: Tensor };
  max(dim?: number, opts: { keepdim?: boolean } = {}): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(native.maxAll(this._h));
    const [v, i] = native.maxDim(this._h, dim, opts.keepdim ?? false);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  min(): Tensor;
  min(dim: number, opts?: { keepdim?: boolean }): { values: Tensor; indices: Tensor };
  min(dim?: number, opts: { keepdim?: boolean } = {}): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(native.minAll(this._h));
    const [v, i] = native.minDim(this._h, dim, opts.keepdim ?? false);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  argmax(dim?: number, opts: { keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.argmax(this._h, dim ?? null, opts.keepdim ?? false));
  }
  argmin(dim?: number, opts: { keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.argmin(this._h, dim ?? null, opts.keepdim ?? false));
  }
  all(dim?: number, opts: { keepdim?: boolean } = {}): Tensor { return new Tensor(native.all(this._h, dim ?? null, opts.keepdim ?? false)); }
  any(dim?: number, opts: { keepdim?: boolean } = {}): Tensor { return new Tensor(native.any(this._h, dim ?? null, opts.keepdim ?? false)); }
  cumsum(dim: number, opts: { dtype?: DType } = {}): Tensor {
    return new Tensor(native.cumsum(this._h, dim, opts.dtype ? dtypeCode(opts.dtype) : null));
  }
  topk(k: number, dim = -1, opts: { largest?: boolean; sorted?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = native.topk(this._h, k, dim, opts.largest ?? true, opts.sorted ?? true);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  sort(dim = -1, opts: { descending?: boolean; stable?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = native.sort(this._h, dim, opts.descending ?? false, opts.stable ?? false);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }

  // ----------------------------------------------------------------------------------------
  // Linear algebra

  matmul(other: Tensor): Tensor { return new Tensor(native.matmul(this._h, other._h)); }
  bmm(other: Tensor): Tensor { return new Tensor(native.bmm(this._h, other._h)); }
  mm(other: Tensor): Tensor { return new Tensor(native.mm(this._h, other._h)); }
  /** Transpose of a 2-D tensor (torch's .t() / .T). */
  t(): Tensor { return this.transpose(0, 1); }
  /** Swaps the last two dimensions (torch's .mT). */
  get mT(): Tensor { return this.transpose(-2, -1); }

  // ----------------------------------------------------------------------------------------
  // Shape

  view(...shape: number[]): Tensor { return new Tensor(native.view(this._h, shape)); }
  reshape(...shape: number[]): Tensor { return new Tensor(native.reshape(this._h, shape)); }
  permute(...dims: number[]): Tensor { return new Tensor(native.permute(this._h, dims)); }
  transpose(d0: number, d1: number): Tensor { return new Tensor(native.transpose(this._h, d0, d1)); }
  unsqueeze(dim: number): Tensor { return new Tensor(native.unsqueeze(this._h, dim)); }
  squeeze(dim?: number): Tensor { return new Tensor(native.squeeze(this._h, dim ?? null)); }
  expand(...shape: number[]): Tensor { return new Tensor(native.expand(this._h, shape)); }
  expandAs(other: Tensor): Tensor { return this.expand(...other.shape); }
  repeat(...reps: number[]): Tensor { return new Tensor(native.repeat(this._h, reps)); }
  flatten(startDim = 0, endDim = -1): Tensor { return new Tensor(native.flatten(this._h, startDim, endDim)); }
  flip(...dims: number[]): Tensor { return new Tensor(native.flip(this._h, dims)); }
  movedim(src: number | number[], dst: number | number[]): Tensor {
    return new Tensor(native.movedim(this._h, typeof src === "number" ? [src] : src, typeof dst === "number" ? [dst] : dst));
  }
  roll(shifts: number | number[], dims: number | number[]): Tensor {
    return new Tensor(native.roll(this._h, typeof shifts === "number" ? [shifts] : shifts, typeof dims === "number" ? [dims] : dims));
  }
  /** Splits into chunks of `size` (a number) or of the given sizes (a list), as torch.split. */
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] {
    return native.split(this._h, sizeOrSizes, dim).map((x) => new Tensor(x));
  }
  chunk(chunks: number, dim = 0): Tensor[] { return native.chunk(this._h, chunks, dim).map((x) => new Tensor(x)); }
  unbind(dim = 0): Tensor[] { return native.unbind(this._h, dim).map((x) => new Tensor(x)); }
  narrow(dim: number, start: number, length: number): Tensor { return new Tensor(native.narrow(this._h, dim, start, length)); }
  /** x[..., start:end:step, ...] along dim (negative and open ends as in Python). */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return new Tensor(native.slice(this._h, dim, start ?? null, end ?? null, step));
  }
  /** x[..., index, ...] along dim (removes the dimension). */
  select(dim: number, index: number): Tensor { return new Tensor(native.select(this._h, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return new Tensor(native.indexSelect(this._h, dim, index._h)); }
  gather(dim: number, index: Tensor): Tensor { return new Tensor(native.gather(this._h, dim, index._h)); }
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    return new Tensor(native.scatter(this._h, dim, index._h, src instanceof Tensor ? src._h : src, "none", scalarBit(src, 0)));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(native.scatter(this._h, dim, index._h, src._h, "add", 0));
  }
  maskedFill(mask: Tensor, value: TensorLike): Tensor { return new Tensor(native.maskedFill(this._h, mask._h, h(value), scalarBit(value, 0))); }
  /** Advanced indexing x[i0, i1, ...] by tensors; null keeps a dimension whole (":"). */
  index(indices: (Tensor | null)[]): Tensor {
    return new Tensor(native.index(this._h, indices.map((t) => (t === null ? null : t._h))));
  }
  indexPut(indices: (Tensor | null)[], values: TensorLike, accumulate = false): Tensor {
    return new Tensor(native.indexPut(this._h, indices.map((t) => (t === null ? null : t._h)), h(values), accumulate, scalarBit(values, 0)));
  }
  triu(diagonal = 0): Tensor { return new Tensor(native.triu(this._h, diagonal)); }
  tril(diagonal = 0): Tensor { return new Tensor(native.tril(this._h, diagonal)); }
}

function bin(name: string, a: Tensor, b: TensorLike): Tensor {
  return new Tensor(native.binary(BINARY[name]!, a._h, h(b), scalarBit(b, 1)));
}
function un(name: string, a: Tensor): Tensor {
  return new Tensor(native.unary(UNARY[name]!, a._h));
}

setOwnedPredicate((v: object): v is Tensor => v instanceof Tensor);
