// @mindseye/torch — a PyTorch-shaped tensor engine for TypeScript over libtorch.
//
//   import { torch, nn, optim, F } from "@mindseye/torch";
//   const loss = torch.scope(() => F.crossEntropy(model.forward(x), y));
//   loss.backward(); opt.step(); opt.zeroGrad();
import * as creation from "./creation.js";
import * as random from "./random.js";
import * as autogradNs from "./autograd.js";
import { checkpoint, setGradientCheckpointing, pendingCheckpoints } from "./checkpoint.js";
import { scope, keep, persist, scopeDepth } from "./scope.js";
import { setThreads, getThreads, defaultThreadSettings, allocatorTuned } from "./runtime.js";
import { native } from "./native.js";
import { Tensor } from "./tensor.js";
import { DTYPES } from "./dtype.js";

export { Tensor } from "./tensor.js";
export type { TensorLike } from "./tensor.js";
export type { DType, Device, TypedArray } from "./dtype.js";
export { Generator } from "./random.js";
export * as F from "./functional.js";
export * as nn from "./nn/index.js";
export * as optim from "./optim/index.js";
export * as io from "./io/index.js";
export * as distributed from "./distributed.js";

export const torch = {
  ...creation,
  manualSeed: random.manualSeed,
  getRngState: random.getRngState,
  setRngState: random.setRngState,
  Generator: random.Generator,
  noGrad: autogradNs.noGrad,
  enableGrad: autogradNs.enableGrad,
  autocast: autogradNs.autocast,
  isAutocastEnabled: autogradNs.isAutocastEnabled,
  isGradEnabled: autogradNs.isGradEnabled,
  autograd: { grad: autogradNs.grad },
  checkpoint,
  setGradientCheckpointing,
  pendingCheckpoints,
  scope,
  keep,
  persist,
  scopeDepth,
  setThreads,
  getThreads,
  defaultThreadSettings,
  buildInfo: () => ({ ...native.buildInfo(), allocatorTuned }),
  cudaIsAvailable: () => native.buildInfo().cudaAvailable,
  synchronize: () => native.synchronize(),
  Tensor,
  dtypes: DTYPES,
  /** @internal A no-op native call, for measuring boundary overhead. */
  _noop: (...args: unknown[]) => native.noop(...args),
} as const;

export default torch;
