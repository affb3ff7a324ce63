// Loads the C++ addon. Everything native goes through this one typed object.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** An opaque reference to a native tensor: a slot number with a generation (see native/common.h). */
export type Handle = number & { readonly __handle: unique symbol };
/** An opaque reference to a native random generator. */
export type GeneratorHandle = { readonly __generator: unique symbol };

type H = Handle;
/** A tensor handle or a scalar; which operands are scalars travels in a bit mask. */
type Num = H | number | boolean;
type Dims = number[] | null;
type Opt<T> = T | null;

export interface BuildInfo {
  torchVersion: string;
  intraOpThreads: number;
  interOpThreads: number;
  parallelInfo: string;
  config: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  builtWithCuda: boolean;
  blasThreads: number | null;
  blasConfig: string | null;
  blasCore: string | null;
  libraries: string[];
}

/** The addon's exports (see native/*.cc for each function's argument order). */
export interface NativeAddon {
  // lifetime
  dispose(h: H): void;
  isDisposed(h: H): boolean;
  memory(): { tensors: number; bytes: number };
  // creation
  zeros(shape: number[], dtype: number, device: string, requiresGrad: boolean): H;
  ones(shape: number[], dtype: number, device: string, requiresGrad: boolean): H;
  empty(shape: number[], dtype: number, device: string, requiresGrad: boolean): H;
  full(shape: number[], value: number | boolean, dtype: number, device: string, requiresGrad: boolean): H;
  randn(shape: number[], dtype: number, device: string, requiresGrad: boolean, gen: Opt<GeneratorHandle>): H;
  rand(shape: number[], dtype: number, device: string, requiresGrad: boolean, gen: Opt<GeneratorHandle>): H;
  randint(low: number, high: number, shape: number[], dtype: number, device: string, gen: Opt<GeneratorHandle>): H;
  randperm(n: number, gen: Opt<GeneratorHandle>): H;
  arange(start: number, end: number, step: number, dtype: number, device: string, requiresGrad: boolean): H;
  eye(n: number, m: number, dtype: number, device: string, requiresGrad: boolean): H;
  fromBytes(bytes: ArrayBufferView, shape: number[], dtype: number): H;
  toBytes(h: H): ArrayBuffer;
  copyBytesInto(h: H, dst: Uint8Array, offset: number): number;
  item(h: H): number | boolean;
  // properties
  shape(h: H): number[];
  strides(h: H): number[];
  dtype(h: H): number;
  device(h: H): string;
  numel(h: H): number;
  isContiguous(h: H): boolean;
  toString(h: H): string;
  to(h: H, dtype: Opt<number>, device: Opt<string>, copy: boolean): H;
  alias(h: H): H;
  // autograd
  requiresGrad(h: H): boolean;
  setRequiresGrad(h: H, v: boolean): void;
  isLeaf(h: H): boolean;
  gradFnName(h: H): string | null;
  grad(h: H): H | null;
  setGrad(h: H, g: H | null): void;
  detach(h: H): H;
  retainGrad(h: H): void;
  backward(h: H, gradient: H | null, retainGraph: boolean, createGraph: boolean): void;
  autogradGrad(outputs: H[], inputs: H[], gradOutputs: H[] | null, retainGraph: boolean, createGraph: boolean, allowUnused: boolean): (H | null)[];
  isGradEnabled(): boolean;
  setGradEnabled(v: boolean): void;
  // random
  manualSeed(seed: number): void;
  newGenerator(seed: number): GeneratorHandle;
  generatorSeed(seed: number, gen: Opt<GeneratorHandle>): void;
  getRngState(gen: Opt<GeneratorHandle>): H;
  setRngState(state: H, gen: Opt<GeneratorHandle>): void;
  uniform_(h: H, a: number, b: number, gen: Opt<GeneratorHandle>): void;
  normal_(h: H, mean: number, std: number, gen: Opt<GeneratorHandle>): void;
  bernoulli(h: H, p: number, gen: Opt<GeneratorHandle>): H;
  multinomial(probs: H, n: number, replacement: boolean, gen: Opt<GeneratorHandle>): H;
  // elementwise
  opCodes(): { binary: Record<string, number>; unary: Record<string, number> };
  binary(code: number, a: Num, b: Num, scalarMask: number): H;
  binaryInplace(code: number, self: H, other: Num, alpha: number | null, scalarMask: number): void;
  unary(code: number, a: H): H;
  addScaled(a: H, b: H, alpha: number): H;
  clamp(h: H, min: Opt<number>, max: Opt<number>): H;
  clamp_(h: H, min: Opt<number>, max: Opt<number>): void;
  where(cond: H, a: Num, b: Num, scalarMask: number): H;
  powScalarBase(exponent: H, base: number): H;
  softplus(h: H, beta: number, threshold: number): H;
  leakyRelu(h: H, slope: number): H;
  addcmul_(h: H, t1: H, t2: H, value: number): void;
  addcdiv_(h: H, t1: H, t2: H, value: number): void;
  lerp_(h: H, end: H, weight: number): void;
  copy_(h: H, src: H): void;
  fill_(h: H, v: number | boolean): void;
  // reductions
  sum(h: H, dims: Dims, keepdim: boolean, dtype: Opt<number>): H;
  mean(h: H, dims: Dims, keepdim: boolean, dtype: Opt<number>): H;
  amax(h: H, dims: Dims, keepdim: boolean): H;
  amin(h: H, dims: Dims, keepdim: boolean): H;
  logsumexp(h: H, dims: Dims, keepdim: boolean): H;
  prod(h: H, dims: Dims, keepdim: boolean, dtype: Opt<number>): H;
  var(h: H, dims: Dims, keepdim: boolean, unbiased: boolean): H;
  std(h: H, dims: Dims, keepdim: boolean, unbiased: boolean): H;
  vectorNorm(h: H, ord: number, dims: Dims, keepdim: boolean): H;
  argmax(h: H, dim: Opt<number>, keepdim: boolean): H;
  argmin(h: H, dim: Opt<number>, keepdim: boolean): H;
  maxDim(h: H, dim: number, keepdim: boolean): [H, H];
  minDim(h: H, dim: number, keepdim: boolean): [H, H];
  maxAll(h: H): H;
  minAll(h: H): H;
  all(h: H, dim: Opt<number>, keepdim: boolean): H;
  any(h: H, dim: Opt<number>, keepdim: boolean): H;
  cumsum(h: H, dim: number, dtype: Opt<number>): H;
  topk(h: H, k: number, dim: number, largest: boolean, sorted: boolean): [H, H];
  sort(h: H, dim: number, descending: boolean, stable: boolean): [H, H];
  // linear algebra
  matmul(a: H, b: H): H;
  bmm(a: H, b: H): H;
  mm(a: H, b: H): H;
  outer(a: H, b: H): H;
  einsum(eq: string, ts: H[]): H;
  svdvals(a: H): H;
  // shape and indexing
  view(h: H, shape: number[]): H;
  reshape(h: H, shape: number[]): H;
  permute(h: H, dims: number[]): H;
  expand(h: H, shape: number[]): H;
  repeat(h: H, reps: number[]): H;
  flip(h: H, dims: number[]): H;
  transpose(h: H, d0: number, d1: number): H;
  unsqueeze(h: H, d: number): H;
  squeeze(h: H, d: Opt<number>): H;
  flatten(h: H, start: number, end: number): H;
  movedim(h: H, src: number[], dst: number[]): H;
  cat(ts: H[], dim: number): H;
  stack(ts: H[], dim: number): H;
  split(h: H, sizes: number | number[], dim: number): H[];
  chunk(h: H, n: number, dim: number): H[];
  unbind(h: H, dim: number): H[];
  narrow(h: H, dim: number, start: number, length: number): H;
  slice(h: H, dim: number, start: Opt<number>, end: Opt<number>, step: number): H;
  select(h: H, dim: number, index: number): H;
  indexSelect(h: H, dim: number, index: H): H;
  gather(h: H, dim: number, index: H): H;
  scatter(h: H, dim: number, index: H, src: H | number, reduce: string, scalarMask: number): H;
  maskedFill(h: H, mask: H, value: Num, scalarMask: number): H;
  maskedFill_(h: H, mask: H, value: number | boolean): void;
  index(h: H, indices: (H | null)[]): H;
  indexPut(h: H, indices: (H | null)[], values: Num, accumulate: boolean, scalarMask: number): H;
  indexPut_(h: H, indices: (H | null)[], values: Num, accumulate: boolean, scalarMask: number): void;
  triu(h: H, diagonal: number): H;
  tril(h: H, diagonal: number): H;
  pad(h: H, pad: number[], mode: string, value: number): H;
  roll(h: H, shifts: number[], dims: number[]): H;
  unique(h: H, sorted: boolean): [H, H];
  nonzero(h: H): H;
  searchsorted(sorted: H, values: H, right: boolean): H;
  // nn functional
  linear(x: H, w: H, b: H | null): H;
  embedding(w: H, idx: H, paddingIdx: number): H;
  layerNorm(x: H, shape: number[], w: H | null, b: H | null, eps: number): H;
  rmsNorm(x: H, w: H | null, eps: number): H;
  softmax(x: H, dim: number, dtype: Opt<number>): H;
  logSoftmax(x: H, dim: number, dtype: Opt<number>): H;
  crossEntropy(x: H, target: H, weight: H | null, reduction: string, ignoreIndex: number, labelSmoothing: number): H;
  mseLoss(x: H, y: H, reduction: string): H;
  smoothL1Loss(x: H, y: H, reduction: string, beta: number): H;
  binaryCrossEntropyWithLogits(x: H, y: H, reduction: string, posWeight: H | null): H;
  cosineSimilarity(a: H, b: H, dim: number, eps: number): H;
  normalize(x: H, p: number, dim: number, eps: number): H;
  dropout(x: H, p: number, train: boolean): H;
  conv2d(x: H, w: H, b: H | null, stride: number[], padding: number[], dilation: number[], groups: number): H;
  conv3d(x: H, w: H, b: H | null, stride: number[], padding: number[], dilation: number[], groups: number): H;
  adaptiveAvgPool2d(x: H, size: number[]): H;
  avgPool2d(x: H, kernel: number[], stride: number[], padding: number[]): H;
  maxPool2d(x: H, kernel: number[], stride: number[], padding: number[]): H;
  interpolate(x: H, size: number[], mode: string, alignCorners: boolean, antialias: boolean): H;
  scaledDotProductAttention(q: H, k: H, v: H, mask: H | null, dropoutP: number, causal: boolean, scale: Opt<number>): H;
  // runtime
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setBlasThreads(n: number): boolean;
  buildInfo(): BuildInfo;
  tuneAllocator(mmapThreshold: number, trimThreshold: number, topPad: number): boolean;
  /** (enable, dtype code, state to restore when disabling) -> the state before */
  setAutocast(enable: boolean, dtype: number, restore: boolean): boolean;
  synchronize(): void;
  noop(...args: unknown[]): void;
  // distributed (native/distributed.cc); groups are small integer ids
  distBackends(): string[];
  distInit(backend: string, masterAddr: string, masterPort: number, rank: number, worldSize: number, timeoutMs: number, localRank: number, agentStorePrefix: string): number;
  distDestroy(group: number): void;
  distAllReduce(group: number, h: H, op: string): void;
  distBroadcast(group: number, h: H, src: number): void;
  distAllGather(group: number, h: H): H[];
  distReduceScatter(group: number, inputs: H[], op: string): H;
  distBarrier(group: number): void;
}

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = join(here, "..", "native", "build", "Release", "mindseye_torch.node");

function load(): NativeAddon {
  if (!existsSync(addonPath)) {
    throw new Error(
      `@mindseye/torch: the native addon is not built (looked for ${addonPath}). ` +
        "Run `bash scripts/setup.sh` (or `make build`) from the repository root; it installs libtorch and builds the addon.",
    );
  }
  return createRequire(import.meta.url)(addonPath) as NativeAddon;
}

export const native: NativeAddon = load();
const codes = native.opCodes();
export const BINARY: Readonly<Record<string, number>> = codes.binary;
export const UNARY: Readonly<Record<string, number>> = codes.unary;
