// Evaluation on bad input and broken models: an undecodable image counts once however many
// questions use it, skips are reported in the output and results.json, the error rate is the
// caller's (--max-error-rate), and non-finite weights or logits stop the run instead of scoring 0%.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, io } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { ErrorRateExceeded } from "../data/formats/index.js";
import { evaluate, type EvalResults } from "./run.js";
import { captureEvalCli, saveTinyEvalModel } from "./test_helpers.js";

const SIZE = 32;
let tmp = "", world = "", modelDir = "";

/** A random MindsEye VLM over the world's tokenizer, saved as a self-contained model directory. */
function saveTinyModel(dir: string, tokenizerDir: string): void {
  saveTinyEvalModel(dir, tokenizerDir, SIZE);
}

/** A copy of the model whose weight `name` is edited in place by `edit`. */
function modelWith(name: string, tensor: string, edit: (t: ReturnType<typeof io.loadFile> extends Map<string, infer T> ? T : never) => void): string {
  const dir = join(tmp, name);
  cpSync(modelDir, dir, { recursive: true });
  const file = join(dir, "model.safetensors");
  const weights = io.loadFile(file);
  torch.noGrad(() => edit(weights.get(tensor)!));
  io.saveFile(file, weights);
  weights.forEach((w) => w.dispose());
  return dir;
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-eval-rel-"));
  world = join(tmp, "world");
  // 200 scenes: the test split has over 100 questions, several about each image
  await generateWorld(resolveWorldOptions({ out: world, scenes: 200, seed: 1, size: SIZE, workers: 0 }));
  modelDir = join(tmp, "model");
  saveTinyModel(modelDir, world);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test("one corrupt image is one skip however many questions use it; skips are in results.json and the command's output", async () => {
  const bad = join(tmp, "bad-world");
  cpSync(join(world, "gqa"), join(bad, "gqa"), { recursive: true });
  cpSync(join(world, "images"), join(bad, "images"), { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) symlinkSync(join(world, f), join(bad, f));
  const questions = Object.entries(JSON.parse(readFileSync(join(bad, "gqa", "test_balanced_questions.json"), "utf8")) as Record<string, { imageId: string }>);
  const image = questions[0]![1].imageId;
  const users = questions.filter(([, q]) => q.imageId === image).length;
  const distinct = new Set(questions.map(([, q]) => q.imageId)).size;
  assert.ok(questions.length >= 100 && users >= 3, `${questions.length} questions, ${users} about the first image`);
  writeFileSync(join(bad, "images", `${image}.png`), "not a png");

  // 1 of the distinct images (under 10%) is bad, though it spoils `users` questions
  const out = join(tmp, "out", "corrupt");
  const r = await evaluate({ modelDir, task: "world_gqa", dataDir: bad, out, batchSize: 16, maxNewTokens: 2, quiet: true, maxErrorRate: 0.1 });
  assert.deepEqual([r.skipped.records, r.skipped.images, r.skipped.items, r.n], [0, 1, users, questions.length - users]);
  assert.equal(r.skipped.list.length, 1);
  assert.match(`${r.skipped.list[0]!.kind} ${r.skipped.list[0]!.reason}`, new RegExp(`^image cannot decode .*${image}\\.png`));
  assert.deepEqual((JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as EvalResults).skipped, r.skipped);

  // a stricter rate stops the run as soon as it is certain, naming the image and the option
  await assert.rejects(evaluate({ modelDir, task: "world_gqa", dataDir: bad, out: join(tmp, "out", "strict"), maxNewTokens: 2, quiet: true, maxErrorRate: 1 / (distinct + 1) }),
    (e: unknown) => e instanceof ErrorRateExceeded && new RegExp(`1 of its ${distinct} records are malformed`).test(e.message) && /--max-error-rate/.test(e.message));

  const printed = await captureEvalCli(async (parse) => {
    await parse(["--model", modelDir, "--task", "world_gqa", "--data", bad, "--out", join(tmp, "out", "cli"), "--max-new-tokens", "2", "--max-error-rate", "0.1"]);
    await assert.rejects(parse(["--model", modelDir, "--task", "world_gqa", "--data", bad, "--max-error-rate", "5%"]), /--max-error-rate must be a fraction in \[0, 1\] \(0\.05 = 5%\), got "5%"/);
  });
  assert.match(printed, new RegExp(`skipped: 0 malformed records, 1 undecodable images \\(${users} questions; all listed in results\\.json "skipped\\.list"\\)\\n {2}image .*test_balanced_questions\\.json .*: cannot decode .*${image}\\.png`));
});

test("a model with a NaN weight is refused at load, naming the tensor and file (not scored 0%)", async () => {
  const dir = modelWith("nan-model", "language_model.model.norm.weight", (t) => { t.narrow(0, 0, 1).fill_(Number.NaN); });
  await assert.rejects(evaluate({ modelDir: dir, task: "world_gqa", dataDir: world, out: join(tmp, "out", "nan"), limit: 2, quiet: true }),
    new RegExp(`${dir}/model\\.safetensors: tensor "language_model\\.model\\.norm\\.weight" holds 1 non-finite value \\(1 NaN, 0 infinite\\) of 32`));
});

test("non-finite logits during generation stop the evaluation with the questions named (not scored 0%)", async () => {
  // finite weights whose activations overflow float32: the final norm scales hidden states of RMS 1 by 3e38
  const dir = modelWith("overflow-model", "language_model.model.norm.weight", (t) => { t.fill_(3e38); });
  await assert.rejects(evaluate({ modelDir: dir, task: "world_gqa", dataDir: world, out: join(tmp, "out", "overflow"), limit: 2, batchSize: 2, quiet: true }),
    /the model in .*overflow-model produced non-finite logits \(NaN or infinity\) at generation step 0 for questions \S+, \S+; its weights or activations overflow/);
});
