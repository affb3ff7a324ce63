// The steps of a study (the world study, runner.ts, and the paper study, paper.ts): each writes its
// outputs into a folder and a marker (STUDY/steps/<its folder>.json) holding the fingerprint of the
// settings that made it and of the steps it read. A finished step whose fingerprint still matches
// is skipped; an unfinished one is run again (training resumes from its checkpoints); a step made
// with other settings — or from an upstream step that was redone — stops the study, named, unless
// `force`, which redoes it (and so, through the fingerprints, every step after it).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { ConfigError } from "../config/errors.js";
import { resolveModelRef } from "../config/hub.js";
import type { MachineRecord } from "../util/environment.js";
import type { EvalRun } from "./report.js";

/** A stretch of wall-clock time, as ISO dates. */
interface Interval { started: string; ended: string }

/**
 * What a study step records of itself, in STUDY/steps/<its output folder>.json: `started` and
 * `finished` bound its last attempt; `interrupted` holds the earlier attempts it resumed from, each
 * ending at the last write into its folder (a killed process records nothing of its end); `machine`
 * is what ran it. Markers written before start times and machines were recorded lack them.
 */
interface StepMarker { step: string; fingerprint: string; settings: unknown; complete: boolean; started?: string; finished?: string; interrupted?: Interval[]; machine?: MachineRecord }

export const sha = (v: unknown): string => createHash("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 16);

/** The marker file of the step writing to `out`, inside study folder `dir`. */
export function stepMarkerPath(dir: string, out: string): string {
  return join(dir, "steps", `${relative(dir, out).split(sep).join("__")}.json`);
}

function readMarker(path: string): StepMarker | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as StepMarker;
  } catch {
    return null;
  }
}

/** Dotted keys whose values differ between two settings objects (for the message). */
function changedKeys(a: unknown, b: unknown, prefix = ""): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) return a.flatMap((x, i) => changedKeys(x, b[i], prefix ? `${prefix}.${i}` : String(i)));
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => changedKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
  }
  return [prefix || "(all)"];
}

export type StepKind = "world" | "world-encoder" | "vlm-base" | "targets" | "latent-pretrain" | "retrieval" | "finetune" | "eval";

/** What a plan reports of each step: what a run would do to it. */
export interface PlannedStep {
  what: string;
  out: string;
  kind: StepKind;
  /** done: skipped; run: run (or resumed); changed: made otherwise, a run stops on it without --force. */
  status: "done" | "run" | "changed";
}

/**
 * Runs one step into `out` unless a finished one with the same fingerprint is there. `settings`
 * are what decide its output; `inputs` the tokens of the steps it reads. Returns this step's
 * token (its fingerprint and finish time: a redone step changes its readers').
 */
export type StepFn = ((kind: StepKind, what: string, out: string, settings: unknown, inputs: readonly string[], fn: () => Promise<unknown>) => Promise<string>) & {
  /** How many steps it has run (not skipped) so far. */
  ran(): number;
  /** When this invocation began (ms since the epoch). */
  readonly since: number;
};

/**
 * The step function of the study in folder `dir`; `elsewhere` says how a user writes a changed
 * step to another folder instead (default: a new study folder, --set out=…). With `plan`, steps
 * are only listed into it (nothing runs or is written); a step downstream of one that would run is
 * "changed" when it was made before, "run" when it never was. `machine` is recorded in the marker
 * of each step it runs (environment.ts machineRecord).
 * ```ts
 * const step = stepRunner({ dir, log: console.log, force: false, plan: null, machine: machineRecord() });
 * const token = await step("finetune", "finetune baseline", join(dir, "ft"), recipe, [baseToken], () => runFinetune(recipe));
 * ```
 */
export function stepRunner(o: { dir: string; log: (line: string) => void; force: boolean; plan: PlannedStep[] | null; elsewhere?: string; machine?: MachineRecord }): StepFn {
  const { dir, log, plan } = o;
  const since = Date.now();
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
  let ran = 0;
  const step = async (kind: StepKind, what: string, out: string, settings: unknown, inputs: readonly string[], fn: () => Promise<unknown>): Promise<string> => {
    const fingerprint = sha({ settings, inputs });
    const markerPath = stepMarkerPath(dir, out);
    const marker = readMarker(markerPath);
    const done = marker?.fingerprint === fingerprint && marker.complete;
    const changed = !done && existsSync(out) && readdirSync(out).length > 0 && marker?.fingerprint !== fingerprint;
    if (plan) {
      plan.push({ what, out, kind, status: done ? "done" : changed ? "changed" : "run" });
      return done ? sha([fingerprint, marker.finished]) : sha([fingerprint, "planned"]);
    }
    if (done) {
      log(`[skip] ${what} (done)`);
      return sha([fingerprint, marker.finished]);
    }
    if (changed) {
      const keys = marker === null ? [] : changedKeys(marker.settings, settings);
      const why = marker === null ? "holds outputs this study did not record"
        : keys.length > 0 ? `was made with other settings (changed: ${keys.join(", ")})`
          : "was made from earlier results of the steps it reads";
      if (!o.force) {
        throw new ConfigError(`${what}: ${out} ${why}. Rerun with --force to redo it and every step after it, or ${o.elsewhere ?? "give the study a new folder (--set out=…)"}.`);
      }
      log(`[redo] ${what}: ${why}`);
      rmSync(out, { recursive: true, force: true });
    }
    // A step resumed with the same settings keeps the time its earlier attempts spent.
    const interrupted = marker?.fingerprint === fingerprint && marker.started !== undefined
      ? [...(marker.interrupted ?? []), { started: marker.started, ended: lastWrite(out, markerPath) }] : [];
    const write = (m: StepMarker) => {
      mkdirSync(join(dir, "steps"), { recursive: true });
      writeFileSync(`${markerPath}.tmp`, JSON.stringify(m, null, 2) + "\n");
      renameSync(`${markerPath}.tmp`, markerPath);
    };
    const started = new Date().toISOString();
    // Kept by both of this attempt's markers: the earlier attempts and the machine that runs it.
    const history = { ...(interrupted.length > 0 ? { interrupted } : {}), ...(o.machine ? { machine: o.machine } : {}) };
    write({ step: what, fingerprint, settings, complete: false, started, ...history });
    log(`[run ] ${what} …`);
    ran++;
    await fn();
    const finished = new Date().toISOString();
    write({ step: what, fingerprint, settings, complete: true, started, finished, ...history });
    log(`[done] ${what} (${elapsed()})`);
    return sha([fingerprint, finished]);
  };
  return Object.assign(step, { ran: () => ran, since });
}

/** When anything under `out` (or, with nothing there, the marker itself) was last written, as an ISO date. */
function lastWrite(out: string, markerPath: string): string {
  let newest = existsSync(markerPath) ? statSync(markerPath).mtimeMs : 0;
  const walk = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) walk(child);
      else newest = Math.max(newest, statSync(child).mtimeMs);
    }
  };
  if (existsSync(out)) walk(out);
  return new Date(newest).toISOString();
}

/** Seconds covered by the union of `intervals` (ms since the epoch; overlaps count once). */
export function unionSeconds(intervals: readonly (readonly [number, number])[]): number {
  let total = 0;
  let reached = -Infinity; // the latest end counted so far
  for (const [from, to] of [...intervals].sort((x, y) => x[0] - y[0])) {
    const uncounted = Math.max(from, reached);
    if (to > uncounted) {
      total += to - uncounted;
      reached = to;
    }
  }
  return total / 1000;
}

/** The markers of the study's finished steps. */
function finishedSteps(dir: string): StepMarker[] {
  const stepsDir = join(dir, "steps");
  if (!existsSync(stepsDir)) return [];
  // The paper study keeps each launched step's recipe beside its marker (<marker>.recipe.json).
  return readdirSync(stepsDir).filter((name) => name.endsWith(".json") && !name.endsWith(".recipe.json"))
    .map((name) => readMarker(join(stepsDir, name))).filter((m): m is StepMarker => m?.complete === true);
}

/** What made a study's finished steps: each machine with its count of steps, and the steps made before machines were recorded. */
export interface StudyMachines { machines: (MachineRecord & { steps: number })[]; unrecorded: number }

export function studyMachines(dir: string): StudyMachines {
  const byMachine = new Map<string, MachineRecord & { steps: number }>();
  let unrecorded = 0;
  for (const marker of finishedSteps(dir)) {
    if (marker.machine === undefined) {
      unrecorded++;
      continue;
    }
    const key = JSON.stringify(marker.machine);
    const seen = byMachine.get(key) ?? { ...marker.machine, steps: 0 };
    seen.steps++;
    byMachine.set(key, seen);
  }
  return { machines: [...byMachine.values()].sort((a, b) => b.steps - a.steps), unrecorded };
}

/** The finished steps' attempts recorded in STUDY/steps (ms since the epoch), or null when a finished step's marker predates `started`. */
function recordedAttempts(dir: string): [number, number][] | null {
  const spans: [number, number][] = [];
  for (const marker of finishedSteps(dir)) {
    if (marker.started === undefined || marker.finished === undefined) return null;
    for (const span of [...(marker.interrupted ?? []), { started: marker.started, ended: marker.finished }]) {
      spans.push([Date.parse(span.started), Date.parse(span.ended)]);
    }
  }
  return spans;
}

/**
 * The wall time a study's results.json records. When this invocation ran steps: its own time joined
 * with the time every finished step of the study took, in earlier sittings too (interrupted
 * attempts included; overlapping steps and the gaps between sittings counted once and not at all),
 * or, when some finished step's marker predates start times, this invocation's time alone. When it
 * ran none and only rewrote the report: the time recorded by the one that ran them (rewriting the
 * report of an hour-long study must not make it a study of two seconds).
 */
export function studySeconds(dir: string, step: StepFn, elapsedSeconds: number): number {
  if (step.ran() > 0) {
    const spans = recordedAttempts(dir);
    return spans === null ? elapsedSeconds : unionSeconds([...spans, [step.since, step.since + elapsedSeconds * 1000]]);
  }
  try {
    const recorded = (JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as { seconds?: unknown }).seconds;
    if (typeof recorded === "number") return recorded;
  } catch {
    // no results.json yet
  }
  return elapsedSeconds;
}

/**
 * The token of a model a study reads but does not make (a directory or a Hugging Face id in the
 * hub cache): its resolved directory and its files' names, sizes and times, so that a model
 * replaced in place makes the steps that read it "changed", without hashing 16 GB.
 */
export function modelToken(ref: string, where: string): { dir: string; token: string } {
  const dir = resolveModelRef(ref);
  if (!existsSync(join(dir, "config.json"))) throw new ConfigError(`${where}: ${ref} is not a model directory (no config.json) nor a Hugging Face id in the hub cache`);
  const files = readdirSync(dir).sort().map((f) => { const st = statSync(join(dir, f)); return [f, st.size, st.mtimeMs]; });
  return { dir, token: sha([resolve(dir), files]) };
}

/** An evaluation's per-question outcomes, answers, question types and questions (predictions.jsonl). */
export function readPredictions(path: string): Pick<EvalRun, "outcomes" | "answers" | "types" | "questions"> {
  const outcomes = new Map<string, boolean>();
  const types = new Map<string, string>();
  const questions = new Map<string, string>();
  const answers: { type: string; prediction: string }[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const p = JSON.parse(line) as { id: string; correct: boolean; type: string; prediction: string; prompt: string; answer: string };
    outcomes.set(p.id, p.correct);
    types.set(p.id, p.type);
    questions.set(p.id, `${p.prompt} → ${p.answer}`);
    answers.push({ type: p.type, prediction: p.prediction });
  }
  return { outcomes, answers, types, questions };
}

/** The skipped-input line of an evaluation (null when every question was scored). */
export function skippedLine(what: string, resultsPath: string): string | null {
  const s = (JSON.parse(readFileSync(resultsPath, "utf8")) as { skipped: { records: number; images: number; items: number } }).skipped;
  return s.records + s.images + s.items > 0 ? `${what}: ${s.records} records, ${s.images} images, ${s.items} questions skipped` : null;
}
