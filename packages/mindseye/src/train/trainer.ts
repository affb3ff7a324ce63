// The trainer: a flat loop (STYLE.md §7) — forward → loss → backward → clip → step → schedule →
// log — with gradient accumulation, parameter groups, checkpoints that resume exactly, a clean
// stop on SIGINT/SIGTERM, and a hard stop on a non-finite loss.
//
//   const result = await train(task, { runDir: "runs/x", steps: 1000, lr: 3e-4 }, { resume: true });
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, nn, optim, type Tensor } from "@mindseye/torch";
import type { DataLoader } from "../data/loader.js";
import { MetricsLogger } from "./metrics.js";
import { saveCheckpoint, latestCheckpoint, loadCheckpoint } from "./checkpoint.js";
import { Progress } from "../util/progress.js";

export interface TrainConfig {
  runDir: string;
  /** Optimizer steps (each of gradAccum micro-batches). */
  steps: number;
  lr: number;
  /** Final lr as a fraction of lr (cosine schedule). */
  minLrRatio: number;
  warmupSteps: number;
  schedule: "cosine" | "linear" | "constant";
  weightDecay: number;
  betas: [number, number];
  eps: number;
  gradAccum: number;
  /** Max global gradient norm; 0 disables clipping. */
  clipGradNorm: number;
  /** No weight decay on norm weights, biases and embeddings. */
  noDecayNormBiasEmbedding: boolean;
  checkpointEvery: number;
  keepCheckpoints: number;
  logEvery: number;
  evalEvery: number;
  seed: number;
  /** Mixed precision for CUDA tensors (torch.autocast); CPU work is unaffected. */
  autocast: "none" | "bfloat16" | "float16";
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, "runDir" | "steps"> = {
  lr: 3e-4, minLrRatio: 0.1, warmupSteps: 0, schedule: "cosine", weightDecay: 0.01, betas: [0.9, 0.999], eps: 1e-8,
  gradAccum: 1, clipGradNorm: 1, noDecayNormBiasEmbedding: true, checkpointEvery: 500, keepCheckpoints: 2, logEvery: 10, evalEvery: 0, seed: 0, autocast: "bfloat16",
};

/** What a stage supplies: the model, its data, and the loss of one micro-batch. */
export interface TrainTask<B> {
  model: nn.Module;
  loader: DataLoader<unknown, B>;
  /** Loss of one micro-batch (a scalar), plus tensors or numbers to log. Runs inside torch.scope. */
  step(batch: B): { loss: Tensor; metrics?: Record<string, number | Tensor> };
  /** Extra trainable tensors outside the model (e.g. a learned temperature); checkpointed with the optimizer. */
  extraParameters?: nn.Parameter[];
  /** Periodic evaluation (every evalEvery steps and at the end). */
  evaluate?: (step: number) => Promise<Record<string, number>> | Record<string, number>;
  /** Called at each logging step with the values about to be logged; may add more (e.g. collapse monitors). */
  onLog?: (step: number, values: Record<string, number>) => void;
}

export interface TrainResult {
  steps: number;
  interrupted: boolean;
  lastLoss: number;
  losses: number[];
  checkpoint: string | null;
}

export class NonFiniteLossError extends Error {
  constructor(step: number, value: number, checkpoint: string | null) {
    super(`the loss became ${value} at step ${step}; the run stopped. ${checkpoint ? `The last good checkpoint is ${checkpoint} (resume from it with a lower lr or more warmup).` : "No checkpoint was written yet."}`);
    this.name = "NonFiniteLossError";
  }
}

/** AdamW groups: decay on matrices, none on norms, biases and embeddings (when configured). */
export function parameterGroups(model: nn.Module, extra: nn.Parameter[], cfg: Pick<TrainConfig, "weightDecay" | "noDecayNormBiasEmbedding">): optim.GroupSpec<optim.AdamWOptions>[] {
  const noDecay = new Set<Tensor>();
  if (cfg.noDecayNormBiasEmbedding) {
    for (const [, m] of model.namedModules()) {
      if (m instanceof nn.LayerNorm || m instanceof nn.RMSNorm || m instanceof nn.Embedding) for (const p of m.namedParameters({ recurse: false })) noDecay.add(p[1]);
    }
    for (const [name, p] of model.namedParameters()) if (name.endsWith("bias") || p.ndim < 2) noDecay.add(p);
  }
  const trainable = [...model.parameters(), ...extra].filter((p) => p.requiresGrad);
  const groups = [
    { params: trainable.filter((p) => !noDecay.has(p)), weightDecay: cfg.weightDecay },
    { params: trainable.filter((p) => noDecay.has(p) || extra.includes(p)), weightDecay: 0 },
  ];
  return groups.filter((g) => g.params.length > 0);
}

/** sha256 of every frozen parameter's bytes (checked at the end: frozen must stay frozen). */
export function frozenHash(model: nn.Module): string {
  const h = createHash("sha256");
  for (const [name, p] of model.namedParameters()) {
    if (p.requiresGrad) continue;
    h.update(name);
    h.update(p.toBytes());
  }
  return h.digest("hex");
}

function schedule(cfg: TrainConfig): optim.Schedule {
  const o = { warmupSteps: cfg.warmupSteps, totalSteps: cfg.steps };
  if (cfg.schedule === "cosine") return optim.schedules.warmupCosine({ ...o, minRatio: cfg.minLrRatio });
  if (cfg.schedule === "linear") return optim.schedules.warmupLinear(o);
  return optim.schedules.warmupConstant(o);
}

export async function train<B>(task: TrainTask<B>, config: Partial<TrainConfig> & Pick<TrainConfig, "runDir" | "steps">, opts: { resume?: boolean; stopAfter?: number; quiet?: boolean } = {}): Promise<TrainResult> {
  const cfg: TrainConfig = { ...TRAIN_DEFAULTS, ...config };
  if (!Number.isInteger(cfg.steps) || cfg.steps < 1) throw new RangeError(`train: steps must be a positive integer, got ${cfg.steps}`);
  if (!Number.isInteger(cfg.gradAccum) || cfg.gradAccum < 1) throw new RangeError(`train: gradAccum must be a positive integer, got ${cfg.gradAccum}`);
  mkdirSync(cfg.runDir, { recursive: true });
  writeFileSync(join(cfg.runDir, "train_config.json"), JSON.stringify(cfg, null, 2) + "\n");

  const model = task.model;
  model.train();
  const extra = task.extraParameters ?? [];
  const opt = new optim.AdamW(parameterGroups(model, extra, cfg), { lr: cfg.lr, betas: cfg.betas, eps: cfg.eps });
  const sched = schedule(cfg);
  const fingerprint = { steps: cfg.steps, lr: cfg.lr, schedule: cfg.schedule, warmupSteps: cfg.warmupSteps, gradAccum: cfg.gradAccum, seed: cfg.seed };
  const frozenAtStart = frozenHash(model);

  let step = 0;
  let lastCheckpoint: string | null = null;
  const existing = opts.resume ? latestCheckpoint(cfg.runDir) : null;
  if (existing) {
    const state = loadCheckpoint(existing, model, opt);
    const mismatch = Object.entries(fingerprint).filter(([k, v]) => JSON.stringify(state.fingerprint[k]) !== JSON.stringify(v));
    if (mismatch.length) throw new Error(`cannot resume from ${existing}: ${mismatch.map(([k, v]) => `${k} was ${JSON.stringify(state.fingerprint[k])}, now ${JSON.stringify(v)}`).join("; ")}`);
    task.loader.load(state.loader);
    step = state.step;
    lastCheckpoint = existing;
  } else {
    torch.manualSeed(cfg.seed);
  }

  let stopRequested: string | null = null;
  const onSignal = (sig: string) => { stopRequested = sig; };
  const sigint = () => onSignal("SIGINT"), sigterm = () => onSignal("SIGTERM");
  process.on("SIGINT", sigint);
  process.on("SIGTERM", sigterm);

  const metrics = new MetricsLogger(cfg.runDir);
  const progress = new Progress(cfg.steps, step, opts.quiet ?? false, "train", "steps");
  const losses: number[] = [];
  let batches = task.loader.epoch();
  const nextBatch = async (): Promise<B> => {
    for (;;) {
      const r = await batches.next();
      if (!r.done) return r.value;
      batches = task.loader.epoch();
    }
  };
  const checkpoint = () => {
    lastCheckpoint = saveCheckpoint(cfg.runDir, model, opt, { step, loader: task.loader.state(), fingerprint }, cfg.keepCheckpoints);
  };

  let samples = 0, windowStart = performance.now(), samplesSeen = 0;
  const runStart = performance.now();
  try {
    while (step < cfg.steps) {
      // 1. schedule (a pure function of the step)
      optim.schedules.applySchedule(opt, sched, step);
      // 2. forward / loss / backward over gradAccum micro-batches
      let lossSum = 0;
      const logged: Record<string, number> = {};
      for (let micro = 0; micro < cfg.gradAccum; micro++) {
        const batch = await nextBatch();
        torch.scope(() => {
          const out = cfg.autocast === "none" ? task.step(batch) : torch.autocast(() => task.step(batch), cfg.autocast);
          out.loss.div(cfg.gradAccum).backward();
          lossSum += out.loss.item() / cfg.gradAccum;
          for (const [k, v] of Object.entries(out.metrics ?? {})) logged[k] = (logged[k] ?? 0) + (typeof v === "number" ? v : v.item()) / cfg.gradAccum;
        });
        const n = batchSize(batch);
        samples += n;
        samplesSeen += n;
        disposeTensors(batch); // batches are made outside any scope: free them now, not at GC
      }
      if (!Number.isFinite(lossSum)) throw new NonFiniteLossError(step + 1, lossSum, lastCheckpoint);
      // 3. clip, step
      const gradNorm = cfg.clipGradNorm > 0 ? optim.clipGradNorm(opt.paramGroups.flatMap((g) => g.params), cfg.clipGradNorm) : NaN;
      opt.step();
      opt.zeroGrad();
      step += 1;
      losses.push(lossSum);
      // 4. log, evaluate, checkpoint
      if (step % cfg.logEvery === 0 || step === cfg.steps) {
        const seconds = (performance.now() - windowStart) / 1000;
        const values = { loss: lossSum, lr: opt.paramGroups[0]!.lr, ...(Number.isNaN(gradNorm) ? {} : { grad_norm: gradNorm }), samples_per_s: samples / seconds, ...logged };
        task.onLog?.(step, values);
        metrics.log(step, values);
        samples = 0;
        windowStart = performance.now();
      }
      progress.update(step, `loss ${lossSum.toFixed(4)} | ${(samplesSeen / ((performance.now() - runStart) / 1000)).toFixed(1)} samples/s`);
      if (task.evaluate && cfg.evalEvery > 0 && step % cfg.evalEvery === 0) metrics.log(step, await task.evaluate(step), "eval");
      const stopping = stopRequested !== null || step === opts.stopAfter;
      if (step % cfg.checkpointEvery === 0 || step === cfg.steps || stopping) checkpoint();
      if (stopping) break;
    }
    if (step === cfg.steps && task.evaluate && cfg.evalEvery > 0 && cfg.steps % cfg.evalEvery !== 0) metrics.log(step, await task.evaluate(step), "eval");
  } finally {
    progress.stop();
    metrics.close();
    process.off("SIGINT", sigint);
    process.off("SIGTERM", sigterm);
  }
  if (frozenHash(model) !== frozenAtStart) throw new Error("frozen parameters changed during training (a frozen module was updated): the run is not what its recipe says");
  if (stopRequested) console.error(`\n${stopRequested}: saved ${lastCheckpoint}; resume with --resume`);
  return { steps: step, interrupted: step < cfg.steps, lastLoss: losses[losses.length - 1] ?? NaN, losses, checkpoint: lastCheckpoint };
}

/** Frees the tensors of a batch (a tensor, or an object or array of them). */
function disposeTensors(batch: unknown): void {
  if (batch instanceof torch.Tensor) batch.dispose();
  else if (Array.isArray(batch)) batch.forEach(disposeTensors);
  else if (batch && typeof batch === "object") Object.values(batch).forEach(disposeTensors);
}

/** Number of examples in a batch, for samples/s: the first dim of its first tensor field. */
function batchSize(batch: unknown): number {
  if (batch instanceof torch.Tensor) return batch.shape[0] ?? 1;
  if (batch && typeof batch === "object") {
    for (const v of Object.values(batch)) if (v instanceof torch.Tensor) return v.shape[0] ?? 1;
  }
  return 1;
}
