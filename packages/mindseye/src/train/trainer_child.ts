// A training process for the trainer's process tests (trainer_process.test.ts): trains the tiny
// task of test_helpers.ts with the real trainer, printing each logged step, so that a test can
// signal or kill it at a known point.
//
//   node dist/train/trainer_child.js '{"runDir":"/tmp/x","steps":12,"checkpointEvery":5,"resume":true}'
//
// stdout: "step N" after each logged step; "blocking before step N" when `blockAt` is reached;
// "evaluating at step N" when an evaluation (which never ends, with `hangInEval`) starts; and a
// last line "result {...}" with the TrainResult. The exit code is the trainer's (143 after a
// SIGTERM stop, 130 after a SIGINT stop, 0 when done).
import { train, type ResumeOverrides } from "./trainer.js";
import { makeTask, BATCH_SIZE } from "./test_helpers.js";

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
}

const args = JSON.parse(process.argv[2]!) as ChildArgs;
const task = makeTask({ noisy: args.noisy ?? false });
const inner = task.step;
let calls = 0;
task.step = (batch) => {
  calls += 1;
  if (calls === args.blockAt) {
    console.log(`blocking before step ${calls}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // sleeps until the process is killed
  }
  return inner(batch);
};
task.onLog = (step) => console.log(`step ${step}`);
if (args.hangInEval !== undefined) {
  task.evaluate = (step) => {
    console.log(`evaluating at step ${step}`);
    return new Promise(() => { setInterval(() => {}, 1000); }); // never resolves; the timer keeps the process alive
  };
}
const result = await train(task, {
  runDir: args.runDir, steps: args.steps, lr: args.lr ?? 1e-2, warmupSteps: 2, checkpointEvery: args.checkpointEvery, logEvery: 1,
  evalEvery: args.hangInEval ?? 0, batchSize: BATCH_SIZE, autocast: "none",
}, { resume: args.resume ?? false, quiet: true, ...(args.overrides ? { overrides: args.overrides } : {}) });
const { losses: _losses, ...rest } = result;
console.log(`result ${JSON.stringify(rest)}`);
