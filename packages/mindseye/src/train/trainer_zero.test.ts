// The trainer with ZeRO-1 and ZeRO-2 (train.zero_stage: 1, 2) in real processes: this file starts
// itself as the two ranks of a Gloo group (`node trainer_zero.test.js --rank-child <json>`, with
// torchrun's variables), each training the tiny task of test_helpers.ts on its shard, as
// trainer_child.ts does. A ZeRO run must end where plain DDP ends, bit for bit (the owner of a
// parameter computes AdamW's update of it and a broadcast copies bits; with 2 ranks the
// reduce-scatter's sums are DDP's all-reduce's, and ZeRO-2's clipping norm is clip.ts's), write the
// same checkpoint files (the state is gathered on rank 0 first), and resume, also in one process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, nn, optim, io, type Tensor } from "@mindseye/torch";
import { train, type TrainConfig } from "./trainer.js";
import { makeTask, tempRun } from "./test_helpers.js";
import { DataLoader } from "../data/loader.js";
import { dataShard, TrainSection, trainConfig } from "./stages/common.js";
import { freePort } from "@mindseye/torch/testing";

const SELF = fileURLToPath(import.meta.url);

interface ChildArgs {
  runDir: string; steps: number; batchSize: number; zeroStage?: 0 | 1 | 2; resume?: boolean; stopAfter?: number;
  /** Max gradient norm (absent: the trainer's 1). */
  clipGradNorm?: number;
  /** Freeze the parameters whose names start with this, and add an extra parameter the loss never uses. */
  freezeAndUnused?: string;
}
interface Result {
  steps: number; interrupted: boolean; losses: number[]; reductions: number;
  /** Gradient elements this rank held just before and just after its last ZeRO-2 reduction. */
  gradNumel: { before: number; after: number };
}

// ---------------------------------------------------------------------------------------------
// One rank (the child process): trainer_child.ts's task and loader, with zeroStage.
if (process.argv[2] === "--rank-child") {
  const args = JSON.parse(process.argv[3]!) as ChildArgs;
  const task = makeTask();
  if (args.freezeAndUnused !== undefined) {
    for (const [n, p] of task.model.namedParameters()) if (n.startsWith(args.freezeAndUnused)) p.requiresGrad_(false);
    task.extraParameters = [new nn.Parameter(torch.zeros([5]))]; // no rank ever gives it a gradient
  }
  task.loader = new DataLoader({ length: 64, get: (i: number) => Array.from({ length: 8 }, (_, t) => (i * 3 + t * 5) % 32) }, {
    batchSize: args.batchSize, seed: 9, ...dataShard(), collate: (recs: number[][]) => ({ tokens: torch.tensor(recs, { dtype: "int64" }) }),
  }) as DataLoader<unknown, { tokens: Tensor }>;
  const config: Partial<TrainConfig> & Pick<TrainConfig, "runDir" | "steps"> = {
    runDir: args.runDir, steps: args.steps, lr: 1e-2, warmupSteps: 2, checkpointEvery: 1000, logEvery: 1, batchSize: args.batchSize,
    autocast: "none", gradAccum: 2, distTimeoutMs: 20_000, ...(args.zeroStage === undefined ? {} : { zeroStage: args.zeroStage }),
    ...(args.clipGradNorm === undefined ? {} : { clipGradNorm: args.clipGradNorm }),
  };
  // count the ZeRO-2 gradient reductions the trainer runs (the real method runs), so a run that fell back to DDP's all-reduce is caught
  // and measure the gradient elements held around them
  let reductions = 0;
  const gradNumel = { before: 0, after: 0 };
  const reduce = optim.ZeroRedundancyOptimizer.prototype.reduceGradients;
  optim.ZeroRedundancyOptimizer.prototype.reduceGradients = function (this: optim.ZeroRedundancyOptimizer<optim.AdamWOptions>) {
    const held = () => this.paramGroups.flatMap((g) => g.params).reduce((a, p) => a + (p.grad?.numel() ?? 0), 0);
    gradNumel.before = held();
    reduce.call(this);
    gradNumel.after = held();
    reductions += 1;
  };
  const result = await train(task, config, { resume: args.resume ?? false, quiet: true, ...(args.stopAfter === undefined ? {} : { stopAfter: args.stopAfter }) });
  console.log(`result ${JSON.stringify({ steps: result.steps, interrupted: result.interrupted, losses: result.losses, reductions, gradNumel })}`);
} else {
  registerTests();
}

// ---------------------------------------------------------------------------------------------
// The tests (the parent process).
function registerTests(): void {
  /** Runs the child on `worldSize` ranks (1: a plain process); each rank's Result, in rank order. */
  const runRanks = async (args: ChildArgs, worldSize: 1 | 2): Promise<Result[]> => {
    const port = await freePort();
    return Promise.all(Array.from({ length: worldSize }, (_, rank) => new Promise<Result>((resolve, reject) => {
      const dist = worldSize === 1 ? {} : { RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) };
      const env: NodeJS.ProcessEnv = { ...process.env, MINDSEYE_NUM_THREADS: "1", MINDSEYE_BLAS_THREADS: "1", ...dist };
      if (worldSize === 1) for (const k of ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]) delete env[k];
      const child = spawn(process.execPath, [SELF, "--rank-child", JSON.stringify(args)], { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "", err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        const m = /^result (.*)$/m.exec(out);
        if (code === 0 && m) resolve(JSON.parse(m[1]!) as Result);
        else reject(new Error(`rank ${rank} exited with ${code ?? signal}:\n${err}`));
      });
    })));
  };

  const ckpt = (dir: string, step: number) => join(dir, "checkpoints", `step-${String(step).padStart(6, "0")}`);
  /** Largest |a - b| over every tensor of two safetensors files, which must hold the same names and metadata. */
  const fileDiff = (a: string, b: string): number => {
    assert.deepEqual(io.loadMetadata(a), io.loadMetadata(b), `${a} and ${b}: metadata`);
    const x = io.loadFile(a), y = io.loadFile(b);
    try {
      assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
      return Math.max(0, ...[...x.keys()].map((k) => torch.scope(() => x.get(k)!.sub(y.get(k)!).abs().amax().item())));
    } finally {
      for (const t of [...x.values(), ...y.values()]) t.dispose();
    }
  };

  const STEPS = 20, base = { steps: STEPS, batchSize: 4 };

  test("recipe: train.zero_stage 0, 1 or 2 reaches TrainConfig.zeroStage; absent, the config has no zeroStage; 3 is refused, by the recipe and by train()", async () => {
    assert.equal(trainConfig("r", TrainSection.parse({ steps: 5, zero_stage: 1 }), 0).zeroStage, 1);
    assert.equal(trainConfig("r", TrainSection.parse({ steps: 5, zero_stage: 2 }), 0).zeroStage, 2);
    assert.equal("zeroStage" in trainConfig("r", TrainSection.parse({ steps: 5 }), 0), false);
    assert.equal("zero_stage" in TrainSection.parse({ steps: 5 }), false, "the resolved recipe is unchanged when absent");
    assert.throws(() => TrainSection.parse({ steps: 5, zero_stage: 3 }));
    await assert.rejects(train(makeTask(), { runDir: "unused", steps: 1, zeroStage: 3 as 2 }), /zeroStage must be 0 \(plain DDP\), 1 \(optimizer state sharded\) or 2 \(gradients too\), got 3/);
  });

  test("trainer, 2 ranks: ZeRO-1 ends 20 steps with plain DDP's losses, weights and checkpoint (bit for bit); a ZeRO-1 run stopped at step 10 resumes to the same weights, on 2 ranks and in 1 process", { timeout: 300_000 }, async (t) => {
    const plain = tempRun(), zero = tempRun(), stopped = tempRun(), single = tempRun();
    try {
      // 1. plain DDP and ZeRO-1 (2 micro-batches per step)
      const [p0] = await runRanks({ ...base, runDir: plain }, 2);
      const [z0, z1] = await runRanks({ ...base, runDir: zero, zeroStage: 1 }, 2);
      assert.deepEqual(z0!.losses, z1!.losses);
      const lossErr = Math.max(...p0!.losses.map((l, i) => Math.abs(l - z0!.losses[i]!)));
      const weightErr = fileDiff(join(ckpt(plain, STEPS), "model.safetensors"), join(ckpt(zero, STEPS), "model.safetensors"));
      const stateErr = fileDiff(join(ckpt(plain, STEPS), "optimizer.safetensors"), join(ckpt(zero, STEPS), "optimizer.safetensors"));
      // 2. ZeRO-1 stopped with a checkpoint at step 10, resumed on 2 ranks
      const [s0] = await runRanks({ ...base, runDir: stopped, zeroStage: 1, stopAfter: 10 }, 2);
      assert.equal(s0!.steps, 10);
      cpSync(stopped, single, { recursive: true });
      const [r0] = await runRanks({ ...base, runDir: stopped, zeroStage: 1, resume: true }, 2);
      assert.equal(r0!.steps, STEPS);
      const resumeErr = fileDiff(join(ckpt(stopped, STEPS), "model.safetensors"), join(ckpt(zero, STEPS), "model.safetensors"));
      // 3. the same checkpoint resumed by one process (zero_stage 1 trains plainly there): the full state loads
      const [o0] = await runRanks({ ...base, runDir: single, zeroStage: 1, resume: true }, 1);
      assert.equal(o0!.steps, STEPS);
      const trainer = JSON.parse(readFileSync(join(ckpt(single, STEPS), "trainer.json"), "utf8")) as { resumes: { worldSize?: { from: number; to: number } }[] };
      t.diagnostic(`ZeRO-1 vs plain DDP after ${STEPS} steps: max |Δloss| ${lossErr.toExponential(2)}, |Δweight| ${weightErr.toExponential(2)}, |Δoptimizer state| ${stateErr.toExponential(2)}; ` +
        `stopped at 10 and resumed on 2 ranks: |Δweight| ${resumeErr.toExponential(2)}; resumed in 1 process: losses ${o0!.losses.slice(0, 2).map((l) => l.toFixed(4)).join(", ")}, ...`);
      assert.equal(lossErr, 0, `losses differ by ${lossErr}`);
      assert.equal(weightErr, 0, `weights differ by ${weightErr}`);
      assert.equal(stateErr, 0, `optimizer states differ by ${stateErr}`);
      assert.equal(resumeErr, 0, `resumed weights differ by ${resumeErr}`);
      assert.deepEqual(trainer.resumes.at(-1)!.worldSize, { from: 2, to: 1 });
      assert.ok(o0!.losses.every(Number.isFinite));
    } finally {
      for (const d of [plain, zero, stopped, single]) rmSync(d, { recursive: true, force: true });
    }
  });

  test("trainer, 2 ranks: ZeRO-2 (a frozen embedding, a parameter no rank uses, clipping active) ends 20 steps with plain DDP's losses, grad norms, weights and checkpoint (bit for bit); stopped at step 10 it resumes on 2 ranks, in 1 process, and a ZeRO-1 checkpoint resumes under ZeRO-2", { timeout: 300_000 }, async (t) => {
    const plain = tempRun(), zero = tempRun(), stopped = tempRun(), single = tempRun(), fromZero1 = tempRun();
    const opts = { ...base, clipGradNorm: 0.5, freezeAndUnused: "pos_emb" };
    const gradNorms = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { split: string; grad_norm?: number })
      .filter((m) => m.split === "train").map((m) => m.grad_norm!);
    try {
      // 1. plain DDP and ZeRO-2 (2 micro-batches per step: one reduce-scatter, after the second)
      const [p0] = await runRanks({ ...opts, runDir: plain }, 2);
      const [z0, z1] = await runRanks({ ...opts, runDir: zero, zeroStage: 2 }, 2);
      assert.deepEqual(z0!.losses, z1!.losses);
      assert.deepEqual([p0!.reductions, z0!.reductions, z1!.reductions], [0, STEPS, STEPS], "ZeRO-2 reduced the gradients once per step, plain DDP never");
      // gradient memory: before the reduction each rank holds every trained gradient (3,824 elements:
      // the decoder less its frozen pos_emb; the unused extra parameter has none), after it its partition's
      const [g0, g1] = [z0!.gradNumel, z1!.gradNumel];
      assert.deepEqual([g0.before, g1.before], [3824, 3824]);
      assert.equal(g0.after + g1.after, g0.before, "every gradient is held by exactly one rank");
      const ratios = [g0.after / g0.before, g1.after / g1.before];
      assert.ok(ratios.every((r) => Math.abs(r - 0.5) < 0.05), `gradient elements per rank after the reduction: ${ratios}`);
      const lossErr = Math.max(...p0!.losses.map((l, i) => Math.abs(l - z0!.losses[i]!)));
      const normsPlain = gradNorms(plain), normsZero = gradNorms(zero);
      assert.equal(normsZero.length, STEPS);
      const normErr = Math.max(...normsPlain.map((n, i) => Math.abs(n - normsZero[i]!)));
      const weightErr = fileDiff(join(ckpt(plain, STEPS), "model.safetensors"), join(ckpt(zero, STEPS), "model.safetensors"));
      const stateErr = fileDiff(join(ckpt(plain, STEPS), "optimizer.safetensors"), join(ckpt(zero, STEPS), "optimizer.safetensors"));
      // 2. ZeRO-2 stopped with a checkpoint at step 10, resumed on 2 ranks and (a copy) in one process
      const [s0] = await runRanks({ ...opts, runDir: stopped, zeroStage: 2, stopAfter: 10 }, 2);
      assert.equal(s0!.steps, 10);
      cpSync(stopped, single, { recursive: true });
      const [r0] = await runRanks({ ...opts, runDir: stopped, zeroStage: 2, resume: true }, 2);
      assert.equal(r0!.steps, STEPS);
      assert.equal(r0!.reductions, STEPS - 10);
      const resumeErr = fileDiff(join(ckpt(stopped, STEPS), "model.safetensors"), join(ckpt(zero, STEPS), "model.safetensors"));
      const [o0] = await runRanks({ ...opts, runDir: single, zeroStage: 2, resume: true }, 1);
      assert.equal(o0!.steps, STEPS);
      assert.equal(o0!.reductions, 0, "one process trains plainly");
      // 3. a ZeRO-1 run stopped at step 10 and resumed under ZeRO-2: the same file, the same training
      await runRanks({ ...opts, runDir: fromZero1, zeroStage: 1, stopAfter: 10 }, 2);
      await runRanks({ ...opts, runDir: fromZero1, zeroStage: 2, resume: true }, 2);
      const switchErr = fileDiff(join(ckpt(fromZero1, STEPS), "model.safetensors"), join(ckpt(zero, STEPS), "model.safetensors"));
      t.diagnostic(`gradient elements held after the reduction: rank 0 ${g0.after}, rank 1 ${g1.after} of ${g0.before} (${ratios.map((r) => r.toFixed(3)).join(", ")} of DDP's); ` +
        `ZeRO-2 vs plain DDP after ${STEPS} steps: max |Δloss| ${lossErr.toExponential(2)}, |Δgrad norm| ${normErr.toExponential(2)} (norms ${normsZero[0]!.toFixed(3)} … ${normsZero.at(-1)!.toFixed(3)}, clipped at 0.5), ` +
        `|Δweight| ${weightErr.toExponential(2)}, |Δoptimizer state| ${stateErr.toExponential(2)}; stopped at 10 and resumed on 2 ranks: |Δweight| ${resumeErr.toExponential(2)}; ` +
        `ZeRO-1 to 10, then ZeRO-2: |Δweight| ${switchErr.toExponential(2)}; resumed in 1 process: losses ${o0!.losses.slice(0, 2).map((l) => l.toFixed(4)).join(", ")}, ...`);
      assert.equal(lossErr, 0, `losses differ by ${lossErr}`);
      assert.equal(normErr, 0, `grad norms differ by ${normErr}`);
      assert.ok(normsZero.filter((n) => n > 0.5).length >= STEPS / 2, `clipping was active on most steps: ${normsZero.map((n) => n.toFixed(2)).join(", ")}`);
      assert.equal(weightErr, 0, `weights differ by ${weightErr}`);
      assert.equal(stateErr, 0, `optimizer states differ by ${stateErr}`);
      assert.equal(resumeErr, 0, `resumed weights differ by ${resumeErr}`);
      assert.equal(switchErr, 0, `ZeRO-1 then ZeRO-2 weights differ by ${switchErr}`);
      assert.ok(o0!.losses.every(Number.isFinite));
    } finally {
      for (const d of [plain, zero, stopped, single, fromZero1]) rmSync(d, { recursive: true, force: true });
    }
  });
}
