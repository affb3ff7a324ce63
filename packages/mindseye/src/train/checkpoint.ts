// Training checkpoints: everything an exact resume needs, written atomically.
//
//   runDir/checkpoints/step-000300/
//     model.safetensors       every parameter and persistent buffer (frozen ones included)
//     optimizer.safetensors   optimizer slots; metadata "optimizer" = groups and step counts (JSON)
//     trainer.json            step, RNG state, loader cursor, the schedule's settings, health,
//                             settings overridden on resume and the list of resumes
//   runDir/checkpoints/latest  the name of the checkpoint a rerun resumes from
//
// A checkpoint directory is written under a temporary name (`step-N.tmp-<pid>`) and renamed into
// place, and `latest` is replaced atomically after it: a crash mid-write leaves the previous one
// intact, and the next run removes the temporary folders of processes that are gone.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, io, nn, optim } from "@mindseye/torch";
import type { LoaderCursor } from "../data/loader.js";
import { processAlive } from "./run_lock.js";

/** Settings a resume may change on purpose (accepted despite the fingerprint, and recorded). */
export interface ResumeOverrides {
  lr?: number;
  warmupSteps?: number;
}

/** Whether a checkpoint is a safe place to resume from. */
export interface CheckpointHealth {
  /** Every parameter was finite when saved (a checkpoint with non-finite weights is never written). */
  weightsFinite: boolean;
  /** Grad norm of the step that produced these weights, and the median of the recent ones before it. */
  gradNorm: number;
  gradNormMedian: number | null;
  /** Set when training diverged on these weights (the next steps' loss or grad norm): not a place to resume. */
  diverged?: string;
}

export interface ResumeRecord {
  /** The step resumed from, the checkpoint, when, and the overrides given then. */
  step: number;
  from: string;
  time: string;
  overrides: ResumeOverrides;
  /** Set when the resume ran on another number of ranks than the checkpoint's run. */
  worldSize?: { from: number; to: number };
}

export interface TrainerState {
  step: number;
  /** The default CPU generator's state, base64 (torch.getRngState bytes). */
  rng: string;
  loader: LoaderCursor;
  /** Settings the resumed run must share (schedule, batch size...), checked on resume. */
  fingerprint: Record<string, unknown>;
  /** Fingerprint settings changed by resumes (in effect for this run from then on). */
  overrides: ResumeOverrides;
  resumes: ResumeRecord[];
  /** Recent grad norms: the history the divergence check compares against. */
  gradNorms: number[];
  /**
   * Steps whose grad norm spiked: in all, and in a row up to this step (the divergence check stops
   * the run when the row grows too long). Absent: none.
   */
  gradSpikes?: { total: number; inARow: number };
  health: CheckpointHealth;
  /**
   * Under DDP, every rank's CPU generator state (base64), in rank order: rank r resumes from its
   * own (each rank draws its own dropout masks). Absent for one process.
   */
  rankRngs?: string[];
  /**
   * The checkpoint holds the full model and optimizer state (rank 0 writes it; true for one
   * process and plain DDP), so it can resume at another world size. Absent means true (written
   * before this field existed, by one process).
   */
  consolidated?: boolean;
}

export interface CheckpointEntry {
  name: string;
  step: number;
  dir: string;
}

/** The complete checkpoints of a run (`step-N` folders), oldest step first. */
export function listCheckpoints(runDir: string): CheckpointEntry[] {
  const root = join(runDir, "checkpoints");
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((d) => /^step-\d+$/.test(d)).map((name) => ({ name, step: Number(name.slice(5)), dir: join(root, name) })).sort((a, b) => a.step - b.step);
}

/** Removes `*.tmp-<pid>` leftovers of checkpoint writes whose process is gone (killed mid-write). */
export function removeStaleTemps(runDir: string): string[] {
  const root = join(runDir, "checkpoints");
  if (!existsSync(root)) return [];
  const stale = readdirSync(root).filter((d) => {
    const m = /\.tmp-(\d+)$/.exec(d);
    return m !== null && Number(m[1]) !== process.pid && !processAlive(Number(m[1]));
  });
  for (const d of stale) rmSync(join(root, d), { recursive: true, force: true });
  return stale;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Points `checkpoints/latest` at a checkpoint folder name, or removes it (null: nothing to resume). */
export function pointLatest(runDir: string, name: string | null): void {
  const pointer = join(runDir, "checkpoints", "latest");
  if (name === null) rmSync(pointer, { force: true });
  else writeAtomic(pointer, name + "\n");
}

export function readTrainerState(dir: string): TrainerState {
  return JSON.parse(readFileSync(join(dir, "trainer.json"), "utf8")) as TrainerState;
}

/** Records in a checkpoint that training diverged on its weights. */
export function markDiverged(dir: string, reason: string): void {
  const state = readTrainerState(dir);
  writeAtomic(join(dir, "trainer.json"), JSON.stringify({ ...state, health: { ...state.health, diverged: reason } }, null, 2) + "\n");
}

/** The folder of step N's checkpoint. */
export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, "checkpoints", `step-${String(step).padStart(6, "0")}`);
}

export function saveCheckpoint(runDir: string, model: nn.Module, opt: optim.Optimizer<{ lr: number }>, state: Omit<TrainerState, "rng">, keep: number): string {
  const root = join(runDir, "checkpoints");
  mkdirSync(root, { recursive: true });
  removeStaleTemps(runDir);
  const name = `step-${String(state.step).padStart(6, "0")}`;
  const tmp = join(root, `${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  io.saveFile(join(tmp, "model.safetensors"), model.stateDict());
  const o = opt.stateDict();
  io.saveFile(join(tmp, "optimizer.safetensors"), o.tensors, { optimizer: JSON.stringify(o.meta) });
  const rng = torch.getRngState();
  const full: TrainerState = { ...state, rng: Buffer.from(rng.toBytes()).toString("base64") };
  rng.dispose();
  writeFileSync(join(tmp, "trainer.json"), JSON.stringify(full, null, 2) + "\n");
  const final = join(root, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  pointLatest(runDir, name);
  // Keep the newest `keep` checkpoints. Every step-N folder is of this run: a fresh start refuses
  // a folder with checkpoints, and a resume from step S removes those after S.
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) rmSync(old.dir, { recursive: true, force: true });
  return final;
}

/** The checkpoint `latest` names, or null. */
export function latestCheckpoint(runDir: string): string | null {
  const pointer = join(runDir, "checkpoints", "latest");
  if (!existsSync(pointer)) return null;
  const dir = join(runDir, "checkpoints", readFileSync(pointer, "utf8").trim());
  if (!existsSync(join(dir, "trainer.json"))) throw new Error(`${pointer} names ${dir}, which is incomplete or missing; remove ${pointer} to start over`);
  return dir;
}

/** Restores model, optimizer and RNG from a checkpoint; returns the trainer state (step, loader cursor). */
export function loadCheckpoint(dir: string, model: nn.Module, opt: optim.Optimizer<{ lr: number }>): TrainerState {
  const state = readTrainerState(dir);
  if (state.health?.diverged) throw new Error(`${dir}: training diverged on these weights (${state.health.diverged}); point ${join(dir, "..", "latest")} at an earlier checkpoint`);
  const weights = io.loadFile(join(dir, "model.safetensors"));
  try { model.loadStateDict(weights); } finally { for (const t of weights.values()) t.dispose(); }
  const optPath = join(dir, "optimizer.safetensors");
  // Under ZeRO each rank reads only its partition's slots (a 7B AdamW state is 61 GB).
  const names = opt instanceof optim.ZeroRedundancyOptimizer ? [...io.readHeader(optPath).tensors.keys()].filter((k) => opt.ownsStateKey(k)) : undefined;
  const tensors = io.loadFile(optPath, names === undefined ? {} : { names });
  const meta = io.loadMetadata(optPath)?.optimizer;
  if (meta === undefined) throw new Error(`${optPath}: no "optimizer" metadata; the checkpoint is damaged`);
  try { opt.loadStateDict({ tensors, meta: JSON.parse(meta) }); } finally { for (const t of tensors.values()) t.dispose(); }
  const rng = torch.tensor(new Uint8Array(Buffer.from(state.rng, "base64")), { dtype: "uint8" });
  torch.setRngState(rng);
  rng.dispose();
  // Checkpoints written before health records lack these: no overrides, no resumes, no history.
  return { ...state, overrides: state.overrides ?? {}, resumes: state.resumes ?? [], gradNorms: state.gradNorms ?? [], gradSpikes: state.gradSpikes ?? { total: 0, inARow: 0 } };
}
