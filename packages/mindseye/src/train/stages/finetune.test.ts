import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { familyBatches, finetuneLoader, runFinetune, FinetuneRecipe, ofTypes } from "./finetune.js";
import { TrainSection } from "./common.js";
import { mulberry32 } from "../../util/random.js";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { saveTinyEvalModel } from "../../eval/test_helpers.js";
import { writeTinyLlava } from "../../models/llava_test_helpers.js";

const examples = [
  ...Array.from({ length: 50 }, (_, i) => ({ task: "gqa", i })),
  ...Array.from({ length: 12 }, (_, i) => ({ task: "scienceqa", i })),
  ...Array.from({ length: 5 }, (_, i) => ({ task: "jigsaw", i })),
];

test("fine-tuning batches hold one task family each; proportional uses every example once", () => {
  const batches = familyBatches(examples, 8, 0);
  for (const b of batches) assert.equal(new Set(b.map((e) => e.task)).size, 1);
  assert.equal(batches.flat().length, examples.length);
  assert.equal(new Set(batches.flat()).size, examples.length);
  assert.deepEqual(familyBatches(examples, 8, 0), batches, "seeded");
  assert.notDeepEqual(familyBatches(examples, 8, 1), batches);
});

test("balanced sampling gives every family as many batches as the largest, repeating the smaller ones", () => {
  const batches = familyBatches(examples, 8, 0, "balanced");
  const count = (task: string) => batches.filter((b) => b[0]!.task === task).length;
  assert.deepEqual([count("gqa"), count("scienceqa"), count("jigsaw")], [7, 7, 7]);
  for (const b of batches) assert.equal(new Set(b.map((e) => e.task)).size, 1);
  const jig = batches.filter((b) => b[0]!.task === "jigsaw");
  assert.ok(jig.every((b) => b.length === 5), "a family smaller than a batch repeats whole");
});

/** Padded tokens over real tokens when each batch is right-padded to its longest example. */
const paddingRatio = (batches: { ids: number[] }[][]): number => {
  let real = 0, padded = 0;
  for (const b of batches) {
    const max = Math.max(...b.map((e) => e.ids.length));
    for (const e of b) { real += e.ids.length; padded += max - e.ids.length; }
  }
  return padded / real;
};

test("group_by_length: batches of similar lengths across families, each family as often as task_sampling says", async () => {
  // lengths spread within each family (as Qwen2.5-VL's image token counts do): 20..500 tokens
  const rand = mulberry32(3);
  const long = (task: string, n: number) => Array.from({ length: n }, (_, i) => ({ task, i, ids: Array<number>(20 + Math.floor(rand() * 480)).fill(1) }));
  const data = [...long("gqa", 400), ...long("scienceqa", 120), ...long("jigsaw", 40)];
  const recipe = (group: boolean) => FinetuneRecipe.parse({ stage: "finetune", world: "w", model: "m", out: "o", train: { steps: 1, batch_size: 8, ...(group ? { group_by_length: true } : {}) } });
  const epoch = async (group: boolean) => {
    const out: typeof data[] = [];
    for await (const b of finetuneLoader(data, recipe(group), (b) => b).epoch()) out.push(b);
    return out;
  };
  const [plain, grouped] = [await epoch(false), await epoch(true)];
  assert.ok(plain.every((b) => new Set(b.map((e) => e.task)).size === 1), "by default one family per batch");
  assert.ok(grouped.every((b) => b.length === 8));
  const count = (bs: typeof data[], task: string) => bs.flat().filter((e) => e.task === task).length;
  // balanced: 50 batches of 8 per family; grouped, the same examples less the last incomplete batch (none here)
  assert.deepEqual(["gqa", "scienceqa", "jigsaw"].map((t) => count(grouped, t)), ["gqa", "scienceqa", "jigsaw"].map((t) => count(plain, t)));
  assert.ok(grouped.some((b) => new Set(b.map((e) => e.task)).size > 1), "families mix");
  const [rp, rg] = [paddingRatio(plain), paddingRatio(grouped)];
  assert.ok(rg < rp / 5, `padded / real tokens: ${rg.toFixed(3)} grouped, ${rp.toFixed(3)} by family`);
  assert.equal(grouped[0]![0]!.ids.length, Math.max(...data.map((e) => e.ids.length)), "the longest example first");
  // absent, the key stays out of the resolved recipe (so study fingerprints do not change)
  assert.ok(!("group_by_length" in TrainSection.parse({ steps: 1 })));
});

test("a fine-tune with train.group_by_length runs, for a mindseye_vlm on the world and for a published family (LLaVA)", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "mindseye-ft-group-"));
  try {
    const world = join(tmp, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 12, seed: 4, size: 32, latents: 4, workers: 0, log: () => {} }));
    const me = join(tmp, "me"), llava = join(tmp, "llava");
    saveTinyEvalModel(me, world, 32);
    writeTinyLlava(llava, { template: false });
    for (const model of [me, llava]) {
      const out = join(tmp, `ft-${model === me ? "me" : "llava"}`);
      const r = await runFinetune(FinetuneRecipe.parse({
        stage: "finetune", world, model, out, tasks: ["gqa", "jigsaw"], max_error_rate: 0.5,
        train: { steps: 2, batch_size: 4, warmup_steps: 1, log_every: 1, checkpoint_every: 100, group_by_length: true },
      }), { quiet: true });
      assert.equal(r.result.steps, 2, model);
      assert.ok(Number.isFinite(r.result.lastLoss), model);
      assert.ok(existsSync(join(r.modelDir, "DONE")), model);
      const resolved = JSON.parse(readFileSync(join(out, "recipe.resolved.json"), "utf8")) as { train: { group_by_length?: boolean } };
      assert.equal(resolved.train.group_by_length, true);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("question_types: a fine-tune on one question type reads only its questions, and a type no question has is named", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "mindseye-ft-types-"));
  try {
    const world = join(tmp, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 12, seed: 4, size: 32, latents: 4, workers: 0, log: () => {} }));
    const model = join(tmp, "me");
    saveTinyEvalModel(model, world, 32);
    const questions = JSON.parse(readFileSync(join(world, "gqa", "train_balanced_questions.json"), "utf8")) as Record<string, { types: { detailed: string } }>;
    const exist = Object.keys(questions).filter((id) => questions[id]!.types.detailed === "exist").sort();
    assert.ok(exist.length > 0 && exist.length < Object.keys(questions).length);
    const recipe = (types: string[]) => FinetuneRecipe.parse({
      stage: "finetune", world, model, out: join(tmp, `ft-${types.join("-")}`), tasks: ["gqa"], question_types: types, max_error_rate: 0.5,
      train: { steps: 1, batch_size: 4, warmup_steps: 1, log_every: 1, checkpoint_every: 100 },
    });
    const r = await runFinetune(recipe(["exist"]), { quiet: true });
    assert.deepEqual([...r.questionIds].sort(), exist);
    await assert.rejects(runFinetune(recipe(["exist", "existential"]), { quiet: true }), /no training question is of type "existential"; the types there are .*exist/);
    assert.deepEqual(ofTypes([{ task: "gqa", id: "1", type: "count", images: [], text: "", answer: "" }], undefined).length, 1, "absent: every type");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
