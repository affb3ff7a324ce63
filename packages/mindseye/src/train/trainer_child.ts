// A training process for the trainer's process tests (trainer_process.test.ts, trainer_ddp.test.ts):
// trains the tiny task of test_helpers.ts with the real trainer, printing each logged step, so that
// a test can signal or kill it at a known point. Started by `mindseye launch` (RANK, WORLD_SIZE set),
// each rank trains its shard under DDP.
//
//   node dist/train/trainer_child.js '{"runDir":"/tmp/x","steps":12,"checkpointEvery":5,"resume":true}'
//
// stdout: "step N" after each logged step ("rank R step N" under DDP); "blocking before step N"
// when `blockAt` is reached; "evaluating at step N" when an evaluation (which never ends, with
// `hangInEval`) starts; and a last line "result {...}" ("rank R result {...}") with the TrainResult.
// The exit code is the trainer's (143 after a SIGTERM stop, 130 after a SIGINT stop, 0 when done).
import { torch, type Tensor } from "@mindseye/torch";
import { train, type ResumeOverrides } from "./trainer.js";
import { makeTask, BATCH_SIZE } from "./test_helpers.js";
import { DataLoader } from "../data/loader.js";
import { dataShard } from "./stages/common.js";

interface ChildArgs {
  runDir: string;
  steps: number;
  lr?: number;
  checkpointEvery: number;
  resume?: boolean;
  noisy?: boolean;
  /** Block (sleep, never returning) when step() is called for this step: the run is then killed between checkpoints. */
  blockAt?: number;
  /** Evaluate every this many steps, and never finish the evaluation. */
  hangInEval?: number;
  overrides?: ResumeOverrides;
  /** Examples per micro-batch (per rank), default BATCH_SIZE; the loader takes this rank's shard (dataShard). */
  batchSize?: number;
  gradAccum?: number;
  distTimeoutMs?: number;
}

const args = JSON.parse(process.argv[2]!) as ChildArgs;
const task = makeTask({ noisy: args.noisy ?? false });
const batch = args.batchSize ?? BATCH_SIZE;
// The same records and seed as makeTask's loader, at this batch size and on this rank's shard.
task.loader = new DataLoader({ length: 64, get: (i: number) => Array.from({ length: 8 }, (_, t) => (i * 3 + t * 5) % 32) }, {
  batchSize: batch, seed: 9, ...dataShard(), collate: (recs: number[][]) => ({ tokens: torch.tensor(recs, { dtype: "int64" }) }),
}) as DataLoader<unknown, { tokens: Tensor }>;
const tag = process.env.WORLD_SIZE === undefined ? "" : `rank ${process.env.RANK} `;
const inner = task.step;
let calls = 0;
task.step = (b) => {
  calls += 1;
  if (calls === args.blockAt) {
    console.log(`${tag}blocking before step ${calls}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // sleeps until the process is killed
  }
  return inner(b);
};
task.onLog = (step) => console.log(`${tag}step ${step}`);
if (args.hangInEval !== undefined) {
  task.evaluate = (step) => {
    console.log(`${tag}evaluating at step ${step}`);
    return new Promise(() => { setInterval(() => {}, 1000); }); // never resolves; the timer keeps the process alive
  };
}
const result = await train(task, {
  runDir: args.runDir, steps: args.steps, lr: args.lr ?? 1e-2, warmupSteps: 2, checkpointEvery: args.checkpointEvery, logEvery: 1,
  evalEvery: args.hangInEval ?? 0, batchSize: batch, autocast: "none", gradAccum: args.gradAccum ?? 1,
  ...(args.distTimeoutMs === undefined ? {} : { distTimeoutMs: args.distTimeoutMs }),
}, { resume: args.resume ?? false, quiet: true, ...(args.overrides ? { overrides: args.overrides } : {}) });
const { losses, ...rest } = result;
console.log(`${tag}result ${JSON.stringify({ ...rest, losses })}`);
