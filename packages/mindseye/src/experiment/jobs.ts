// The study's steps run `jobs` at a time (`mindseye experiment --jobs N`, default: one per core).
//
// With one job every step runs in this process, one after another, in the order the study names
// them. With more, the steps after the base VLM — the two pretraining arms, the ablation cells,
// retrieval, and each fine-tune with its evaluations — each run in a process of their own
// (job_child.ts) as soon as what they read is done and a slot is free. On a 2-core machine two
// 1-thread fine-tunes do about 1.6× the work of one 2-thread fine-tune in the same time.
//
// A child gets cores / jobs BLAS threads (unless MINDSEYE_BLAS_THREADS or OPENBLAS_NUM_THREADS is
// set), so the numbers of a study depend on its thread settings as PyTorch's do, not on which
// child ran what. Children have their own process group: SIGINT, SIGTERM and SIGHUP reach them
// through this process, which passes each on to every running child (the trainer saves a
// checkpoint and stops; a second signal exits at once) and starts nothing new. When a step fails,
// the running ones are stopped the same way and the study fails with that step's error.
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { constants as osConstants } from "node:os";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import { runRecipe, StageInterrupted, type Recipe } from "../train/stages/index.js";
import { extractWorldTargets } from "../train/stages/latent_pretrain.js";
import { evaluate, type EvaluateOptions } from "../eval/run.js";
import { evaluateRetrieval, type RetrievalOptions } from "../analysis/retrieval.js";

/** One step's work, as data: what a child process is given. */
export type Job =
  | { kind: "train"; recipe: Recipe; quiet: boolean }
  | { kind: "eval"; options: EvaluateOptions }
  | { kind: "retrieval"; options: RetrievalOptions }
  | { kind: "targets"; options: Parameters<typeof extractWorldTargets>[0] };

/** Does a job here, in this process. */
export async function runJob(job: Job): Promise<void> {
  switch (job.kind) {
    case "train": await runRecipe(job.recipe, { quiet: job.quiet }); return;
    case "eval": await evaluate(job.options); return;
    case "retrieval": await evaluateRetrieval(job.options); return;
    case "targets": await extractWorldTargets(job.options); return;
  }
}

const CHILD = fileURLToPath(new URL("./job_child.js", import.meta.url));
const STOPS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** `--jobs`: a positive integer, or a ConfigError. */
export function parseJobs(text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) throw new ConfigError(`--jobs must be a positive integer, got "${text}"`);
  return Number(text);
}
export const defaultJobs = (): number => availableParallelism();

/** The exit code a shell reports for a child: its code, or 128 + the signal that ended it. */
const exitCode = (code: number | null, signal: NodeJS.Signals | null) => code ?? (signal !== null ? 128 + osConstants.signals[signal] : 1);
const isStop = (code: number) => STOPS.some((sig) => code === 128 + osConstants.signals[sig]);

/** A step a stop signal ended, or kept from starting; the same command resumes the study. */
export class StudyStopped extends StageInterrupted {
  constructor(what: string, started: boolean) {
    super(what);
    this.message = started
      ? `${what}: stopped (a training run keeps its last checkpoint); run the same command again to resume`
      : `the study stopped before ${what}; run the same command again to resume`;
    this.name = "StudyStopped";
  }
}

/**
 * Where a study's steps run: `task` schedules a piece of the study (in order with one job, at once
 * with more), `slot` holds one of the `jobs` slots while a piece runs, `run` does a step's work
 * (here with one job, in a child with more), and `settle` waits for every task.
 * ```ts
 * const jobs = new StudyJobs(2);
 * const a = jobs.task(() => jobs.slot(() => step(…, () => jobs.run({ kind: "train", recipe, quiet: true }, "finetune a"))));
 * const b = jobs.task(async () => { await a; … });
 * await jobs.settle();
 * ```
 */
export class StudyJobs {
  readonly parallel: boolean;
  private free: number;
  private readonly waiting: (() => void)[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly tasks: Promise<unknown>[] = [];
  private tail: Promise<unknown> = Promise.resolve();
  /** Set by a stop signal or a failed step: nothing new starts. */
  private stopped = false;
  private readonly handlers = STOPS.map((sig) => [sig, () => this.stop(sig)] as const);

  constructor(readonly jobs: number) {
    if (!Number.isInteger(jobs) || jobs < 1) throw new ConfigError(`jobs must be a positive integer, got ${jobs}`);
    this.parallel = jobs > 1;
    this.free = jobs;
  }

  /** Schedules `fn`: after the previous task with one job, now with more. Its failure stops the others. */
  task<T>(fn: () => Promise<T>): Promise<T> {
    const p: Promise<T> = this.parallel ? fn() : this.tail.then(fn);
    if (!this.parallel) this.tail = p;
    p.catch(() => { if (this.parallel) this.stop(null); }); // marks it handled too: settle() reports it
    this.tasks.push(p);
    return p;
  }

  /** Runs `fn` holding one of the slots; `what` names it if the study stops before it starts. */
  async slot<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.free === 0) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.free -= 1;
    try {
      if (this.stopped) throw new StudyStopped(what, false);
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }

  /** Does a step's work: in this process with one job, in a child process with more. */
  async run(job: Job, what: string): Promise<void> {
    if (!this.parallel) return runJob(job);
    if (this.stopped) throw new StudyStopped(what, false);
    const env = { ...process.env };
    if (env.MINDSEYE_BLAS_THREADS === undefined && env.OPENBLAS_NUM_THREADS === undefined) {
      env.MINDSEYE_BLAS_THREADS = String(Math.max(1, Math.floor(availableParallelism() / this.jobs)));
    }
    const child = spawn(process.execPath, [CHILD, JSON.stringify(job)], { env, stdio: "inherit", detached: true });
    if (this.children.size === 0) for (const [sig, h] of this.handlers) process.on(sig, h);
    this.children.add(child);
    const code = await new Promise<number>((resolve) => {
      child.on("error", () => resolve(1));
      child.on("close", (c, signal) => resolve(exitCode(c, signal)));
    });
    this.children.delete(child);
    if (this.children.size === 0) for (const [sig, h] of this.handlers) process.off(sig, h);
    if (isStop(code)) {
      if (!this.stopped) process.exitCode ??= code; // stopped from outside; after a failure, the failure's code
      throw new StudyStopped(what, true);
    }
    if (code !== 0) throw new Error(`${what}: its process exited with code ${code} (its output is above)`);
  }

  /** A stop signal (passed on to every child) or, with null, a failed step (the children get SIGTERM). */
  private stop(sig: NodeJS.Signals | null): void {
    if (sig !== null) process.exitCode = 128 + osConstants.signals[sig];
    if (this.stopped && sig === null) return;
    this.stopped = true;
    for (const child of this.children) child.kill(sig ?? "SIGTERM");
  }

  /** Waits for every task; then throws the first failure (a step's error before a stop), if any. */
  async settle(): Promise<void> {
    for (let seen = 0; seen < this.tasks.length;) {
      const batch = this.tasks.slice(seen);
      seen = this.tasks.length;
      const results = await Promise.allSettled(batch);
      const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
      if (failures.length > 0) {
        await Promise.allSettled(this.tasks);
        throw failures.find((e) => !(e instanceof StageInterrupted)) ?? failures[0];
      }
    }
  }
}
