// Random state: the global generator (torch.manualSeed) and explicit seeded Generators.
import { native, type GeneratorHandle } from "./native.js";
import { Tensor } from "./tensor.js";

/** A seeded CPU random generator, passed explicitly to creation ops and initialisers. */
export class Generator {
  /** @internal */ readonly _g: GeneratorHandle;
  constructor(seed = 67280421310721) {
    this._g = native.newGenerator(seed);
  }
  manualSeed(seed: number): this {
    native.generatorSeed(seed, this._g);
    return this;
  }
  /** The generator's full state as a uint8 tensor (for exact resume). */
  getState(): Tensor { return new Tensor(native.getRngState(this._g)); }
  setState(state: Tensor): void { native.setRngState(state._h, this._g); }
}

/** Seeds the default CPU generator, as torch.manual_seed. */
export function manualSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`manualSeed: seed must be a non-negative integer, got ${seed}`);
  native.manualSeed(seed);
}

/** The default generator's state (same bytes as torch.get_rng_state()). */
export function getRngState(): Tensor { return new Tensor(native.getRngState(null)); }
export function setRngState(state: Tensor): void { native.setRngState(state._h, null); }
