// The optimizer base: parameter groups with their own hyperparameters, per-parameter state,
// and a state dict that round-trips through safetensors (tensors + JSON metadata).
import { native } from "../native.js";
import { Tensor } from "../tensor.js";
import { noGrad } from "../autograd.js";
import { zerosLike } from "../creation.js";

export type GroupSpec<H> = { params: Tensor[] } & Partial<H>;
export type Group<H> = { params: Tensor[]; initialLr: number } & H;
type SlotState = Map<string, Tensor>;

/** What an optimizer saves: named tensors ("state.<param index>.<slot>") and JSON metadata. */
export interface OptimizerState {
  tensors: Map<string, Tensor>;
  meta: { groups: Record<string, unknown>[]; steps: Record<string, number> };
}

export abstract class Optimizer<H extends { lr: number }> {
  readonly paramGroups: Group<H>[];
  /** Per-parameter slots (exp_avg, momentum_buffer, ...). */
  protected readonly slots = new Map<Tensor, SlotState>();
  /** Per-parameter step counts. */
  protected readonly steps = new Map<Tensor, number>();

  constructor(params: Tensor[] | GroupSpec<H>[], defaults: H) {
    if (params.length === 0) throw new Error("optimizer got an empty parameter list (is every parameter frozen?)");
    const specs: GroupSpec<H>[] = params.length > 0 && !("params" in (params[0] as object))
      ? [{ params: params as Tensor[] } as GroupSpec<H>]
      : (params as GroupSpec<H>[]);
    const seen = new Set<Tensor>();
    this.paramGroups = specs.map((g, gi) => {
      for (const p of g.params) {
        if (seen.has(p)) throw new Error(`optimizer: a parameter appears in more than one group (group ${gi})`);
        if (!p.requiresGrad) throw new Error(`optimizer: group ${gi} holds a parameter that does not require grad (frozen parameters stay out of the optimizer)`);
        seen.add(p);
      }
      const merged = { ...defaults, ...g, params: [...g.params] } as Group<H>;
      merged.initialLr = merged.lr;
      return merged;
    });
  }

  /** One update of every parameter that has a gradient. */
  abstract step(): void;

  /** Sets every .grad to none. */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) native.setGrad(p._h, null);
  }

  /** A slot tensor for p, created as zeros like p on first use. */
  protected slot(p: Tensor, name: string): Tensor {
    let s = this.slots.get(p);
    if (s === undefined) { s = new Map(); this.slots.set(p, s); }
    let t = s.get(name);
    if (t === undefined) {
      t = noGrad(() => zerosLike(p));
      // Slots live as long as the optimizer: keep them out of any enclosing scope.
      const temp = t;
      t = new Tensor(native.alias(temp._h), false);
      temp.dispose();
      s.set(name, t);
    }
    return t;
  }

  protected nextStep(p: Tensor): number {
    const n = (this.steps.get(p) ?? 0) + 1;
    this.steps.set(p, n);
    return n;
  }

  private allParams(): Tensor[] { return this.paramGroups.flatMap((g) => g.params); }

  /** State for checkpoints; tensors are the optimizer's own (not copies): save them before stepping again. */
  stateDict(): OptimizerState {
    const params = this.allParams();
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    params.forEach((p, i) => {
      for (const [name, t] of this.slots.get(p) ?? []) tensors.set(`state.${i}.${name}`, t);
      const n = this.steps.get(p);
      if (n !== undefined) steps[String(i)] = n;
    });
    let offset = 0;
    const groups = this.paramGroups.map((g) => {
      const { params: ps, ...hyper } = g;
      const indices = ps.map((_, j) => offset + j);
      offset += ps.length;
      return { ...hyper, params: indices };
    });
    return { tensors, meta: { groups, steps } };
  }

  /** A checkpoint's parameter groups must be this optimizer's, group for group, in size. */
  protected checkGroupSizes(groups: OptimizerState["meta"]["groups"]): void {
    if (groups.length !== this.paramGroups.length) {
      throw new Error(`optimizer loadStateDict: checkpoint has ${groups.length} parameter groups, this optimizer has ${this.paramGroups.length}`);
    }
    groups.forEach((g, gi) => {
      const n = (g.params as number[]).length, here = this.paramGroups[gi]!.params.length;
      if (n !== here) throw new Error(`optimizer loadStateDict: group ${gi} has ${n} parameters in the checkpoint, ${here} here`);
    });
  }

  /**
   * Restores hyperparameters, step counts and slots saved by stateDict (same parameter order),
   * replacing the current state. The checkpoint is checked in full before anything changes.
   */
  loadStateDict(state: OptimizerState): void {
    const params = this.allParams();
    const { groups, steps } = state.meta;
    // 1. check
    this.checkGroupSizes(groups);
    for (const i of Object.keys(steps)) {
      if (params[Number(i)] === undefined) throw new Error(`optimizer loadStateDict: step count for parameter ${i}, but this optimizer has ${params.length} parameters`);
    }
    const loaded = new Map<Tensor, Map<string, Tensor>>();
    for (const [key, t] of state.tensors) {
      const m = /^state\.(\d+)\.(\w+)$/.exec(key);
      const p = m ? params[Number(m[1])] : undefined;
      if (!m || p === undefined) throw new Error(`optimizer loadStateDict: unexpected tensor '${key}'`);
      const pShape = p.shape, tShape = t.shape;
      if (pShape.join(",") !== tShape.join(",")) {
        throw new Error(`optimizer loadStateDict: '${key}' has shape [${tShape}] but parameter ${m[1]} has shape [${pShape}]`);
      }
      if (!loaded.has(p)) loaded.set(p, new Map());
      loaded.get(p)!.set(m[2]!, t);
    }
    // 2. replace: hyperparameters, step counts, slots (slots the checkpoint lacks are freed)
    groups.forEach((g, gi) => {
      const { params: _ignored, ...hyper } = g;
      Object.assign(this.paramGroups[gi]!, hyper);
    });
    this.steps.clear();
    for (const [i, n] of Object.entries(steps)) this.steps.set(params[Number(i)]!, n);
    for (const [p, slots] of this.slots) {
      for (const [name, t] of slots) {
        if (loaded.get(p)?.has(name)) continue;
        t.dispose();
        slots.delete(name);
      }
      if (slots.size === 0) this.slots.delete(p);
    }
    noGrad(() => {
      for (const [p, slots] of loaded) for (const [name, t] of slots) this.slot(p, name).copy_(t);
    });
  }
}
