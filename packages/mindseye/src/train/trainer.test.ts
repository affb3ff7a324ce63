import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { torch, nn, optim, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder } from "@mindseye/torch/testing";
import { train, parameterGroups, NonFiniteLossError, DivergenceError, SPIKES_IN_A_ROW } from "./trainer.js";
import { readTrainerState, type TrainerState } from "./checkpoint.js";
import { RunLockedError } from "./run_lock.js";
import { readScalars } from "./tensorboard.js";
import { CFG, makeTask, tempRun, free } from "./test_helpers.js";

test("a run killed and resumed produces the same loss curve as an uninterrupted one", async () => {
  const dirA = tempRun(), dirB = tempRun();
  try {
    const full = makeTask({ noisy: true });
    const a = await train(full, { runDir: dirA, steps: 8, lr: 1e-2, warmupSteps: 2, checkpointEvery: 3, logEvery: 2 }, { quiet: true });
    assert.equal(a.steps, 8);
    assert.ok(a.losses[7]! < a.losses[0]!, `loss fell: ${a.losses[0]} -> ${a.losses[7]}`);

    const first = makeTask({ noisy: true });
    const b1 = await train(first, { runDir: dirB, steps: 8, lr: 1e-2, warmupSteps: 2, checkpointEvery: 3, logEvery: 2 }, { quiet: true, stopAfter: 5 });
    assert.equal(b1.steps, 5);
    assert.ok(b1.interrupted);
    free(first.model);
    const second = makeTask({ noisy: true }); // a fresh process: new model, new loader
    const b2 = await train(second, { runDir: dirB, steps: 8, lr: 1e-2, warmupSteps: 2, checkpointEvery: 3, logEvery: 2 }, { quiet: true, resume: true });
    assert.deepEqual([...b1.losses, ...b2.losses], a.losses);
    const wA = full.model.stateDict(), wB = second.model.stateDict();
    for (const [k, t] of wA) assert.ok(torch.scope(() => t.sub(wB.get(k)!).abs().amax().item()) === 0, `${k} identical after resume`);
    free(full.model); free(second.model);

    // checkpoints: the newest two are kept, and `latest` names the last
    const ckpts = readdirSync(join(dirB, "checkpoints")).filter((d) => d.startsWith("step-")).sort();
    assert.deepEqual(ckpts, ["step-000006", "step-000008"]);
    assert.equal(readFileSync(join(dirB, "checkpoints", "latest"), "utf8").trim(), "step-000008");
  } finally {
    rmSync(dirA, { recursive: true, force: true });
    rmSync(dirB, { recursive: true, force: true });
  }
});

test("metrics go to metrics.jsonl and TensorBoard event files", async () => {
  const dir = tempRun();
  try {
    const task = makeTask();
    const r = await train(task, { runDir: dir, steps: 4, logEvery: 2, checkpointEvery: 100 }, { quiet: true });
    const lines = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
    assert.deepEqual(lines.map((l) => l.step), [2, 4]);
    assert.equal(lines[1]!.loss, r.losses[3]);
    assert.equal(lines[0]!.tokens, 28);
    assert.ok(lines.every((l) => l.lr! > 0 && l.grad_norm! > 0 && l.samples_per_s! > 0));
    const events = readdirSync(dir).find((f) => f.startsWith("events.out.tfevents."))!;
    const scalars = readScalars(readFileSync(join(dir, events)));
    const loss = scalars.filter((s) => s.tag === "train/loss");
    assert.deepEqual(loss.map((s) => s.step), [2, 4]);
    assert.ok(Math.abs(loss[1]!.value - r.losses[3]!) < 1e-5);
    assert.ok(existsSync(join(dir, "train_config.json")));
    free(task.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a non-finite loss stops the run and points at the last good checkpoint", async () => {
  const dir = tempRun();
  try {
    const task = makeTask({ poison: 4 });
    await assert.rejects(train(task, { runDir: dir, steps: 6, checkpointEvery: 2 }, { quiet: true }), (e: Error) =>
      e instanceof NonFiniteLossError && /diverged at step 4: the loss became NaN/.test(e.message) && /step-000002/.test(e.message));
    free(task.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("frozen parameters get no gradient and stay unchanged; every trainable one changes", async () => {
  const dir = tempRun();
  try {
    const task = makeTask();
    task.model.blocks.at(0).requiresGrad_(false); // freeze the transformer block
    const before = new Map(task.model.namedParameters().map(([n, p]) => [n, p.clone()]));
    await train(task, { runDir: dir, steps: 2, checkpointEvery: 100 }, { quiet: true });
    for (const [name, p] of task.model.namedParameters()) {
      const changed = torch.scope(() => p.sub(before.get(name)!).abs().amax().item()) > 0;
      assert.equal(changed, p.requiresGrad, `${name}: ${p.requiresGrad ? "trainable but unchanged" : "frozen but changed"}`);
      if (!p.requiresGrad) assert.equal(p.grad, null);
    }
    before.forEach((t) => t.dispose());
    free(task.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SIGTERM saves a checkpoint and ends the run cleanly", async () => {
  const dir = tempRun();
  try {
    const task = makeTask();
    const inner = task.step;
    let n = 0;
    task.step = (b) => { if (++n === 2) process.emit("SIGTERM"); return inner(b); };
    const r = await train(task, { runDir: dir, steps: 10, checkpointEvery: 100 }, { quiet: true });
    assert.equal(process.exitCode, 143); // what the process would report; this test runner must exit 0
    process.exitCode = 0;
    assert.equal(r.steps, 2);
    assert.ok(r.interrupted);
    assert.equal(r.signal, "SIGTERM");
    assert.ok(existsSync(join(dir, "checkpoints", "step-000002", "model.safetensors")));
    free(task.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("parameter groups: no weight decay on norms, biases and embeddings", () => {
  torch.manualSeed(0);
  const model = new ReferenceDecoder(CFG);
  const [decay, noDecay] = parameterGroups(model, [], { weightDecay: 0.1, noDecayNormBiasEmbedding: true });
  const names = new Map(model.namedParameters().map(([n, p]) => [p as Tensor, n]));
  assert.deepEqual(decay!.params.map((p) => names.get(p)).sort(), ["blocks.0.attn.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.fc.weight", "blocks.0.out.weight"]);
  assert.equal(decay!.weightDecay, 0.1);
  assert.equal(noDecay!.weightDecay, 0);
  assert.ok(noDecay!.params.map((p) => names.get(p)).includes("tok_emb.weight"));
  free(model);
});

test("parameter groups: extra parameters (a learned temperature) land in the no-decay group only", async () => {
  torch.manualSeed(0);
  const model = new ReferenceDecoder(CFG);
  const logTemperature = new nn.Parameter(torch.tensor([Math.log(0.1)]));
  const groups = parameterGroups(model, [logTemperature], { weightDecay: 0.1, noDecayNormBiasEmbedding: true });
  assert.deepEqual(groups.map((g) => g.params.filter((p) => p === logTemperature).length), [0, 1]);
  assert.doesNotThrow(() => new optim.AdamW(groups, { lr: 1e-3 })); // threw "a parameter appears in more than one group"
  // and a run with it trains the temperature
  const dir = tempRun();
  try {
    const task = makeTask();
    const inner = task.step;
    task.step = (b) => { const out = inner(b); return { loss: out.loss.mul(logTemperature.exp().mul(10)) }; };
    task.extraParameters = [logTemperature];
    const before = logTemperature.item();
    await train(task, { runDir: dir, steps: 2, checkpointEvery: 100 }, { quiet: true });
    assert.notEqual(logTemperature.item(), before);
    free(task.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
    logTemperature.dispose();
  }
});

const trainerJson = (dir: string, name: string): TrainerState => readTrainerState(join(dir, "checkpoints", name));
const latest = (dir: string) => readFileSync(join(dir, "checkpoints", "latest"), "utf8").trim();

test("divergence at lr=1e18 names a checkpoint whose weights trained healthily, and a resume with --override lr works", async () => {
  const dir = tempRun();
  const config = { runDir: dir, steps: 6, lr: 1e18, warmupSteps: 2, checkpointEvery: 1, logEvery: 1, batchSize: 4 };
  try {
    // Step 1 runs at lr 0 (warmup) and step 2 at 5e17, so the weights of step 2 are huge and step 3's loss is NaN.
    // Step-2's checkpoint holds the weights that produced the NaN: the healthy one is step 1.
    const t1 = makeTask();
    await assert.rejects(train(t1, config, { quiet: true, resume: true }), (e: Error) =>
      e instanceof NonFiniteLossError && e.step === 3 && e.checkpoint === join(dir, "checkpoints", "step-000001") &&
      /--override lr=1e17 /.test(e.message));
    free(t1.model);
    assert.equal(latest(dir), "step-000001");
    assert.equal(trainerJson(dir, "step-000001").health.weightsFinite, true);
    assert.match(trainerJson(dir, "step-000002").health.diverged!, /step 3: the loss became NaN/);

    // A changed lr without an override is refused, and the run's recorded settings stay as they were.
    const recorded = readFileSync(join(dir, "train_config.json"), "utf8");
    const t2 = makeTask();
    await assert.rejects(train(t2, { ...config, lr: 1e-2 }, { quiet: true, resume: true }), /lr was 1000000000000000000, now 0.01.*--override lr=/);
    assert.equal(readFileSync(join(dir, "train_config.json"), "utf8"), recorded);
    free(t2.model);

    // The advised resume: the same settings with an lr override, from step 1.
    const t3 = makeTask();
    const r3 = await train(t3, config, { quiet: true, resume: true, overrides: { lr: 1e-2 }, stopAfter: 4 });
    assert.equal(r3.steps, 4);
    assert.ok(r3.losses.every(Number.isFinite));
    free(t3.model);
    const state = trainerJson(dir, "step-000004");
    assert.deepEqual(state.overrides, { lr: 1e-2 });
    assert.deepEqual(state.resumes.map((r) => [r.step, r.overrides]), [[1, { lr: 1e-2 }]]);
    assert.equal(state.fingerprint.lr, 1e18); // the run's own settings stay its fingerprint
    const cfg = JSON.parse(readFileSync(join(dir, "train_config.json"), "utf8")) as { lr: number; overrides: unknown };
    assert.equal(cfg.lr, 1e-2);
    assert.deepEqual(cfg.overrides, { lr: 1e-2 });
    assert.ok(!existsSync(join(dir, "checkpoints", "step-000006")), "the diverged continuation is gone");

    // Rerunning the same command later keeps the override.
    const t4 = makeTask();
    const r4 = await train(t4, config, { quiet: true, resume: true });
    assert.equal(r4.steps, 6);
    assert.ok(r4.losses.every(Number.isFinite));
    free(t4.model);
    const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; lr: number });
    assert.deepEqual(rows.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
    assert.ok(rows.slice(1).every((r) => r.lr <= 1e-2), "steps after the resume ran with the override");
    assert.deepEqual(trainerJson(dir, "step-000006").resumes.map((r) => [r.step, r.overrides]), [[1, { lr: 1e-2 }], [4, {}]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a gradient norm that keeps exploding stops the run before the last spike is applied, pointing before the first", async () => {
  const dir = tempRun();
  try {
    const task = makeTask({ blowUp: { call: 14, factor: 1e6 } }); // finite, but 1e6× the gradients from step 14 on
    await assert.rejects(train(task, { runDir: dir, steps: 30, checkpointEvery: 4, logEvery: 1 }, { quiet: true }), (e: Error) =>
      e instanceof DivergenceError && e.step === 13 + SPIKES_IN_A_ROW && /gradient norm jumped/.test(e.message) && new RegExp(`${SPIKES_IN_A_ROW} spikes in a row from step 14`).test(e.message) &&
      e.checkpoint === join(dir, "checkpoints", "step-000012"));
    free(task.model);
    assert.equal(latest(dir), "step-000012"); // step 13's weights made the first spike: the checkpoints from there on are suspect
    assert.match(trainerJson(dir, "step-000016").health.diverged!, /spikes in a row/);
    const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; grad_spikes?: number });
    assert.equal(rows.at(-1)!.step, 12 + SPIKES_IN_A_ROW);
    assert.deepEqual(rows.filter((r) => r.step >= 13).map((r) => r.grad_spikes ?? 0), [...Array(SPIKES_IN_A_ROW).keys()]);
    assert.equal(trainerJson(dir, "step-000012").gradNorms.length, 12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("one gradient spike is counted and the run goes on (a model that fits its data makes them)", async () => {
  const dir = tempRun();
  try {
    const config = { runDir: dir, steps: 20, lr: 1e-2, checkpointEvery: 100, logEvery: 1 };
    const spiked = makeTask({ spike: { call: 14, factor: 1e6 } });
    const stopped = await train(spiked, config, { quiet: true, stopAfter: 14 });
    free(spiked.model);
    assert.equal(stopped.gradSpikes, 1);
    assert.deepEqual(trainerJson(dir, "step-000014").gradSpikes, { total: 1, inARow: 1 });
    // resumed from the checkpoint the stop wrote, the run finishes, and the count carries over
    const rest = makeTask();
    const done = await train(rest, config, { quiet: true, resume: true });
    free(rest.model);
    assert.equal(done.steps, 20);
    assert.equal(done.gradSpikes, 1);
    assert.ok(done.losses.every(Number.isFinite));
    const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; grad_spikes?: number });
    assert.deepEqual(rows.map((r) => r.grad_spikes ?? 0), [...Array(13).fill(0), ...Array(7).fill(1)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a fresh start in a folder holding an earlier run's checkpoints is refused (pruning would delete the new ones)", async () => {
  const dir = tempRun();
  try {
    const t1 = makeTask();
    await train(t1, { runDir: dir, steps: 4, checkpointEvery: 2 }, { quiet: true, resume: true });
    free(t1.model);
    rmSync(join(dir, "checkpoints", "latest")); // "start over"
    const t2 = makeTask();
    await assert.rejects(train(t2, { runDir: dir, steps: 4, checkpointEvery: 2 }, { quiet: true, resume: true }),
      /holds checkpoints of an earlier run \(step-000002, step-000004\).*To start over, delete .*checkpoints/);
    free(t2.model);
    assert.deepEqual(readdirSync(join(dir, "checkpoints")).sort(), ["step-000002", "step-000004"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a resume with another batch size is refused, and a refused resume leaves train_config.json as it was", async () => {
  const dir = tempRun();
  try {
    const t1 = makeTask();
    await train(t1, { runDir: dir, steps: 4, checkpointEvery: 100, batchSize: 4 }, { quiet: true, resume: true, stopAfter: 2 });
    free(t1.model);
    const recorded = readFileSync(join(dir, "train_config.json"), "utf8");
    const t2 = makeTask();
    await assert.rejects(train(t2, { runDir: dir, steps: 4, checkpointEvery: 100, batchSize: 4, lr: 1 }, { quiet: true, resume: true }), /lr was 0.0003, now 1/);
    assert.equal(readFileSync(join(dir, "train_config.json"), "utf8"), recorded);
    await assert.rejects(train(t2, { runDir: dir, steps: 4, checkpointEvery: 100, batchSize: 8 }, { quiet: true, resume: true }), /batchSize was 4, now 8/);
    assert.equal(readFileSync(join(dir, "train_config.json"), "utf8"), recorded);
    free(t2.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a resume drops the metrics and TensorBoard events of the steps it replays, and stale temporary checkpoint folders", async () => {
  const dir = tempRun();
  const config = { runDir: dir, steps: 10, checkpointEvery: 5, logEvery: 1 };
  try {
    const t1 = makeTask();
    await train(t1, config, { quiet: true, resume: true, stopAfter: 7 });
    free(t1.model);
    // As if killed after step 7 was logged (before its checkpoint), during the write of another.
    const ckpts = join(dir, "checkpoints");
    rmSync(join(ckpts, "step-000007"), { recursive: true });
    writeFileSync(join(ckpts, "latest"), "step-000005\n");
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // a pid that is gone
    mkdirSync(join(ckpts, `step-000007.tmp-${dead}`));
    writeFileSync(join(ckpts, `latest.tmp-${dead}`), "step-000007\n");
    mkdirSync(join(ckpts, `step-000009.tmp-${process.ppid}`)); // a live process's write stays
    const t2 = makeTask();
    await train(t2, config, { quiet: true, resume: true });
    free(t2.model);
    const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number });
    assert.deepEqual(rows.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const events = readdirSync(dir).filter((f) => f.startsWith("events.out.tfevents."));
    const loss = events.flatMap((f) => readScalars(readFileSync(join(dir, f)))).filter((e) => e.tag === "train/loss");
    assert.deepEqual(loss.map((e) => e.step).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(readdirSync(ckpts).sort(), ["latest", "step-000009.tmp-" + process.ppid, "step-000010", "step-000005"].sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the run folder's lock: a live owner is named and refused, a stale one taken over, and it is released after an error", async () => {
  const dir = tempRun();
  const lock = join(dir, "train.lock");
  try {
    writeFileSync(lock, JSON.stringify({ pid: process.ppid, hostname: hostname(), started: "2020-01-01T00:00:00.000Z" }));
    const t1 = makeTask();
    await assert.rejects(train(t1, { runDir: dir, steps: 2 }, { quiet: true }), (e: Error) =>
      e instanceof RunLockedError && e.message.includes(`pid ${process.ppid} on ${hostname()}`));
    writeFileSync(lock, JSON.stringify({ pid: process.pid, hostname: "another-host", started: "2020-01-01T00:00:00.000Z" }));
    await assert.rejects(train(t1, { runDir: dir, steps: 2 }, { quiet: true }), /in use by pid \d+ on another-host/);

    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    writeFileSync(lock, JSON.stringify({ pid: dead, hostname: hostname(), started: "2020-01-01T00:00:00.000Z" }));
    const inner = t1.step;
    t1.step = () => { throw new Error("a failing step"); };
    await assert.rejects(train(t1, { runDir: dir, steps: 2 }, { quiet: true }), /a failing step/); // took the stale lock, then failed
    assert.ok(!existsSync(lock), "the lock is released after an error");
    t1.step = inner;
    free(t1.model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
