// The trainer: a flat loop (STYLE.md §7) — forward → loss → backward → clip → step → schedule →
// log — with gradient accumulation, parameter groups, checkpoints that resume exactly, a clean
// stop on SIGINT/SIGTERM, and a stop before the first divergent step is applied.
//
//   const result = await train(task, { runDir: "runs/x", steps: 1000, lr: 3e-4 }, { resume: true });
//
// The run folder:
//   train.lock          one run at a time (run_lock.ts)
//   train_config.json   the settings in effect (written once a resume is accepted)
//   metrics.jsonl, events.out.tfevents.*   each step once: a resume drops what it replays
//   checkpoints/        see checkpoint.ts
//
// Signals: the first SIGINT/SIGTERM stops after the current step with a checkpoint; train()
// returns { interrupted: true, signal } and sets process.exitCode to 128 + the signal number
// (130 SIGINT, 143 SIGTERM), what a shell reports for a process the signal ended. A second signal
// exits at once with that code. Rerunning the same command resumes from the checkpoint.
//
// Data parallel (WORLD_SIZE > 1, set by `mindseye launch` or torchrun; see distributed.ts): every
// rank runs this loop on its shard of the data with its own seed (seed + rank: dropout differs per
// rank), the model wrapped in DistributedDataParallel (rank 0's weights broadcast; gradients
// averaged once per optimizer step, after the last micro-batch). Each step the ranks all-reduce
// their loss and whether a signal arrived, so they log the mean loss, judge divergence on the same
// numbers and stop after the same step; setup, checkpoints and the end are agreed too (a rank that
// fails there makes every rank fail instead of leaving one waiting). Only rank 0 takes the run
// lock and writes metrics, TensorBoard events and checkpoints (the others wait for it). A rank
// that dies makes the others fail with a PeerFailure at their next collective, within the
// process group's timeout (train.dist_timeout_s).
//
// ZeRO (zeroStage 1 or 2, the recipe's train.zero_stage; optim/zero.ts): under data parallelism
// the AdamW state is sharded over the ranks (torch's ZeroRedundancyOptimizer): each rank keeps m
// and v for about 1/worldSize of the parameters, updates those, and broadcasts them to the others
// after each step. Stage 1 keeps the gradients replicated (DDP's all-reduce); stage 2 shards them
// too: after the last micro-batch each gradient is reduce-scattered onto its owner and the other
// ranks drop their copy, and clipping measures the norm over the shards (one all-reduce of the
// per-parameter norms: the same norm as DDP's). Until the reduction the local gradients are
// full-size (accumulation communicates once per step, as with DDP). A checkpoint gathers the full
// state on rank 0 first, so it is the same file plain DDP writes: a run may resume with or without
// ZeRO, at either stage, and at another world size. In one process zeroStage 1 or 2 trains plainly
// (ZeRO over one rank is AdamW), so a recipe runs unchanged on one GPU.
//
// Recipe settings applied here: gradientCheckpointing (torch.setGradientCheckpointing) and lora
// (models/lora.ts: only the adapters train, with the modules in modulesToSave and the embedding
// rows in trainableTokenIndices; at the end the adapter is saved to runDir/adapter in PEFT's layout
// and, with merge, folded into the weights the stage then saves; saved modules keep their trained
// weights either way).
import { createHash } from "node:crypto";
import { constants as osConstants } from "node:os";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, nn, optim, type Tensor } from "@mindseye/torch";
import type { DataLoader } from "../data/loader.js";
import { MetricsLogger } from "./metrics.js";
import {
  saveCheckpoint, latestCheckpoint, loadCheckpoint, readTrainerState, listCheckpoints, removeStaleTemps, pointLatest, markDiverged, checkpointDir,
  type ResumeOverrides, type ResumeRecord, type TrainerState,
} from "./checkpoint.js";
import { lockRun } from "./run_lock.js";
import { Progress } from "../util/progress.js";
import { Ranks, PeerFailure, trainerGroup } from "./distributed.js";
import { applyLora, resolveLora, matchesTarget, type LoraAdapter } from "../models/lora.js";
import { ConfigError } from "../config/errors.js";

export type { ResumeOverrides } from "./checkpoint.js";

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
  /**
   * A step whose grad norm exceeds this multiple of the median of the recent ones is a spike
   * (counted, logged as `grad_spikes`); SPIKES_IN_A_ROW of them in a row are a blow-up and stop the
   * run before the last is applied. 0 disables.
   */
  gradSpikeFactor: number;
  /**
   * Examples per micro-batch (the loader's batchSize), so that a resume with another batch size
   * is refused. The DataLoader does not expose it: the caller passes it; unset, it is not checked.
   */
  batchSize?: number;
  /** Recompute each decoder layer / ViT block in backward instead of keeping its activations (memory for compute). */
  gradientCheckpointing: boolean;
  /** Train LoRA adapters on the model's nn.Linear modules instead of its weights; null: train the weights. */
  lora: LoraSettings | null;
  /** Under DDP: a collective (hence the run) fails after waiting this long for another rank. */
  distTimeoutMs: number;
  /**
   * Under DDP, 1 shards the optimizer state over the ranks (ZeRO-1), 2 the gradients too (ZeRO-2);
   * 0 or unset: a full copy of both on each rank. Ignored in one process. Not part of the resume
   * fingerprint: checkpoints are the same.
   */
  zeroStage?: 0 | 1 | 2;
}

/** LoRA as a recipe sets it (the recipe's train.lora). */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  /** Module names (a name matches an entry or ends in "." + entry) or one regular expression over whole names. */
  targetModules: string[] | string;
  /** At the end, fold the adapters into the weights (the model the stage saves is the merged one); false: the model keeps its base weights. */
  merge: boolean;
  /**
   * Modules trained whole and saved in the adapter (PEFT's modules_to_save; names as targetModules'
   * list). Absent: none (and left out, so earlier runs' fingerprints are unchanged).
   */
  modulesToSave?: string[];
  /** Embedding rows that train (PEFT's trainable_token_indices): embedding module name -> token ids. Absent: none. */
  trainableTokenIndices?: Record<string, number[]>;
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, "runDir" | "steps"> = {
  lr: 3e-4, minLrRatio: 0.1, warmupSteps: 0, schedule: "cosine", weightDecay: 0.01, betas: [0.9, 0.999], eps: 1e-8,
  gradAccum: 1, clipGradNorm: 1, noDecayNormBiasEmbedding: true, checkpointEvery: 500, keepCheckpoints: 2, logEvery: 10, evalEvery: 0, seed: 0, autocast: "bfloat16",
  gradSpikeFactor: 100, gradientCheckpointing: false, lora: null, distTimeoutMs: 30 * 60 * 1000,
};

/** Grad norms kept for the spike check, and how many it needs before it judges. */
const GRAD_HISTORY = 100, GRAD_HISTORY_MIN = 10;
/**
 * Spikes in a row that stop the run. One spike alone is applied (clipped, as every step is): late
 * in a run that fits its data (a small fine-tuning fraction over many epochs) the median grad norm
 * falls towards 0, and a batch the model still gets wrong is a 100× outlier while the weights are
 * healthy. A blow-up keeps spiking.
 */
export const SPIKES_IN_A_ROW = 5;

export interface TrainOptions {
  /** Continue from the run folder's latest checkpoint when there is one (what `mindseye train` does). */
  resume?: boolean;
  /** Stop with a checkpoint after this step, as an interruption would (tests). */
  stopAfter?: number;
  quiet?: boolean;
  /**
   * Settings changed on purpose when resuming (e.g. a lower lr after a divergence): accepted
   * although they differ from the checkpoint's, kept for the rest of the run, and recorded in
   * trainer.json `resumes` and train_config.json. `mindseye train --override lr=1e-4`.
   */
  overrides?: ResumeOverrides;
}

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
  /** The signal that stopped the run, or null. */
  signal: NodeJS.Signals | null;
  lastLoss: number;
  losses: number[];
  checkpoint: string | null;
  /** Steps whose grad norm spiked (gradSpikeFactor) without stopping the run (over the whole run, resumes included). */
  gradSpikes: number;
}

/** An lr as one types it: 0.003, 3e-5, 1e17. */
export function formatLr(lr: number): string {
  return lr >= 1e4 || lr < 1e-3 ? lr.toExponential(1).replace(".0e", "e").replace("e+", "e") : String(Number(lr.toPrecision(2)));
}

/**
 * Training diverged: a non-finite loss, a non-finite or exploding grad norm, or non-finite
 * weights. Nothing of the failing step was saved; `checkpoint` is the newest checkpoint whose
 * weights then trained healthily (checkpoints/latest names it), or null.
 */
export class DivergenceError extends Error {
  constructor(readonly step: number, readonly reason: string, readonly checkpoint: string | null, readonly runDir: string, readonly suggestedLr: number) {
    const lr = formatLr(suggestedLr);
    super(`training diverged at step ${step}: ${reason}; the run stopped before applying that step. ` + (checkpoint
      ? `The last healthy checkpoint is ${checkpoint} (checkpoints/latest now names it). To resume from it with a lower lr, rerun the same \`mindseye train\` command with --override lr=${lr} (in code: train(task, config, { resume: true, overrides: { lr: ${lr} } })).`
      : `No healthy checkpoint was written. To start over with a lower lr, delete ${join(runDir, "checkpoints")} if it exists and rerun with a lower lr (e.g. --set train.lr=${lr}).`));
    this.name = "DivergenceError";
  }
}

export class NonFiniteLossError extends DivergenceError {
  constructor(step: number, value: number, checkpoint: string | null, runDir: string, suggestedLr: number) {
    super(step, `the loss became ${value}`, checkpoint, runDir, suggestedLr);
    this.name = "NonFiniteLossError";
  }
}

/** AdamW groups: decay on matrices, none on norms, biases, embeddings (when configured) and extra parameters. */
export function parameterGroups(model: nn.Module, extra: nn.Parameter[], cfg: Pick<TrainConfig, "weightDecay" | "noDecayNormBiasEmbedding">): optim.GroupSpec<optim.AdamWOptions>[] {
  const noDecay = new Set<Tensor>(extra);
  if (cfg.noDecayNormBiasEmbedding) {
    for (const [, m] of model.namedModules()) {
      if (m instanceof nn.LayerNorm || m instanceof nn.RMSNorm || m instanceof nn.Embedding) for (const p of m.namedParameters({ recurse: false })) noDecay.add(p[1]);
    }
    for (const [name, p] of model.namedParameters()) if (name.endsWith("bias") || p.ndim < 2) noDecay.add(p);
  }
  const trainable = [...model.parameters(), ...extra].filter((p) => p.requiresGrad);
  const groups = [
    { params: trainable.filter((p) => !noDecay.has(p)), weightDecay: cfg.weightDecay },
    { params: trainable.filter((p) => noDecay.has(p)), weightDecay: 0 },
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

/** The settings a resume must share with its checkpoint (lr and warmupSteps may be overridden; worldSize may change when the checkpoint is consolidated). */
function fingerprintOf(cfg: TrainConfig, worldSize: number): Record<string, unknown> {
  return {
    steps: cfg.steps, lr: cfg.lr, schedule: cfg.schedule, warmupSteps: cfg.warmupSteps, gradAccum: cfg.gradAccum, seed: cfg.seed, batchSize: cfg.batchSize ?? null,
    worldSize, gradientCheckpointing: cfg.gradientCheckpointing, lora: cfg.lora,
  };
}

/** What checkpoints written before a fingerprint setting existed were trained with. */
const FINGERPRINT_DEFAULTS: Record<string, unknown> = { worldSize: 1, gradientCheckpointing: false, lora: null };

/**
 * Checks a resume: each fingerprint setting must equal the checkpoint's, or the value a past
 * resume overrode it with, or be overridden now. A consolidated checkpoint (full weights and
 * optimizer state: one process, plain DDP) may resume at another world size. Returns the
 * overrides in effect from now on and the checkpoint's world size.
 */
function checkResume(cfg: TrainConfig, worldSize: number, from: string, state: TrainerState, overrides: ResumeOverrides): { overrides: ResumeOverrides; fromWorldSize: number } {
  const recorded: Record<string, unknown> = { ...state.overrides };
  const saved = (k: string) => (k in state.fingerprint ? state.fingerprint[k] : FINGERPRINT_DEFAULTS[k]);
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  const fromWorldSize = saved("worldSize") as number;
  if (fromWorldSize !== worldSize && state.consolidated === false) {
    throw new Error(`cannot resume from ${from} on ${worldSize} rank(s): it holds per-rank shards of ${fromWorldSize} ranks. Resume with ${fromWorldSize} ranks (mindseye launch --nproc-per-node ${fromWorldSize} -- ...), or consolidate the checkpoint first`);
  }
  const mismatch = Object.entries(fingerprintOf(cfg, worldSize)).filter(([k, v]) => k !== "worldSize" && !(k in overrides) && !same(saved(k), v) && !(k in recorded && same(recorded[k], v)));
  if (mismatch.length > 0) {
    const what = mismatch.map(([k, v]) => `${k} was ${JSON.stringify(saved(k) ?? null)}${k in recorded ? ` (overridden to ${JSON.stringify(recorded[k])})` : ""}, now ${JSON.stringify(v)}`).join("; ");
    throw new Error(`cannot resume from ${from}: ${what}. Resume with the run's settings; to change lr or warmupSteps on purpose, rerun with --override lr=<value> / --override warmup_steps=<n> (train options: overrides); to start over, delete ${join(cfg.runDir, "checkpoints")}`);
  }
  return { overrides: { ...state.overrides, ...overrides }, fromWorldSize };
}

/** A fresh start needs a folder without checkpoints: they would mix with the new ones, and pruning (by step) would delete the new ones. */
function refuseOldCheckpoints(runDir: string, resume: boolean): void {
  const old = listCheckpoints(runDir);
  if (old.length === 0) return;
  const root = join(runDir, "checkpoints"), names = old.map((c) => c.name).join(", ");
  const why = resume ? "but no checkpoints/latest names one to resume from" : "and resume is off";
  throw new Error(`${root} holds checkpoints of an earlier run (${names}) ${why}; a fresh run here would mix with them. ` +
    `To start over, delete ${root} (rm -r ${root}); to resume, ${resume ? `write the name of the checkpoint to resume into ${join(root, "latest")} (e.g. echo ${old.at(-1)!.name} > ${join(root, "latest")})` : "train with resume: true"}.`);
}

function validateOverrides(o: ResumeOverrides, steps: number): void {
  for (const k of Object.keys(o)) if (k !== "lr" && k !== "warmupSteps") throw new RangeError(`train: overrides.${k} is not a setting a resume can change (lr, warmupSteps)`);
  if (o.lr !== undefined && !(Number.isFinite(o.lr) && o.lr > 0)) throw new RangeError(`train: overrides.lr must be a positive number, got ${o.lr}`);
  if (o.warmupSteps !== undefined && !(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0 && o.warmupSteps <= steps)) {
    throw new RangeError(`train: overrides.warmupSteps must be an integer in [0, steps=${steps}], got ${o.warmupSteps}`);
  }
}

function allFinite(params: Tensor[]): boolean {
  return torch.noGrad(() => torch.scope(() => torch.stack(params.map((p) => p.isfinite().all())).all().item())) === 1;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function train<B>(task: TrainTask<B>, config: Partial<TrainConfig> & Pick<TrainConfig, "runDir" | "steps">, opts: TrainOptions = {}): Promise<TrainResult> {
  const given: TrainConfig = { ...TRAIN_DEFAULTS, ...config };
  if (!Number.isInteger(given.steps) || given.steps < 1) throw new RangeError(`train: steps must be a positive integer, got ${given.steps}`);
  if (!Number.isInteger(given.gradAccum) || given.gradAccum < 1) throw new RangeError(`train: gradAccum must be a positive integer, got ${given.gradAccum}`);
  if (given.zeroStage !== undefined && given.zeroStage !== 0 && given.zeroStage !== 1 && given.zeroStage !== 2) throw new RangeError(`train: zeroStage must be 0 (plain DDP), 1 (optimizer state sharded) or 2 (gradients too), got ${String(given.zeroStage)}`);
  validateOverrides(opts.overrides ?? {}, given.steps);
  const runDir = given.runDir;
  const model = task.model;
  const device = model.parameters()[0]?.device ?? "cpu";
  const pg = trainerGroup(device, given.distTimeoutMs);
  const ranks = pg === null ? null : new Ranks(pg, device);
  const rank = ranks?.rank ?? 0, worldSize = ranks?.worldSize ?? 1, lead = rank === 0;
  /** Runs fn on every rank and fails on every rank if it failed on one (distributed.ts). */
  const together = <T>(what: string, fn: () => T): T => (ranks === null ? fn() : ranks.collectively(what, fn));
  let releaseLock = () => {};
  try {
    // Setup, agreed: the lock (rank 0), the resume check, the data shard, the recipe's LoRA and checkpointing.
    const setup = together("setting up the run", () => {
      mkdirSync(runDir, { recursive: true });
      if (lead) {
        releaseLock = lockRun(runDir);
        for (const d of removeStaleTemps(runDir)) console.error(`${runDir}: removed ${d}, the unfinished checkpoint of a process that is gone`);
      }
      const shard = task.loader.state();
      if (shard.rank !== rank || shard.worldSize !== worldSize) {
        throw new Error(`the task's DataLoader reads shard ${shard.rank} of ${shard.worldSize}, but this process is rank ${rank} of ${worldSize}: ` +
          "build it with the options { ...dataShard() } (train/stages/common.ts), which reads RANK and WORLD_SIZE, so that each rank trains on its own share of every epoch");
      }
      // Resume: check the checkpoint's settings before anything in the run folder changes.
      const existing = opts.resume ? latestCheckpoint(runDir) : null;
      if (existing === null) refuseOldCheckpoints(runDir, opts.resume ?? false);
      if (existing === null && opts.overrides !== undefined) throw new Error(`train: overrides apply when resuming, and ${runDir} has no checkpoint; set the values in the config instead`);
      const resumed = existing === null ? null : readTrainerState(existing);
      const checked = resumed === null ? { overrides: {}, fromWorldSize: worldSize } : checkResume(given, worldSize, existing!, resumed, opts.overrides ?? {});
      const overrides = checked.overrides;
      const cfg: TrainConfig = { ...given, ...overrides }; // the settings in effect
      const fingerprint = resumed === null ? fingerprintOf(given, worldSize) : { ...resumed.fingerprint, worldSize };
      const resumes: ResumeRecord[] = resumed === null ? [] : [...(resumed.resumes ?? []), {
        step: resumed.step, from: existing!, time: new Date().toISOString(), overrides: opts.overrides ?? {},
        ...(checked.fromWorldSize !== worldSize ? { worldSize: { from: checked.fromWorldSize, to: worldSize } } : {}),
      }];
      if (lead && checked.fromWorldSize !== worldSize) {
        console.error(`${runDir}: resuming a run of ${checked.fromWorldSize} rank(s) on ${worldSize}: the global batch becomes ${worldSize} × ${cfg.batchSize ?? "batch_size"} × ${cfg.gradAccum}, and the data position is carried over by records seen`);
      }
      if (lead) writeFileSync(join(runDir, "train_config.json"), JSON.stringify({ ...cfg, worldSize, overrides, resumes }, null, 2) + "\n");
      if (cfg.gradientCheckpointing) torch.setGradientCheckpointing(model);
      const lora = cfg.lora === null ? null : applyRecipeLora(model, cfg.lora, cfg.seed);
      return { existing, cfg, overrides, fingerprint, resumes, lora };
    });
    const { existing, cfg, overrides, fingerprint, resumes, lora } = setup;

    model.train();
    const extra = task.extraParameters ?? [];
    const adamw = { lr: cfg.lr, betas: cfg.betas, eps: cfg.eps };
    // ZeRO: each rank builds AdamW on its partition (one all-gather checks every rank has the same parameters)
    const zeroStage = cfg.zeroStage ?? 0;
    const zero = ranks === null || zeroStage === 0 ? null
      : ranks.comm(`partitioning the optimizer state over the ranks (ZeRO-${zeroStage})`, () => new optim.ZeroRedundancyOptimizer(parameterGroups(model, extra, cfg), optim.AdamW, adamw, { group: ranks.pg, stage: zeroStage }));
    const opt: optim.Optimizer<optim.AdamWOptions> = zero ?? new optim.AdamW(parameterGroups(model, extra, cfg), adamw);
    const params = opt.paramGroups.flatMap((g) => g.params);
    const sched = schedule(cfg);
    const frozenAtStart = frozenHash(model);

    let step = 0;
    let lastCheckpoint: string | null = null;
    let gradNorms: number[] = [];
    let spikes = { total: 0, inARow: 0 };
    if (existing !== null) {
      const state = together(`loading ${existing}`, () => loadCheckpoint(existing, model, opt));
      for (const g of opt.paramGroups) g.initialLr = cfg.lr; // the checkpoint's groups carry the lr it was written with
      // Each rank its own random state; a rank the checkpoint did not have starts from seed + rank.
      const own = state.rankRngs?.[rank];
      if (own !== undefined) setRngBytes(Buffer.from(own, "base64"));
      else if (rank > 0) torch.manualSeed(cfg.seed + rank);
      // The loader cursor is rank 0's (every rank is at the same batch); at another world size, the same records seen.
      const c = state.loader;
      const batch = c.worldSize === worldSize ? c.batch : Math.min(task.loader.batchesPerEpoch(), Math.floor((c.batch * c.worldSize) / worldSize));
      task.loader.load({ ...c, batch, rank, worldSize });
      step = state.step;
      gradNorms = state.gradNorms;
      spikes = state.gradSpikes ?? spikes;
      lastCheckpoint = existing;
      // Checkpoints after this one belong to a continuation that is being replaced (e.g. one that diverged).
      if (lead) {
        for (const c of listCheckpoints(runDir).filter((c) => c.step > step)) {
          rmSync(c.dir, { recursive: true, force: true });
          console.error(`${runDir}: removed ${c.name}, later than the resumed step ${step}`);
        }
      }
    } else {
      torch.manualSeed(cfg.seed + rank); // the model is built already: this seeds what differs per rank (dropout)
    }
    // Rank 0's weights (and the extra parameters) on every rank; gradients averaged after backward.
    const ddp = ranks === null ? null : ranks.comm("wrapping the model in DistributedDataParallel (broadcast of rank 0's weights)", () => new nn.DistributedDataParallel(new Replica(model, extra), { group: ranks.pg }));

    let stopRequested: NodeJS.Signals | null = null;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopRequested !== null) {
        console.error(`\n${sig} again: exiting now without a checkpoint of this step (${lastCheckpoint === null ? "none was written yet" : `the last one is ${lastCheckpoint}`})`);
        process.exit(128 + osConstants.signals[sig]);
      }
      stopRequested = sig;
      console.error(`\n${sig}: stopping after this step with a checkpoint (${sig} again exits at once)`);
    };
    const sigint = () => onSignal("SIGINT"), sigterm = () => onSignal("SIGTERM");
    process.on("SIGINT", sigint);
    process.on("SIGTERM", sigterm);

    const metrics = lead ? new MetricsLogger(runDir, step) : null;
    const progress = new Progress(cfg.steps, step, (opts.quiet ?? false) || !lead, "train", "steps");
    const losses: number[] = [];
    let batches = task.loader.epoch();
    const nextBatch = async (): Promise<B> => {
      for (;;) {
        const r = await batches.next();
        if (!r.done) return r.value;
        batches = task.loader.epoch();
      }
    };
    let lastGradNorm = NaN, lastMedian: number | null = null;
    const checkpoint = () => {
      const health = { weightsFinite: true, gradNorm: lastGradNorm, gradNormMedian: lastMedian };
      const rankRngs = ranks === null ? null : ranks.gatherBytes(`gathering the ranks' random states for the checkpoint of step ${step}`, rngBytes()).map((b) => Buffer.from(b).toString("base64"));
      const state = { step, loader: task.loader.state(), fingerprint, overrides, resumes, gradNorms, ...(spikes.total > 0 ? { gradSpikes: spikes } : {}), health, consolidated: true, ...(rankRngs ? { rankRngs } : {}) };
      // ZeRO: the full optimizer state on rank 0, which saves it as plain DDP's
      if (zero !== null) ranks!.comm(`gathering the sharded optimizer state (ZeRO-${zeroStage}) for the checkpoint of step ${step}`, () => zero.consolidateStateDict(0));
      // rank 0 writes; the others wait for it (no rank runs ahead of a checkpoint that may fail)
      try {
        lastCheckpoint = together(`writing the checkpoint of step ${step}`, () => (lead ? saveCheckpoint(runDir, model, opt, state, cfg.keepCheckpoints) : checkpointDir(runDir, step)));
      } finally {
        zero?.clearConsolidatedState();
      }
    };
    // Training diverged on the weights of `step`: a checkpoint of them is suspect, so the last healthy
    // one is older. `latest` is pointed at it and the suspect ones are marked (by rank 0; every rank
    // reaches this on the same numbers).
    // `since`: the step whose weights are suspect from (a run of spikes began on them), when earlier than `step`.
    const diverged = (reason: string, since = step, make = (healthy: string | null) => new DivergenceError(step + 1, reason, healthy, runDir, cfg.lr / 10)) => {
      const all = listCheckpoints(runDir);
      const healthy = all.filter((c) => c.step < since && !readTrainerState(c.dir).health?.diverged).at(-1) ?? null;
      if (lead) {
        for (const c of all.filter((c) => c.step >= since)) markDiverged(c.dir, `step ${step + 1}: ${reason}`);
        pointLatest(runDir, healthy?.name ?? null);
      }
      return make(healthy?.dir ?? null);
    };

    let samples = 0, windowStart = performance.now(), samplesSeen = 0;
    let agreedSignal: NodeJS.Signals | null = null;
    const runStart = performance.now();
    try {
      while (step < cfg.steps) {
        // 0. yield to the event loop, so that a SIGINT/SIGTERM handler can run (batches from memory never await)
        await new Promise<void>((resolve) => setImmediate(resolve));
        // 1. schedule (a pure function of the step)
        optim.schedules.applySchedule(opt, sched, step);
        // 2. forward / loss / backward over gradAccum micro-batches; under DDP the gradients
        //    accumulate locally and are averaged once, after the last one (DDP's no_sync; ZeRO-2:
        //    reduce-scattered onto their owners, the other ranks' copies dropped)
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
          samples += n * worldSize;
          samplesSeen += n * worldSize;
          disposeTensors(batch); // batches are made outside any scope: free them now, not at GC
        }
        if (ranks !== null) {
          if (zero?.stage === 2) ranks.comm(`step ${step + 1}: the gradient reduce-scatter (ZeRO-2)`, () => zero.reduceGradients());
          else ranks.comm(`step ${step + 1}: the gradient all-reduce`, () => ddp!.syncGradients());
          // the mean loss, and whether any rank got a signal: every rank decides on the same values
          const [sum, sigint, sigterm] = ranks.sum(`step ${step + 1}: agreeing on the loss and on stopping`, [lossSum, stopRequested === "SIGINT" ? 1 : 0, stopRequested === "SIGTERM" ? 1 : 0]);
          lossSum = sum! / worldSize;
          agreedSignal = sigterm! > 0 ? "SIGTERM" : sigint! > 0 ? "SIGINT" : null;
        } else {
          agreedSignal = stopRequested;
        }
        if (!Number.isFinite(lossSum)) throw diverged(`the loss became ${lossSum}`, step, (h) => new NonFiniteLossError(step + 1, lossSum, h, runDir, cfg.lr / 10));
        // 3. clip (the norm is measured either way), check for divergence before stepping, step
        //    (the gradients, hence the norm, are the same on every rank; ZeRO-2 combines the ranks' shards)
        const maxNorm = cfg.clipGradNorm > 0 ? cfg.clipGradNorm : Infinity;
        const gradNorm = zero?.stage === 2 ? ranks!.comm(`step ${step + 1}: the gradient norm over the shards (ZeRO-2)`, () => zero.clipGradNorm(maxNorm)) : optim.clipGradNorm(params, maxNorm);
        const med = gradNorms.length >= GRAD_HISTORY_MIN ? median(gradNorms) : null;
        if (!Number.isFinite(gradNorm)) throw diverged(`the gradient norm became ${gradNorm}`);
        const spike = cfg.gradSpikeFactor > 0 && med !== null && gradNorm > cfg.gradSpikeFactor * med;
        spikes = spike ? { total: spikes.total + 1, inARow: spikes.inARow + 1 } : { ...spikes, inARow: 0 };
        if (spikes.inARow >= SPIKES_IN_A_ROW) {
          throw diverged(`the gradient norm jumped to ${gradNorm.toPrecision(3)}, ${(gradNorm / med!).toFixed(0)}× the median ${med!.toPrecision(3)} of the last ${gradNorms.length} steps (gradSpikeFactor ${cfg.gradSpikeFactor}), ${SPIKES_IN_A_ROW} spikes in a row from step ${step + 2 - SPIKES_IN_A_ROW}`, step + 1 - SPIKES_IN_A_ROW);
        }
        gradNorms = [...gradNorms, gradNorm].slice(-GRAD_HISTORY);
        lastGradNorm = gradNorm;
        lastMedian = med;
        if (zero !== null) ranks!.comm(`step ${step + 1}: the optimizer step (ZeRO-${zeroStage}: each rank's parameters broadcast to the others)`, () => opt.step());
        else opt.step();
        opt.zeroGrad();
        step += 1;
        losses.push(lossSum);
        // 4. log (the metrics averaged over the ranks), evaluate, checkpoint (never one with non-finite weights)
        if (step % cfg.logEvery === 0 || step === cfg.steps) {
          const seconds = (performance.now() - windowStart) / 1000;
          const mean = ranks === null ? logged : meanMetrics(ranks, step, logged);
          const values = { loss: lossSum, lr: opt.paramGroups[0]!.lr, grad_norm: gradNorm, samples_per_s: samples / seconds, ...(spikes.total > 0 ? { grad_spikes: spikes.total } : {}), ...mean };
          task.onLog?.(step, values);
          metrics?.log(step, values);
          samples = 0;
          windowStart = performance.now();
        }
        progress.update(step, `loss ${lossSum.toFixed(4)} | ${(samplesSeen / ((performance.now() - runStart) / 1000)).toFixed(1)} samples/s`);
        if (task.evaluate && cfg.evalEvery > 0 && step % cfg.evalEvery === 0) {
          const values = await task.evaluate(step);
          metrics?.log(step, values, "eval");
        }
        const stopping = agreedSignal !== null || step === opts.stopAfter;
        if (step % cfg.checkpointEvery === 0 || step === cfg.steps || stopping) {
          if (!allFinite(params)) throw diverged(`the weights became non-finite`);
          checkpoint();
        }
        if (stopping) break;
      }
      if (step === cfg.steps && task.evaluate && cfg.evalEvery > 0 && cfg.steps % cfg.evalEvery !== 0) {
        const values = await task.evaluate(step);
        metrics?.log(step, values, "eval");
      }
    } catch (e) {
      if (e instanceof PeerFailure) {
        throw new PeerFailure(`${e.message}\nAnother rank died, was stopped, or waited longer than the process group's timeout (the recipe's train.dist_timeout_s); see its log. ` +
          `${lastCheckpoint === null ? "No checkpoint was written yet" : `The last complete checkpoint is ${lastCheckpoint}`}: rerun the same launch command to resume.`);
      }
      throw e;
    } finally {
      progress.stop();
      metrics?.close();
      process.off("SIGINT", sigint);
      process.off("SIGTERM", sigterm);
    }
    if (frozenHash(model) !== frozenAtStart) throw new Error("frozen parameters changed during training (a frozen module was updated): the run is not what its recipe says");
    if (lora !== null && step === cfg.steps) {
      together("saving the LoRA adapter", () => { if (lead) lora.save(join(runDir, "adapter")); });
      if (cfg.lora!.merge) lora.merge();
      else lora.unload();
    }
    // a signal on any rank stops every rank: each exits as if it had got it
    const signal: NodeJS.Signals | null = step < cfg.steps ? agreedSignal : null;
    if (signal !== null) {
      process.exitCode = 128 + osConstants.signals[signal];
      if (lead) console.error(`${signal}: stopped at step ${step} of ${cfg.steps}; saved ${lastCheckpoint}. To resume, run the same command again: \`mindseye train\` continues from the latest checkpoint in ${runDir} (in code: train(..., { resume: true })).`);
    }
    return { steps: step, interrupted: step < cfg.steps, signal, lastLoss: losses[losses.length - 1] ?? NaN, losses, checkpoint: lastCheckpoint, gradSpikes: spikes.total };
  } finally {
    releaseLock();
  }
}

/** The model and the task's extra parameters as one module, so that DDP broadcasts and averages both. */
class Replica extends nn.Module {
  constructor(readonly model: nn.Module, extra: nn.Parameter[]) {
    super();
    Object.assign(this, Object.fromEntries(extra.map((p, i) => [`extra_${i}`, p])));
  }
}

/** The logged metrics averaged over the ranks (every rank must log the same names: checked, then one all-reduce). */
function meanMetrics(ranks: Ranks, step: number, logged: Record<string, number>): Record<string, number> {
  const keys = Object.keys(logged).sort();
  const mine = new Uint8Array(new Float64Array([keys.length, nameHash(keys.join(","))]).buffer);
  const theirs = ranks.gatherBytes(`step ${step}: comparing the logged metric names`, mine);
  const other = theirs.findIndex((b) => Buffer.compare(Buffer.from(b), Buffer.from(mine)) !== 0);
  if (other >= 0) throw new Error(`step ${step}: rank ${other} logs other metrics than rank ${ranks.rank} (${keys.join(", ")}); every rank's task must return the same metric names`);
  const values = ranks.mean(`step ${step}: averaging the logged metrics`, keys.map((k) => logged[k]!));
  return Object.fromEntries(keys.map((k, i) => [k, values[i]!]));
}

// 32-bit FNV-1a of the metric names (exact in a float64).
function nameHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function rngBytes(): Uint8Array {
  const t = torch.getRngState();
  try { return t.toBytes(); } finally { t.dispose(); }
}

function setRngBytes(bytes: Uint8Array): void {
  const t = torch.tensor(bytes, { dtype: "uint8" });
  try { torch.setRngState(t); } finally { t.dispose(); }
}

/**
 * LoRA on the trainable nn.Linear modules that match the recipe's targets: a frozen module (a
 * VLM's vision tower) keeps its weights and gets no adapter, whatever its name. The adapter's
 * target_modules are the full names of the wrapped modules.
 */
function applyRecipeLora(model: nn.Module, s: LoraSettings, seed: number): LoraAdapter {
  const names = model.namedModules().filter(([n, m]) => n !== "" && m instanceof nn.Linear && m.weight.requiresGrad && matchesTarget(n, s.targetModules)).map(([n]) => n);
  if (names.length === 0) {
    const trainable = model.namedModules().filter(([, m]) => m instanceof nn.Linear && m.weight.requiresGrad).map(([n]) => n);
    throw new ConfigError(`train.lora.target_modules ${JSON.stringify(s.targetModules)} matches no trainable nn.Linear of ${model.constructor.name} (trainable ones include ${trainable.slice(0, 6).join(", ")}${trainable.length > 6 ? ", ..." : ""})`);
  }
  return applyLora(model, resolveLora({
    r: s.r, loraAlpha: s.alpha, loraDropout: s.dropout, targetModules: names,
    modulesToSave: s.modulesToSave ?? null, trainableTokenIndices: s.trainableTokenIndices ?? null,
  }, "train.lora"), { generator: new torch.Generator(seed) });
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
