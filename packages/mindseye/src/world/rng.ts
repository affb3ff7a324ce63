// The world's random numbers: xoshiro128** (Blackman & Vigna), seeded through splitmix32 from
// the run seed and a stream label. Each scene and each task draws from its own stream
// (`new Rng(seed, "scene", id)`), so a scene is the same whatever else is generated, and
// rendering can run in any order or thread. Never Math.random.

const U32 = 2 ** 32;

/** A 32-bit hash step (splitmix32's finaliser): avalanches every input bit. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

/** Folds a seed (any safe non-negative integer) and a stream label into one 32-bit value. */
function streamSeed(seed: number, stream: readonly (string | number)[]): number {
  let h = mix32(seed % U32) ^ mix32(Math.floor(seed / U32) + 0x51ed27);
  for (const part of stream) {
    const s = String(part);
    h = mix32(h ^ 0x2f);
    for (let i = 0; i < s.length; i++) h = mix32(h ^ s.charCodeAt(i));
  }
  return h;
}

/**
 * A seeded generator. `new Rng(7, "scene", 12)` and `new Rng(7, "scene", 13)` are independent
 * streams; the same arguments always give the same sequence.
 * ```ts
 * const rng = new Rng(seed, "captions", sceneId);
 * const shape = rng.pick(SHAPES);
 * ```
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, ...stream: (string | number)[]) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`Rng seed must be a non-negative safe integer, got ${seed}`);
    let x = streamSeed(seed, stream);
    // splitmix32 fills the four state words; an all-zero state is impossible after mixing.
    const next = () => (x = (x + 0x9e3779b9) >>> 0, mix32(x));
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  float(): number {
    return this.u32() / U32;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Rng.int needs a positive integer bound, got ${n}`);
    return Math.floor(this.float() * n);
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new RangeError("Rng.pick from an empty list");
    return xs[this.int(xs.length)]!;
  }

  /** Fisher–Yates in place; returns the same array. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = xs[i]!;
      xs[i] = xs[j]!;
      xs[j] = t;
    }
    return xs;
  }

  /** k distinct elements in random order. */
  sample<T>(xs: readonly T[], k: number): T[] {
    if (k > xs.length) throw new RangeError(`Rng.sample of ${k} from ${xs.length}`);
    return this.shuffle([...xs]).slice(0, k);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
