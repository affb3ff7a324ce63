// nn.Module: parameters, buffers and submodules found by walking a module's own properties, so a
// model is a plain class whose property names become the dotted, HF-style weight names
// (`model.layers.0.self_attn.q_proj.weight`).
import { native } from "../native.js";
import { Tensor } from "../tensor.js";
import { type DType, type Device, dtypeCode as dtypeCodeOf } from "../dtype.js";
import { noGrad } from "../autograd.js";

/**
 * A trainable tensor owned by a module (outlives every torch.scope). As torch.nn.Parameter it
 * shares data's storage but is a new leaf: data's own autograd history and flags are untouched.
 */
export class Parameter extends Tensor {
  constructor(data: Tensor, requiresGrad = true) {
    super(native.detach(data._h), false);
    native.setRequiresGrad(this._h, requiresGrad);
  }
}

/** A non-trainable tensor owned by a module; persistent ones are part of the state dict. */
export class Buffer extends Tensor {
  readonly persistent: boolean;
  constructor(data: Tensor, persistent = true) {
    super(native.alias(data._h), false);
    this.persistent = persistent;
  }
}

export class StateDictError extends Error {
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: { key: string; expected: number[]; got: number[] }[],
  ) {
    super(message);
    this.name = "StateDictError";
  }
}

export abstract class Module {
  training = true;

  /** Direct submodules by name (properties holding a Module, in definition order). */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) if (v instanceof Module) out.push([k, v]);
    return out;
  }

  private ownEntries<T>(cls: abstract new (...a: never[]) => T): [string, T][] {
    const out: [string, T][] = [];
    for (const [k, v] of Object.entries(this)) if (v instanceof cls) out.push([k, v as T]);
    return out;
  }

  /** Every module in the tree with its dotted prefix ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /** All parameters with dotted names, each shared tensor listed once (tied weights). */
  namedParameters(opts: { recurse?: boolean } = {}): [string, Parameter][] {
    const seen = new Set<Parameter>();
    const out: [string, Parameter][] = [];
    const mods = opts.recurse === false ? ([["", this]] as [string, Module][]) : this.namedModules();
    for (const [prefix, m] of mods) {
      for (const [k, p] of m.ownEntries(Parameter)) {
        if (seen.has(p)) continue;
        seen.add(p);
        out.push([prefix ? `${prefix}.${k}` : k, p]);
      }
    }
    return out;
  }
  parameters(): Parameter[] { return this.namedParameters().map(([, p]) => p); }

  namedBuffers(): [string, Buffer][] {
    const out: [string, Buffer][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [k, b] of m.ownEntries(Buffer)) out.push([prefix ? `${prefix}.${k}` : k, b]);
    }
    return out;
  }

  /** Number of parameter elements (trainable only, if asked). */
  numParameters(opts: { trainableOnly?: boolean } = {}): number {
    return this.parameters().filter((p) => !opts.trainableOnly || p.requiresGrad).reduce((a, p) => a + p.numel(), 0);
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this { return this.train(false); }

  /** Freezes (or unfreezes) every parameter. */
  requiresGrad_(value = true): this {
    for (const p of this.parameters()) p.requiresGrad_(value);
    return this;
  }

  /** Sets every parameter's .grad to none (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.parameters()) native.setGrad(p._h, null);
  }

  /**
   * Parameters and persistent buffers by dotted name. Tied weights appear under every name
   * that refers to them, as in PyTorch.
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      const at = (k: string) => (prefix ? `${prefix}.${k}` : k);
      for (const [k, p] of m.ownEntries(Parameter)) out.set(at(k), p);
      for (const [k, b] of m.ownEntries(Buffer)) if (b.persistent) out.set(at(k), b);
    }
    return out;
  }

  /**
   * Copies tensors into this module's parameters and buffers, in place (optimizers keep their
   * references). Strict by default: missing, unexpected and mis-shaped keys are all listed in
   * one error. Values are converted to each parameter's dtype and device.
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const src = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of own) {
      const s = src.get(k);
      if (s === undefined) continue;
      const a = t.shape, b = s.shape;
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) mismatched.push({ key: k, expected: a, got: b });
    }
    if (mismatched.length > 0 || (strict && (missing.length > 0 || unexpected.length > 0))) {
      const lines = [`loadStateDict: the state dict does not match ${this.constructor.name}`];
      if (missing.length) lines.push(`  missing keys (${missing.length}): ${listed(missing)}`);
      if (unexpected.length) lines.push(`  unexpected keys (${unexpected.length}): ${listed(unexpected)}`);
      for (const m of mismatched.slice(0, 20)) lines.push(`  shape mismatch for ${m.key}: model has [${m.expected.join(", ")}], checkpoint has [${m.got.join(", ")}]`);
      if (mismatched.length > 20) lines.push(`  ... and ${mismatched.length - 20} more shape mismatches`);
      if (!strict) lines.push("  (strict=false tolerates missing and unexpected keys, never shape mismatches)");
      throw new StateDictError(lines.join("\n"), missing, unexpected, mismatched);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k);
        if (s !== undefined) t.copy_(s);
      }
    });
    return { missing, unexpected };
  }

  /** Converts every parameter and buffer in place to a dtype and/or device. */
  to(target: { dtype?: DType; device?: Device }): this {
    const convert = (t: Tensor) => {
      const moved = native.to(t._h, target.dtype === undefined ? null : t.isFloatingPoint ? dtypeCodeOf(target.dtype) : null, target.device ?? null, false);
      const wasGrad = t.requiresGrad;
      t._replaceHandle(moved);
      if (wasGrad && !native.requiresGrad(moved)) native.setRequiresGrad(moved, true);
    };
    noGrad(() => {
      const seen = new Set<Tensor>();
      for (const [, m] of this.namedModules()) {
        for (const [, t] of [...m.ownEntries(Parameter), ...m.ownEntries(Buffer)]) {
          if (seen.has(t)) continue;
          seen.add(t);
          convert(t);
        }
      }
    });
    return this;
  }
}

function listed(keys: string[]): string {
  return keys.length <= 20 ? keys.join(", ") : `${keys.slice(0, 20).join(", ")}, ... (${keys.length - 20} more)`;
}

/** A list of modules, named "0", "1", ... like torch.nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[];
  constructor(items: M[] = []) {
    super();
    this.items = [...items];
  }
  override namedChildren(): [string, Module][] { return this.items.map((m, i) => [String(i), m]); }
  get length(): number { return this.items.length; }
  at(i: number): M {
    const m = this.items[i < 0 ? this.items.length + i : i];
    if (m === undefined) throw new RangeError(`ModuleList index ${i} out of range (length ${this.items.length})`);
    return m;
  }
  push(m: M): void { this.items.push(m); }
  [Symbol.iterator](): Iterator<M> { return this.items[Symbol.iterator](); }
}
