// What every benchmark shares: the PyTorch reference worker, small statistics helpers, and the
// per-native-call profiler behind --profile (bench:data, bench:train).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const benchDir = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The PyTorch side of a benchmark: bench/<script> run by Debian's python3-torch, one JSON
 * request and one JSON reply per line (bench/ref_common.py's serve), alive across rounds so both
 * sides alternate in one run.
 */
export class PythonWorker {
  private readonly proc;
  private readonly lines;
  constructor(private readonly script: string, private readonly python: string) {
    this.proc = spawn(python, [join(benchDir, script)], { stdio: ["pipe", "pipe", "inherit"] });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
  }
  async call(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(JSON.stringify(msg) + "\n");
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`the PyTorch worker (${this.python} bench/${this.script}) exited; is python3-torch installed? (MINDSEYE_WITH_PYTORCH=1 bash scripts/setup.sh)`);
    const reply = JSON.parse(value as string) as Record<string, unknown>;
    if (reply.error) throw new Error(`PyTorch worker: ${String(reply.error)}`);
    return reply;
  }
  close(): void { this.proc.stdin!.write(JSON.stringify({ cmd: "exit" }) + "\n"); }
}

export const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
export const fmt = (x: number, d = 1): string => x.toFixed(d);

// ---------------------------------------------------------------------------------------------
// Per-native-call profile (--profile)

interface CallStats { calls: number; ms: number }

/** Addon functions that dispatch no ATen op: handle lifetime, metadata, autograd flags. */
const BOOKKEEPING = new Set(["dispose", "isDisposed", "memory", "shape", "strides", "dtype", "device", "numel", "isContiguous", "requiresGrad",
  "setRequiresGrad", "isLeaf", "gradFnName", "grad", "setGrad", "retainGrad", "isGradEnabled", "setGradEnabled", "alias", "toBytes", "item"]);

/**
 * Every MindsEye op is one call into the addon, so wrapping the addon's functions counts and
 * times each op as JavaScript sees it (kernel + boundary). Elementwise ops are named by their op
 * code. Calls are recorded under the phase last set, between start() and stop() only (or during
 * run(fn)); the wrappers stay installed but record nothing outside. One per process: each
 * instance wraps the addon's functions again.
 */
export class NativeProfiler {
  private readonly stats = new Map<string, Map<string, CallStats>>(); // phase -> call -> stats
  private phase: string | null = null;
  private t0 = 0;
  totalMs = 0;

  constructor() {
    const addonPath = join(dirname(fileURLToPath(import.meta.resolve("@mindseye/torch"))), "..", "native", "build", "Release", "mindseye_torch.node");
    const addon = createRequire(import.meta.url)(addonPath) as Record<string, unknown>; // the same module object the engine loaded
    const codes = (addon.opCodes as () => { binary: Record<string, number>; unary: Record<string, number> })();
    const invert = (m: Record<string, number>) => new Map(Object.entries(m).map(([k, v]) => [v, k]));
    const byCode: Record<string, Map<number, string>> = { binary: invert(codes.binary), binaryInplace: invert(codes.binary), unary: invert(codes.unary) };
    for (const [name, fn] of Object.entries(addon)) {
      if (typeof fn !== "function") continue;
      const f = fn as (...a: unknown[]) => unknown;
      addon[name] = (...a: unknown[]) => {
        if (this.phase === null) return f(...a);
        const label = byCode[name] ? `${name}:${byCode[name].get(a[0] as number) ?? a[0]}` : name;
        const t0 = performance.now();
        try {
          return f(...a);
        } finally {
          const calls = this.stats.get(this.phase)!;
          const e = calls.get(label) ?? { calls: 0, ms: 0 };
          e.calls++;
          e.ms += performance.now() - t0;
          calls.set(label, e);
        }
      };
    }
  }

  start(phase: string): void { this.t0 = performance.now(); this.mark(phase); }
  mark(phase: string): void {
    if (!this.stats.has(phase)) this.stats.set(phase, new Map());
    this.phase = phase;
  }
  stop(): void { this.phase = null; this.totalMs = performance.now() - this.t0; }
  /** Profiles fn as one phase: start(phase), fn(), stop(). */
  run(fn: () => void, phase = "all"): void {
    this.start(phase);
    try {
      fn();
    } finally {
      this.stop();
    }
  }

  /**
   * The `rows` slowest calls over all phases (total ms to `msDigits` decimals), then, with
   * `phases`, each phase's op and bookkeeping call counts, then the totals.
   */
  report(rows: number, { msDigits = 3, phases = true }: { msDigits?: number; phases?: boolean } = {}): string {
    const merged = new Map<string, CallStats>();
    for (const calls of this.stats.values()) {
      for (const [k, e] of calls) { const m = merged.get(k) ?? { calls: 0, ms: 0 }; m.calls += e.calls; m.ms += e.ms; merged.set(k, m); }
    }
    const list = [...merged].sort((a, b) => b[1].ms - a[1].ms);
    const lines = list.slice(0, rows).map(([k, e]) => `  ${k.padEnd(34)} ${String(e.calls).padStart(6)} ${fmt(e.ms, msDigits).padStart(10)} ${fmt((100 * e.ms) / this.totalMs).padStart(6)}%`);
    const sum = (calls: Iterable<[string, CallStats]>, keep: (k: string) => boolean) => {
      let n = 0, ms = 0;
      for (const [k, e] of calls) if (keep(k)) { n += e.calls; ms += e.ms; }
      return { n, ms };
    };
    const perPhase = !phases ? [] : [...this.stats].map(([phase, calls]) => {
      const ops = sum(calls, (k) => !BOOKKEEPING.has(k)), book = sum(calls, (k) => BOOKKEEPING.has(k));
      return `  ${phase}: ${ops.n} op calls (${fmt(ops.ms, 2)} ms), ${book.n} bookkeeping calls (${fmt(book.ms, 2)} ms: dispose, shape, grad, ...)`;
    });
    const all = sum(merged, () => true);
    return [`  ${"native call".padEnd(34)} ${"calls".padStart(6)} ${"total ms".padStart(10)} ${"share".padStart(7)}`, ...lines, ...perPhase,
      `  ${all.n} native calls, ${fmt(all.ms, 2)} ms inside them, ${fmt(this.totalMs - all.ms, 2)} ms in JavaScript around them (of ${fmt(this.totalMs, 2)} ms)`].join("\n");
  }
}
