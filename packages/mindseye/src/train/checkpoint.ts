// Training checkpoints: everything an exact resume needs, written atomically.
//
//   runDir/checkpoints/step-000300/
//     model.safetensors       every parameter and persistent buffer (frozen ones included)
//     optimizer.safetensors   optimizer slots; metadata "optimizer" = groups and step counts (JSON)
//     trainer.json            step, RNG state, loader cursor, the schedule's settings
//   runDir/checkpoints/latest  the name of the newest complete checkpoint
//
// A checkpoint directory is written under a temporary name and renamed into place, and
// `latest` is replaced atomically after it: a crash mid-write leaves the previous one intact.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, io, nn, optim } from "@mindseye/torch";
import type { LoaderCursor } from "../data/loader.js";

export interface TrainerState {
  step: number;
  /** The default CPU generator's state, base64 (torch.getRngState bytes). */
  rng: string;
  loader: LoaderCursor;
  /** Settings the resumed run must share (schedule, batch size...), checked on resume. */
  fingerprint: Record<string, unknown>;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

export function saveCheckpoint(runDir: string, model: nn.Module, opt: optim.Optimizer<{ lr: number }>, state: Omit<TrainerState, "rng">, keep: number): string {
  const root = join(runDir, "checkpoints");
  mkdirSync(root, { recursive: true });
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
  writeAtomic(join(root, "latest"), name + "\n");
  // Keep the newest `keep` checkpoints.
  const all = readdirSync(root).filter((d) => /^step-\d+$/.test(d)).sort();
  for (const old of all.slice(0, Math.max(0, all.length - keep))) rmSync(join(root, old), { recursive: true, force: true });
  return final;
}

/** The newest complete checkpoint of a run, or null. */
export function latestCheckpoint(runDir: string): string | null {
  const pointer = join(runDir, "checkpoints", "latest");
  if (!existsSync(pointer)) return null;
  const dir = join(runDir, "checkpoints", readFileSync(pointer, "utf8").trim());
  if (!existsSync(join(dir, "trainer.json"))) throw new Error(`${pointer} names ${dir}, which is incomplete or missing; remove ${pointer} to start over`);
  return dir;
}

/** Restores model, optimizer and RNG from a checkpoint; returns the trainer state (step, loader cursor). */
export function loadCheckpoint(dir: string, model: nn.Module, opt: optim.Optimizer<{ lr: number }>): TrainerState {
  const state = JSON.parse(readFileSync(join(dir, "trainer.json"), "utf8")) as TrainerState;
  const weights = io.loadFile(join(dir, "model.safetensors"));
  try { model.loadStateDict(weights); } finally { for (const t of weights.values()) t.dispose(); }
  const optPath = join(dir, "optimizer.safetensors");
  const tensors = io.loadFile(optPath);
  const meta = io.loadMetadata(optPath)?.optimizer;
  if (meta === undefined) throw new Error(`${optPath}: no "optimizer" metadata; the checkpoint is damaged`);
  try { opt.loadStateDict({ tensors, meta: JSON.parse(meta) }); } finally { for (const t of tensors.values()) t.dispose(); }
  const rng = torch.tensor(new Uint8Array(Buffer.from(state.rng, "base64")), { dtype: "uint8" });
  torch.setRngState(rng);
  rng.dispose();
  return state;
}
