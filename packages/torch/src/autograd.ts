// Gradient-mode scopes and torch.autograd.grad.
import { native } from "./native.js";
import { dtypeCode, type DType } from "./dtype.js";
import { Tensor } from "./tensor.js";

/** Runs fn with gradient recording off (torch.no_grad). */
export function noGrad<R>(fn: () => R): R {
  const prev = native.isGradEnabled();
  native.setGradEnabled(false);
  try { return fn(); } finally { native.setGradEnabled(prev); }
}

/** Runs fn with gradient recording on (torch.enable_grad). */
export function enableGrad<R>(fn: () => R): R {
  const prev = native.isGradEnabled();
  native.setGradEnabled(true);
  try { return fn(); } finally { native.setGradEnabled(prev); }
}

export function isGradEnabled(): boolean { return native.isGradEnabled(); }

export interface GradOptions {
  gradOutputs?: Tensor[];
  retainGraph?: boolean;
  createGraph?: boolean;
  /** Return null for inputs the outputs do not depend on instead of throwing. */
  allowUnused?: boolean;
}

/** Gradients of outputs with respect to inputs, without touching .grad (torch.autograd.grad). */
export function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], opts: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  const r = native.autogradGrad(
    outs.map((t) => t._h), ins.map((t) => t._h), opts.gradOutputs ? opts.gradOutputs.map((t) => t._h) : null,
    opts.retainGraph ?? opts.createGraph ?? false, opts.createGraph ?? false, opts.allowUnused ?? false,
  );
  return r.map((g) => (g === null ? null : new Tensor(g)));
}

/**
 * Runs fn under CUDA autocast (torch.autocast("cuda", dtype)): matmuls and convolutions on CUDA
 * tensors run in dtype (bfloat16 by default), reductions and losses stay float32. Nothing
 * changes for CPU tensors.
 * ```ts
 * const loss = torch.autocast(() => model.forward(batch).loss);
 * ```
 */
export function autocast<R>(fn: () => R, dtype: DType = "bfloat16"): R {
  const previous = native.setAutocast(true, dtypeCode(dtype), false);
  const previousDtype = currentAutocast;
  currentAutocast = dtype;
  try { return fn(); } finally { native.setAutocast(false, 0, previous); currentAutocast = previousDtype; }
}

let currentAutocast: DType | null = null;
/** The dtype of the innermost torch.autocast, or null outside one (checkpoint reruns a segment under the same). */
export function autocastDtype(): DType | null { return currentAutocast; }

/** Whether CUDA autocast is on (inside torch.autocast). */
export function isAutocastEnabled(): boolean {
  const state = native.setAutocast(true, dtypeCode("bfloat16"), false);
  native.setAutocast(false, 0, state);
  return state;
}
