// Activation (gradient) checkpointing, as torch.utils.checkpoint: a segment's forward keeps none of
// its activations, only its inputs; backward runs the segment again and backpropagates through
// the rerun. Compute for memory: one extra forward per segment, and a model of L checkpointed
// layers keeps L layer inputs instead of every layer's saved activations.
//
//   const h2 = torch.checkpoint((h, o) => layer.forward(h, o), h, { positionEmbeddings, attentionMask });
//   loss.backward();   // reruns the layer, then backpropagates through it
//
// How it works without a custom autograd node (the engine is libtorch's, in C++):
// 1. forward: fn runs in its own torch.scope, so its intermediates are freed when it returns.
//    Each output that requires grad is handed back as a new leaf (same storage, no history).
//    The segment keeps aliases of its tensor arguments, the CPU generator's state and the
//    autocast dtype, and joins a list of pending segments.
// 2. Tensor.backward (setBackwardRunner): the native pass runs first; it stops at those leaves
//    and leaves their gradients in .grad. Then pending segments are taken newest first. A
//    segment whose outputs got gradients reruns fn on its saved arguments with the same random
//    state and autocast, and backpropagates those gradients through the rerun, into the
//    parameters and through the arguments' own history (which may be an older segment's leaf:
//    a segment's outputs only get gradients from work made after it, so newest first sees each
//    segment's gradient complete).
// Every pass keeps the graph (retainGraph): the arguments' history can be shared by several
// segments and by the outer graph (the rotary tables every layer reads, a skip connection to
// the loss); torch.scope frees those graphs when the step's tensors go.
//
// Limits: only Tensor.backward reruns segments (torch.autograd.grad and createGraph do not see
// through them); the saved random state is the CPU generator's, so a CUDA random op (dropout on
// a GPU) draws differently in the rerun (Qwen2's and the ViTs' attention dropout is 0 in every
// released config); arguments must not be changed in place between forward and backward.
import { native } from "./native.js";
import { Tensor, setBackwardRunner, type BackwardOptions } from "./tensor.js";
import { scope } from "./scope.js";
import { noGrad, enableGrad, isGradEnabled, autocast, autocastDtype } from "./autograd.js";
import { fromBytes } from "./creation.js";
import type { DType } from "./dtype.js";
import type { Module } from "./nn/module.js";

interface Segment {
  fn: (...args: never[]) => Tensor | Tensor[];
  /** fn's arguments, each tensor replaced by an alias this segment owns (the caller may free its own). */
  args: unknown[];
  aliases: Tensor[];
  /** Aliases of the leaves that stand in for fn's outputs (null: an output that needs no grad). */
  leaves: (Tensor | null)[];
  /** The leaves as handed to the caller, who may free them before backward (the graph keeps them). */
  given: Tensor[];
  /** The CPU generator's state when the forward began (bytes of torch.getRngState()). */
  rng: Uint8Array;
  autocast: DType | null;
}

const pending: Segment[] = [];

/**
 * Runs `fn(...args)` keeping only its arguments for backward, as torch.utils.checkpoint
 * (use_reentrant=False, preserve_rng_state=True): Tensor.backward reruns fn and backpropagates
 * through the rerun. fn must be deterministic given its arguments, the module weights and the
 * random state, and return a tensor or an array of tensors. Tensors among the arguments (also
 * inside arrays and plain objects) are kept alive until backward; tensors fn reads from its
 * closure must outlive the backward themselves. With gradients off (torch.noGrad) it simply
 * runs fn.
 * ```ts
 * const y = torch.checkpoint((x) => block.forward(x), x);
 * y.sum().backward();   // block's weights and x get the same .grad as without checkpoint
 * ```
 */
export function checkpoint<A extends unknown[], R extends Tensor | Tensor[]>(fn: (...args: A) => R, ...args: A): R {
  if (!isGradEnabled()) return scope(() => fn(...args));
  const rng = rngBytes();
  // Run with gradients on, so the outputs say whether they depend on anything trainable; the
  // graph goes when they are replaced by leaves below, the intermediates when the scope ends.
  const out = scope(() => fn(...args));
  const outs = Array.isArray(out) ? out : [out];
  if (!outs.some((o) => o.requiresGrad)) return out;
  const result = outs.map((o) => {
    if (!o.requiresGrad) return o;
    const leaf = new Tensor(native.detach(o._h));
    native.setRequiresGrad(leaf._h, true);
    o.dispose();
    return leaf;
  });
  const aliases: Tensor[] = [];
  pending.push({
    fn: fn as unknown as Segment["fn"],
    args: args.map((a) => aliased(a, aliases, 0)),
    aliases,
    leaves: result.map((r, i) => (r === outs[i] ? null : new Tensor(native.alias(r._h), false))),
    given: result.filter((r, i) => r !== outs[i]),
    rng,
    autocast: autocastDtype(),
  });
  return (Array.isArray(out) ? result : result[0]!) as R;
}

/**
 * Segments made and not yet backpropagated (for tests and diagnostics). A segment that no
 * backward reached is dropped by the next backward once the caller has freed its outputs.
 */
export function pendingCheckpoints(): number {
  return pending.length;
}

/**
 * Turns checkpointing on (or off) in every module of `root` that supports it: those with a
 * boolean `gradientCheckpointing` field (HF's gradient_checkpointing_enable). Returns their
 * dotted names; a model with none is an error, so a missing switch is never silent.
 * ```ts
 * torch.setGradientCheckpointing(model);   // e.g. ["model"] for a Qwen2ForCausalLM
 * ```
 */
export function setGradientCheckpointing(root: Module, on = true): string[] {
  const names: string[] = [];
  for (const [name, m] of root.namedModules()) {
    const field = (m as unknown as { gradientCheckpointing?: unknown }).gradientCheckpointing;
    if (typeof field !== "boolean") continue;
    (m as unknown as { gradientCheckpointing: boolean }).gradientCheckpointing = on;
    names.push(name === "" ? "(root)" : name);
  }
  if (names.length === 0) throw new Error(`setGradientCheckpointing: ${root.constructor.name} has no module with a gradientCheckpointing switch (the decoders — Qwen2, Llama, InternLM2 — and the vision towers — CLIP/SigLIP ViT, InternViT, Qwen2.5-VL — have one)`);
  return names;
}

function rngBytes(): Uint8Array {
  const h = native.getRngState(null);
  try { return new Uint8Array(native.toBytes(h)); } finally { native.dispose(h); }
}
function setRng(bytes: Uint8Array): void {
  const t = noGrad(() => fromBytes(bytes, [bytes.length], "uint8"));
  try { native.setRngState(t._h, null); } finally { t.dispose(); }
}

/** A copy of `v` with every tensor replaced by an untracked alias (same native tensor, own handle). */
function aliased(v: unknown, into: Tensor[], depth: number): unknown {
  if (v instanceof Tensor) {
    const a = new Tensor(native.alias(v._h), false);
    into.push(a);
    return a;
  }
  if (depth > 4 || v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map((x) => aliased(x, into, depth + 1));
  if (Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, aliased(x, into, depth + 1)]));
  }
  return v;
}

function drop(s: Segment): void {
  for (const a of s.aliases) a.dispose();
  for (const l of s.leaves) {
    if (l === null) continue;
    native.setGrad(l._h, null);
    l.dispose();
  }
  pending.splice(pending.indexOf(s), 1);
}

/**
 * Drops the segments of forwards that were never backpropagated: not reached by a backward, and
 * their outputs freed by the caller. (Freed alone is not enough: a caller may free a layer's
 * output once the next layer has read it, as ViT.features does, and the graph still needs it.)
 */
function dropAbandoned(): void {
  for (const s of [...pending]) if (s.given.every((g) => g.disposed)) drop(s);
}

function hasGrad(t: Tensor | null): boolean {
  if (t === null) return false;
  const g = native.grad(t._h);
  if (g === null) return false;
  native.dispose(g);
  return true;
}

/**
 * Reruns the pending segments from index `from` on that Tensor.backward reached, newest first:
 * a segment's outputs only get gradients from work made after it, so each is complete by then.
 */
function drain(from: number, retain: boolean): void {
  for (let i = pending.length - 1; i >= from; i--) {
    const s = pending[i]!;
    if (!s.leaves.some(hasGrad)) continue; // made by another forward, not reached
    try {
      rerun(s, retain);
    } catch (e) {
      drop(s);
      throw e;
    }
    // With retainGraph the segment stays for another backward; its leaves' gradients are spent.
    if (retain) {
      for (const l of s.leaves) if (l !== null) native.setGrad(l._h, null);
    } else {
      drop(s);
    }
  }
}

/** Reruns a segment and backpropagates its leaves' gradients through the rerun. */
function rerun(s: Segment, retain: boolean): void {
  scope(() => {
    const now = rngBytes();
    setRng(s.rng);
    const start = pending.length;
    try {
      const run = () => enableGrad(() => s.fn(...(s.args as never[])));
      const out = s.autocast === null ? run() : autocast(run, s.autocast);
      const outs = Array.isArray(out) ? out : [out];
      // Σ_i <y_i, g_i>: one pass through the rerun for all outputs that got a gradient.
      let total: Tensor | null = null;
      for (const [i, leaf] of s.leaves.entries()) {
        const y = outs[i]!;
        if (leaf === null || !hasGrad(leaf) || !y.requiresGrad) continue;
        const term = y.mul(leaf.grad!).sum();
        total = total === null ? term : total.add(term);
      }
      if (total !== null) native.backward(total._h, null, true, false);
    } finally {
      setRng(now);
    }
    // Checkpoints inside fn made segments during the rerun; their leaves die with this scope.
    drain(start, retain);
  });
}

function backwardThroughCheckpoints(t: Tensor, gradient: Tensor | undefined, opts: BackwardOptions): void {
  if (pending.length === 0) {
    native.backward(t._h, gradient ? gradient._h : null, opts.retainGraph ?? false, opts.createGraph ?? false);
    return;
  }
  if (opts.createGraph) throw new Error("backward: createGraph is not supported through torch.checkpoint segments (their gradients come from a rerun); turn checkpointing off for double backward");
  native.backward(t._h, gradient ? gradient._h : null, true, false);
  drain(0, opts.retainGraph ?? false);
  dropAbandoned();
}

setBackwardRunner(backwardThroughCheckpoints);
