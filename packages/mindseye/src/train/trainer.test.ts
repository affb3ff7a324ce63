import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, nn, F, type Tensor } from "@mindseye/torch";
import { ReferenceDecoder } from "@mindseye/torch/testing";
import { DataLoader, type Dataset } from "../data/loader.js";
import { train, parameterGroups, NonFiniteLossError, type TrainTask } from "./trainer.js";
import { readScalars } from "./tensorboard.js";

const CFG = { vocabSize: 32, width: 16, layers: 1, heads: 2, maxSeq: 8 };

/** Sequences of 8 tokens following a fixed rule, so the loss can fall. */
const sequences: Dataset<number[]> = {
  length: 64,
  get: (i) => Array.from({ length: 8 }, (_, t) => (i * 3 + t * 5) % 32),
};

function makeTask(opts: { noisy?: boolean; poison?: number } = {}): TrainTask<{ tokens: Tensor }> & { model: ReferenceDecoder } {
  torch.manualSeed(123); // identical initial weights for every run of a test
  const model = new ReferenceDecoder(CFG);
  const loader = new DataLoader(sequences, { batchSize: 4, seed: 9, collate: (recs: number[][]) => ({ tokens: torch.tensor(recs, { dtype: "int64" }) }) });
  let calls = 0;
  return {
    model,
    loader: loader as DataLoader<unknown, { tokens: Tensor }>,
    step: ({ tokens }) => {
      calls += 1;
      const inputs = tokens.slice(1, 0, -1), targets = tokens.slice(1, 1);
      let logits = model.forward(inputs);
      // Random noise makes the loss depend on the RNG: an exact resume must restore it.
      if (opts.noisy) logits = logits.add(torch.randn(logits.shape).mul(0.1));
      let loss = F.crossEntropy(logits.reshape(-1, CFG.vocabSize), targets.reshape(-1));
      if (opts.poison !== undefined && calls >= opts.poison) loss = loss.mul(NaN);
      return { loss, metrics: { tokens: targets.numel() } };
    },
  };
}

function tempRun(): string {
  return mkdtempSync(join(tmpdir(), "mindseye-train-"));
}
const free = (m: nn.Module) => m.parameters().forEach((p) => p.dispose());

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
      e instanceof NonFiniteLossError && /became NaN at step 4/.test(e.message) && /step-000002/.test(e.message));
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
    assert.equal(r.steps, 2);
    assert.ok(r.interrupted);
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
