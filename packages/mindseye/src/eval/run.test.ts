// End to end on a tiny random VLM that speaks the synthetic world's tokenizer: every world task
// and the real-format fixtures, predictions re-scored line by line, batching against batch size 1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { score, type Harness, type TaskKind } from "./harness.js";
import { evaluate, loadEvalModel, MAX_NEW_TOKENS_CAP, shuffleImagesAcross, type EvalResults, type PredictionLine } from "./run.js";
import type { EvalItem } from "./tasks.js";
import { captureEvalCli, saveTinyEvalModel } from "./test_helpers.js";

const X = fileURLToPath(new URL("../../test-fixtures/formats/", import.meta.url));
const SIZE = 32;
let tmp = "", world = "", modelDir = "";

/** A random MindsEye VLM over the world's tokenizer; image features ×10, so that its answers depend on the images and a batch that mixed them up would show. */
function saveTinyModel(dir: string, tokenizerDir: string, o: { imageTokenId?: number } = {}): void {
  saveTinyEvalModel(dir, tokenizerDir, SIZE, { ...o, projectorScale: 10 });
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-eval-"));
  world = join(tmp, "world");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 100, seed: 1, size: SIZE, workers: 0 }));
  modelDir = join(tmp, "run", "model");
  saveTinyModel(modelDir, world);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

const readLines = (out: string) => readFileSync(join(out, "predictions.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as PredictionLine);

/** Every line's `correct` is the harness's verdict on its prediction and gold answer. */
function checkScored(kind: TaskKind, harness: Harness, lines: PredictionLine[]): void {
  for (const l of lines) {
    assert.equal(l.correct, score(kind, harness, l.prediction, { answer: l.answer, ...(l.choices ? { choices: l.choices } : {}) }), `${l.id}: "${l.prediction}"`);
  }
}

function checkResults(r: EvalResults, out: string, n: number): void {
  const onDisk = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as EvalResults;
  assert.deepEqual(onDisk, r);
  const lines = readLines(out);
  assert.equal(lines.length, n);
  assert.equal(r.n, n);
  assert.equal(r.accuracy.n, n);
  assert.equal(r.accuracy.mean, lines.filter((l) => l.correct).length / n);
  assert.ok(r.accuracy.low <= r.accuracy.mean && r.accuracy.mean <= r.accuracy.high);
  assert.deepEqual(Object.fromEntries(Object.entries(r.byType).map(([k, v]) => [k, v.n])),
    lines.reduce<Record<string, number>>((a, l) => ({ ...a, [l.type]: (a[l.type] ?? 0) + 1 }), {}));
  assert.match(r.model.fingerprint, /^[0-9a-f]{64}$/);
}

test("every world task end to end: predictions scored by the harness, results with per-type intervals", async () => {
  const expected: Record<string, { kind: TaskKind; maxNewTokens: number; harnessMax: number; images: number }> = {
    world_gqa: { kind: "gqa", maxNewTokens: 16, harnessMax: 16, images: 1 },
    world_sqa: { kind: "scienceqa", maxNewTokens: 16, harnessMax: 16, images: 1 },
    world_jigsaw: { kind: "blink", maxNewTokens: MAX_NEW_TOKENS_CAP, harnessMax: 1024, images: 3 },
  };
  for (const [task, e] of Object.entries(expected)) {
    const out = join(tmp, "out", task);
    const r = await evaluate({ modelDir, task, dataDir: world, out, limit: 5, batchSize: 4, quiet: true });
    checkResults(r, out, 5);
    checkScored(e.kind, "lmms-eval", readLines(out));
    assert.deepEqual([r.task, r.kind, r.harness, r.split, r.limit], [task, e.kind, "lmms-eval", "test", 5]);
    assert.deepEqual(r.generation, { greedy: true, maxNewTokens: e.maxNewTokens, harnessMaxNewTokens: e.harnessMax, stopToken: "<|im_end|>", batchSize: 4 });
    assert.deepEqual(r.skipped, { records: 0, images: 0, items: 0, list: [] });
    assert.equal(r.model.path, resolve(modelDir));
    assert.ok(r.truncated >= 0 && r.truncated <= 5);
    const first = readLines(out)[0]!;
    assert.equal(first.prompt.endsWith(e.kind === "gqa" ? "Answer the question using a single word or phrase." : e.kind === "scienceqa" ? "directly." : "(B) the third image"), true);
    assert.equal(first.choices === undefined, e.kind === "gqa");
  }
});

test("batched generation (left padding) gives the same predictions as one question at a time", async () => {
  for (const task of ["world_gqa", "world_sqa", "world_jigsaw"]) {
    const run = async (batchSize: number) => {
      const out = join(tmp, "batch", `${task}-${batchSize}`);
      await evaluate({ modelDir, task, dataDir: world, out, split: "val", limit: 6, batchSize, maxNewTokens: 6, quiet: true });
      return readLines(out).map((l) => [l.id, l.prediction]);
    };
    const one = await run(1);
    assert.equal(one.length, 6);
    assert.ok(new Set(one.map(([, p]) => p)).size > 1, `${task}: the random model's answers differ between questions`);
    assert.deepEqual(await run(6), one, task);
  }
});

test("answers the model gives, made gold, score as right (and only those)", async () => {
  const first = join(tmp, "out", "gold-1");
  await evaluate({ modelDir, task: "world_gqa", dataDir: world, out: first, limit: 6, quiet: true });
  const said = new Map(readLines(first).map((l) => [l.id, l.prediction]));
  // the same questions, with the model's own answers (punctuation added) as gold for every other one
  const gold = join(tmp, "gold-world");
  mkdirSync(join(gold, "gqa"), { recursive: true });
  symlinkSync(join(world, "images"), join(gold, "images"));
  const questions = JSON.parse(readFileSync(join(world, "gqa", "test_balanced_questions.json"), "utf8")) as Record<string, { answer: string }>;
  const ids = [...said.keys()];
  ids.forEach((id, i) => { if (i % 2 === 0) questions[id]!.answer = `${said.get(id)!}.`; });
  writeFileSync(join(gold, "gqa", "test_balanced_questions.json"), JSON.stringify(questions));
  const lmms = await evaluate({ modelDir, task: "world_gqa", dataDir: gold, out: join(tmp, "out", "gold-2"), limit: 6, quiet: true });
  assert.deepEqual(readLines(join(tmp, "out", "gold-2")).map((l) => l.correct), ids.map((_, i) => i % 2 === 0));
  assert.equal(lmms.accuracy.mean, 0.5);
  const vlmevalkit = await evaluate({ modelDir, task: "world_gqa", harness: "vlmevalkit", dataDir: gold, out: join(tmp, "out", "gold-3"), limit: 6, quiet: true });
  assert.equal(vlmevalkit.accuracy.mean, 0, "VLMEvalKit keeps punctuation: 'x.' is not 'x'");
});

test("the VLMEvalKit harness: its prompts and its scoring", async () => {
  const out = join(tmp, "out", "sqa-vlmevalkit");
  const r = await evaluate({ modelDir, task: "world_sqa", harness: "vlmevalkit", dataDir: world, out, split: "test_novel", limit: 4, quiet: true });
  checkResults(r, out, 4);
  const forms = Object.entries(r.byForm ?? {});
  assert.ok(forms.length > 0 && forms.every(([k]) => /^(count|verify|which-[234])$/.test(k)), JSON.stringify(r.byForm));
  assert.equal(forms.reduce((n, [, v]) => n + v.n, 0), 4, "each problem in one form");
  const lines = readLines(out);
  checkScored("scienceqa", "vlmevalkit", lines);
  assert.match(lines[0]!.prompt, /^Hint: .*\nQuestion: .*\nOptions:\nA\. .*Please select the correct answer from the options above\. \n$/s);
});

test("real formats on the fixtures: GQA, ScienceQA IMG and BLINK Jigsaw (8×8 images resized by the processor)", async () => {
  const sqaDir = join(tmp, "scienceqa");
  mkdirSync(sqaDir);
  for (const f of ["problems.json", "pid_splits.json"]) symlinkSync(join(X, "scienceqa/data/scienceqa", f), join(sqaDir, f));
  symlinkSync(join(X, "scienceqa/images"), join(sqaDir, "images"));
  const cases: [string, string, TaskKind, number, number][] = [["gqa", join(X, "gqa"), "gqa", 2, 1], ["scienceqa_img", sqaDir, "scienceqa", 2, 2], ["blink_jigsaw", join(X, "blink"), "blink", 2, 1]];
  for (const [task, dataDir, kind, n, malformed] of cases) {
    const out = join(tmp, "out", task);
    const r = await evaluate({ modelDir, task, dataDir, out, batchSize: 2, quiet: true, maxErrorRate: 0.5 }); // the fixtures hold malformed records on purpose
    checkResults(r, out, n);
    checkScored(kind, "lmms-eval", readLines(out));
    assert.equal(r.skipped.records, malformed, task);
    assert.equal(r.byForm, undefined, `${task}: forms are the world's`);
  }
});

test("a run folder is accepted for its model/; undecodable images are skipped and counted; mismatched parts are refused", async () => {
  // a world whose first jigsaw item has a corrupt image
  const bad = join(tmp, "bad-world");
  cpSync(join(world, "blink"), join(bad, "blink"), { recursive: true });
  const first = JSON.parse(readFileSync(join(bad, "blink/Jigsaw/test.jsonl"), "utf8").split("\n")[0]!) as { image_2: string };
  writeFileSync(join(bad, "blink/Jigsaw", first.image_2), "not a png");
  const out = join(tmp, "out", "bad");
  const r = await evaluate({ modelDir: join(tmp, "run"), task: "world_jigsaw", dataDir: bad, out, limit: 3, batchSize: 2, quiet: true, maxErrorRate: 0.2 });
  assert.equal(r.model.path, resolve(modelDir));
  assert.deepEqual({ ...r.skipped, list: r.skipped.list.map((e) => [e.kind, e.file, e.record]) }, { records: 0, images: 1, items: 1, list: [["image", join(bad, "blink/Jigsaw/test.jsonl"), "line 1 (idx test_Jigsaw_1)"]] });
  assert.equal(r.n, 2);
  assert.equal(readLines(out).length, 2);

  const wrong = join(tmp, "wrong-model");
  saveTinyModel(wrong, world, { imageTokenId: 3 });
  await assert.rejects(evaluate({ modelDir: wrong, task: "world_gqa", dataDir: world, out: join(tmp, "out", "wrong"), limit: 1, quiet: true }),
    (e: unknown) => e instanceof ConfigError && /the tokenizer's <\|image_pad\|> is 5 but config.json's image_token_index is 3/.test(e.message));
  await assert.rejects(evaluate({ modelDir: world, task: "world_gqa", dataDir: world, out: join(tmp, "out", "none"), limit: 1, quiet: true }),
    /neither it nor .*model holds a config\.json; --model takes a MindsEye VLM directory/);
  await assert.rejects(evaluate({ modelDir, task: "world_gqa", dataDir: world, out: join(tmp, "out", "none"), batchSize: 0 }), /batchSize must be a positive integer, got 0/);
  assert.equal(existsSync(join(tmp, "out", "none")), false, "nothing is written before the inputs check out");
});

test("mindseye eval: the command runs the evaluation and prints a short table", async () => {
  const text = await captureEvalCli(async (parse) => {
    await parse(["--model", join(tmp, "run"), "--task", "world_gqa", "--data", world, "--limit", "3", "--batch-size", "2"]);
  });
  const out = join(tmp, "run", "eval", "world_gqa-test-lmms-eval");
  assert.equal(readLines(out).length, 3);
  assert.match(text, /^world_gqa test \(lmms-eval\): 3 questions, /);
  assert.match(text, /\n {2}type +n +accuracy +95% CI\n {2}overall +3 +\d+\.\d% +\[\d+\.\d, \d+\.\d\]\n/);
  assert.match(text, new RegExp(`predictions\\.jsonl and results\\.json in ${out}$`));
  assert.equal((JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as EvalResults).shuffledImages, null);

  // The blind control from the command line: its own folder, said in the table and in results.json.
  const blindText = await captureEvalCli(async (parse) => {
    await parse(["--model", join(tmp, "run"), "--task", "world_gqa", "--data", world, "--limit", "3", "--batch-size", "2", "--shuffle-images", "3"]);
  });
  const blind = join(tmp, "run", "eval", "world_gqa-test-lmms-eval-shuffled-3");
  assert.match(blindText, /^world_gqa test \(lmms-eval\), images shuffled across questions \(seed 3\): 3 questions, /);
  assert.equal((JSON.parse(readFileSync(join(blind, "results.json"), "utf8")) as EvalResults).shuffledImages, 3);
  await assert.rejects(captureEvalCli((parse) => parse(["--model", join(tmp, "run"), "--task", "world_gqa", "--data", world, "--shuffle-images", "-1"]).then(() => {})),
    (e: unknown) => e instanceof ConfigError && /--shuffle-images must be an integer ≥ 0, got "-1"/.test(e.message));
  await assert.rejects(captureEvalCli((parse) => parse(["--model", join(tmp, "run"), "--task", "world_retrieval", "--data", world, "--shuffle-images", "0"]).then(() => {})),
    (e: unknown) => e instanceof ConfigError && /--shuffle-images is for question tasks/.test(e.message));
});

test("the blind control's shuffle gives every question another question's images, seeded, within each image count", () => {
  const item = (id: number, images: number): EvalItem => ({
    kind: "gqa", id: String(id), question: "q", answer: "a", type: "t", source: { file: "f", record: String(id) },
    images: Array.from({ length: images }, (_, k) => ({ kind: "file" as const, path: `img-${id}-${k}` })),
  });
  const items = [...Array.from({ length: 9 }, (_, i) => item(i, 1)), ...Array.from({ length: 4 }, (_, i) => item(9 + i, 3)), item(13, 2)];
  const shuffled = shuffleImagesAcross(items, 7);
  const owner = (it: EvalItem) => { const ref = it.images[0]!; return ref.kind === "file" ? ref.path.split("-")[1] : ""; };
  shuffled.forEach((it, i) => {
    assert.equal(it.id, items[i]!.id, "questions keep their place");
    assert.equal(it.images.length, items[i]!.images.length, "images come from a question with as many");
    if (i < 13) assert.notEqual(owner(it), it.id, `question ${i} sees another question's images`);
  });
  assert.equal(owner(shuffled[13]!), "13", "a question alone in its image count keeps its images");
  assert.deepEqual(shuffled.map(owner).slice(0, 9).sort(), items.map(owner).slice(0, 9).sort(), "a permutation: every image shown once");
  assert.deepEqual(shuffleImagesAcross(items, 7), shuffled, "the same seed, the same shuffle");
  assert.notDeepEqual(shuffleImagesAcross(items, 8).map(owner), shuffled.map(owner), "another seed, another shuffle");
});

test("a training checkpoint (checkpoints/step-N) is evaluated with its run's saved configuration, and recorded as itself", async () => {
  // The checkpoint: other weights (the projector not scaled) under the run's checkpoints/, as the trainer writes them.
  const other = join(tmp, "other-weights");
  saveTinyEvalModel(other, world, SIZE);
  const checkpoint = join(tmp, "run", "checkpoints", "step-000007");
  mkdirSync(checkpoint, { recursive: true });
  cpSync(join(other, "model.safetensors"), join(checkpoint, "model.safetensors"));
  writeFileSync(join(checkpoint, "trainer.json"), JSON.stringify({ step: 7 }));
  const fromCheckpoint = loadEvalModel(checkpoint), fromOther = loadEvalModel(other), fromRun = loadEvalModel(modelDir);
  try {
    assert.equal(fromCheckpoint.source, resolve(checkpoint));
    const weight = (m: typeof fromRun) => m.model.module.stateDict().get("multi_modal_projector.linear_2.weight")!;
    assert.equal(weight(fromCheckpoint).sub(weight(fromOther)).abs().max().item(), 0, "the checkpoint's weights are loaded");
    assert.ok(weight(fromCheckpoint).sub(weight(fromRun)).abs().max().item() > 0, "not the run's final ones");
  } finally {
    [fromCheckpoint, fromOther, fromRun].forEach((m) => m.model.dispose());
  }
  const out = join(tmp, "eval-checkpoint");
  const r = await evaluate({ modelDir: checkpoint, task: "world_gqa", dataDir: world, out: out, limit: 4, quiet: true });
  assert.equal(r.model.path, resolve(checkpoint));
  assert.notEqual(r.model.fingerprint, (await evaluate({ modelDir, task: "world_gqa", dataDir: world, out: join(tmp, "eval-final"), limit: 4, quiet: true })).model.fingerprint);
  // A checkpoint of a run that has not saved its model yet cannot be read: said, with what to do.
  const orphan = join(tmp, "unfinished", "checkpoints", "step-000003");
  mkdirSync(orphan, { recursive: true });
  cpSync(join(checkpoint, "model.safetensors"), join(orphan, "model.safetensors"));
  writeFileSync(join(orphan, "trainer.json"), "{}");
  assert.throws(() => loadEvalModel(orphan), (e: Error) => e instanceof ConfigError && /training checkpoint, but its run has no saved model/.test(e.message));
});
