// The study's steps run `jobs` at a time (`mindseye experiment --jobs N`, default: one per core).
//
// With one job every step runs in this process, one after another, in the order the study names
// them. With more, the steps after the study seed's base VLM — the other seeds' bases (replicate:
// base), the pretraining arms, the ablation cells, retrieval, and each fine-tune with its
// evaluations — start as soon as what they read is done and one of `jobs` slots is free, and do
// their work in worker processes (job_child.ts), kept for the whole study so that each decodes the
// world's images once. On a 2-core machine two 1-thread
// fine-tunes do about 1.6× the work of one 2-thread fine-tune in the same time.
//
// A worker gets cores / jobs BLAS threads (unless MINDSEYE_BLAS_THREADS or OPENBLAS_NUM_THREADS is
// set), so the numbers of a study depend on its thread settings as PyTorch's do, not on which
// worker ran what. Workers have their own process group: SIGINT, SIGTERM and SIGHUP reach them
// through this process, which passes each on to every worker (a training step saves a checkpoint
// and stops; a second signal exits at once) and starts nothing new. When a step fails, the running
// ones are stopped the same way and the study fails with that step's error.
import { fork, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { constants as osConstants } from "node:os";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import { runRecipe, StageInterrupted, type Recipe } from "../train/stages/index.js";
import { extractWorldTargets } from "../train/stages/latent_pretrain.js";
import { evaluate, type EvaluateOptions } from "../eval/run.js";
import { evaluateRetrieval, type RetrievalOptions } from "../analysis/retrieval.js";

/** One step's work, as data: what a worker is sent. */
export type Job =
  | { kind: "train"; recipe: Recipe; quiet: boolean }
  | { kind: "eval"; options: EvaluateOptions }
  | { kind: "retrieval"; options: RetrievalOptions }
  | { kind: "targets"; options: Parameters<typeof extractWorldTargets>[0] };

/** A worker's answer to a job (job_child.ts); a stopped worker exits instead, with the trainer's code. */
export type WorkerReply = { kind: "done" } | { kind: "failed"; message: string };

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
 * (here with one job, in a worker process with more), `settle` waits for every task, and `close`
 * ends the workers.
 * ```ts
 * const jobs = new StudyJobs(2);
 * const a = jobs.task(() => jobs.slot(() => step(…, () => jobs.run({ kind: "train", recipe, quiet: true }, "finetune a"))));
 * const b = jobs.task(async () => { await a; … });
 * try { await jobs.settle(); } finally { jobs.close(); }
 * ```
 */
export class StudyJobs {
  readonly parallel: boolean;
  private free: number;
  private readonly waiting: (() => void)[] = [];
  /** Every worker process, and those waiting for a step. */
  private readonly workers = new Set<ChildProcess>();
  private readonly idle: ChildProcess[] = [];
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

  /**
   * Does a step's work: in this process with one job; with more, in one of up to `jobs` worker
   * processes, each kept for the whole study (its decoded images cached across the steps it does).
   */
  async run(job: Job, what: string): Promise<void> {
    if (!this.parallel) return runJob(job);
    if (this.stopped) throw new StudyStopped(what, false);
    let worker = this.idle.pop();
    while (worker !== undefined && !worker.connected) { // an idle worker that died (killed from outside)
      this.forget(worker);
      worker = this.idle.pop();
    }
    worker ??= this.fork();
    const w = worker;
    const outcome = await new Promise<WorkerReply | { kind: "exited"; code: number }>((resolve) => {
      w.once("message", (m: WorkerReply) => resolve(m));
      w.once("exit", (c, signal) => resolve({ kind: "exited", code: exitCode(c, signal) }));
      w.once("error", () => resolve({ kind: "exited", code: 1 }));
      w.send(job);
    });
    w.removeAllListeners("message").removeAllListeners("exit").removeAllListeners("error");
    if (outcome.kind === "done" || outcome.kind === "failed") this.idle.push(w);
    else this.forget(w);
    if (outcome.kind === "done") return;
    if (outcome.kind === "failed") throw new Error(`${what}: ${outcome.message}`);
    if (isStop(outcome.code)) {
      if (!this.stopped) process.exitCode ??= outcome.code; // stopped from outside; after a failure, the failure's code
      throw new StudyStopped(what, true);
    }
    throw new Error(`${what}: its process exited with code ${outcome.code} (its output is above)`);
  }

  /** A new worker (job_child.ts) in its own process group; this process passes stop signals on to it. */
  private fork(): ChildProcess {
    const env = { ...process.env };
    if (env.MINDSEYE_BLAS_THREADS === undefined && env.OPENBLAS_NUM_THREADS === undefined) {
      env.MINDSEYE_BLAS_THREADS = String(Math.max(1, Math.floor(availableParallelism() / this.jobs)));
    }
    const worker = fork(CHILD, [], { env, stdio: ["ignore", "inherit", "inherit", "ipc"], detached: true });
    if (this.workers.size === 0) for (const [sig, h] of this.handlers) process.on(sig, h);
    this.workers.add(worker);
    return worker;
  }

  private forget(worker: ChildProcess): void {
    this.workers.delete(worker);
    if (this.workers.size === 0) for (const [sig, h] of this.handlers) process.off(sig, h);
  }

  /** Ends the idle workers (each exits when its channel closes). */
  close(): void {
    for (const worker of this.idle.splice(0)) {
      if (worker.connected) worker.disconnect();
      this.forget(worker);
    }
  }

  /** A stop signal (passed on to every child) or, with null, a failed step (the children get SIGTERM). */
  private stop(sig: NodeJS.Signals | null): void {
    if (sig !== null) process.exitCode = 128 + osConstants.signals[sig];
    if (this.stopped && sig === null) return;
    this.stopped = true;
    for (const worker of this.workers) worker.kill(sig ?? "SIGTERM");
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
