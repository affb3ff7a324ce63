import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import { DataFormatError, SkipCounter } from "../data/formats/index.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { blinkPrompt, gqaPrompt, scienceqaPrompt, score, type Harness } from "./harness.js";
import { TASKS, answerText, createTaskRegistry, getTask, promptFor, resolveSplit, scoreItem, type EvalItem } from "./tasks.js";

const X = fileURLToPath(new URL("../../test-fixtures/formats/", import.meta.url));
const HARNESSES: Harness[] = ["lmms-eval", "vlmevalkit"];
let tmp = "", world = "";

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-tasks-"));
  world = join(tmp, "world");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 100, seed: 3, size: 32, workers: 0 }));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

async function items(task: string, dir: string, split?: string): Promise<{ items: EvalItem[]; errors: SkipCounter }> {
  const t = getTask(task);
  const errors = new SkipCounter(task);
  const out: EvalItem[] = [];
  for await (const it of t.items(dir, resolveSplit(t, split), errors)) out.push(it);
  return { items: out, errors };
}

test("the registry: six tasks with their harness kinds; misses suggest, duplicates are refused", () => {
  assert.deepEqual([...TASKS.values()].map((t) => [t.name, t.kind, t.defaultSplit]), [
    ["world_gqa", "gqa", "test"], ["world_sqa", "scienceqa", "test"], ["world_jigsaw", "blink", "test"],
    ["gqa", "gqa", "testdev"], ["scienceqa_img", "scienceqa", "test"], ["blink_jigsaw", "blink", "val"],
  ]);
  assert.throws(() => getTask("world_gq"), (e: unknown) => e instanceof ConfigError && /unknown evaluation task "world_gq" \(did you mean "world_gqa"\?\); known tasks: world_gqa, world_sqa/.test(e.message));
  assert.throws(() => createTaskRegistry([getTask("gqa"), getTask("gqa")]), /evaluation task "gqa" is registered twice/);
  assert.equal(resolveSplit(getTask("world_sqa"), undefined), "test");
  assert.equal(resolveSplit(getTask("gqa"), "val"), "val", "real datasets take any split their files hold");
  assert.throws(() => resolveSplit(getTask("world_jigsaw"), "tset"), /task world_jigsaw has no split "tset" \(did you mean "test"\?\); its splits are test, test_novel, val, train/);
  assert.equal(resolveSplit(getTask("world_gqa"), "train"), "train", "train: to check what a model fitted");
  assert.throws(() => resolveSplit(getTask("world_gqa"), "dev"), ConfigError);
});

test("world tasks read every question of a split, with images on disk, types and gold answers", async () => {
  const manifest = JSON.parse(readFileSync(join(world, "manifest.json"), "utf8")) as { counts: Record<string, Record<string, number>> };
  for (const split of ["test", "test_novel", "val"]) {
    const gqa = await items("world_gqa", world, split);
    const sqa = await items("world_sqa", world, split);
    const jig = await items("world_jigsaw", world, split);
    assert.deepEqual([gqa.items.length, sqa.items.length, jig.items.length], [manifest.counts[split]!.gqa, manifest.counts[split]!.scienceqa, manifest.counts[split]!.blink], split);
    for (const r of [gqa, sqa, jig]) assert.equal(r.errors.skipped, 0);
    for (const it of [...gqa.items, ...sqa.items, ...jig.items]) for (const im of it.images) assert.ok(im.kind === "file" && existsSync(im.path), `${it.id}: ${JSON.stringify(im)}`);
  }
  const { items: gqa } = await items("world_gqa", world, "test");
  const raw = JSON.parse(readFileSync(join(world, "gqa", "test_balanced_questions.json"), "utf8")) as Record<string, { imageId: string; answer: string; types: { detailed: string } }>;
  for (const it of gqa) {
    assert.equal(it.kind, "gqa");
    assert.equal(it.type, raw[it.id]!.types.detailed);
    assert.equal(it.answer, raw[it.id]!.answer);
    assert.deepEqual(it.images, [{ kind: "file", path: join(world, "images", `${raw[it.id]!.imageId}.png`) }]);
  }
  const { items: sqa } = await items("world_sqa", world, "test_novel");
  const problems = JSON.parse(readFileSync(join(world, "scienceqa", "problems.json"), "utf8")) as Record<string, { answer: number; category: string; split: string }>;
  for (const it of sqa) {
    assert.ok(it.kind === "scienceqa" && it.answer === problems[it.id]!.answer && it.type === problems[it.id]!.category && problems[it.id]!.split === "test_novel");
    // The form, told from the question alone, agrees with the choices each form offers.
    const expected = /^How many /.test(it.question) ? "count" : /^Which /.test(it.question) ? `which-${it.choices.length}` : "verify";
    assert.equal(it.form, expected, `${it.id}: ${it.question} ${JSON.stringify(it.choices)}`);
    if (it.form === "count") assert.deepEqual(it.choices, ["0", "1", "2", "3"]);
    if (it.form === "verify") assert.deepEqual(it.choices, ["yes", "no"]);
  }
  assert.deepEqual(new Set(sqa.map((it) => it.form!.replace(/-\d$/, ""))), new Set(["count", "verify", "which"]), "every form is met");
  const { items: jig } = await items("world_jigsaw", world, "test");
  for (const it of jig) assert.ok(it.kind === "blink" && /^\([AB]\)$/.test(it.answer) && it.images.length === 3 && it.type === "Jigsaw");
});

test("prompts are the harness's; the taught answer scores as right under both harnesses", async () => {
  const all = [...(await items("world_gqa", world)).items, ...(await items("world_sqa", world)).items, ...(await items("world_jigsaw", world)).items];
  for (const h of HARNESSES) {
    for (const it of all) {
      const expected = it.kind === "gqa" ? gqaPrompt({ question: it.question })
        : it.kind === "scienceqa" ? scienceqaPrompt({ question: it.question, choices: [...it.choices], hint: it.hint }, h)
        : blinkPrompt({ prompt: it.prompt, question: it.question, choices: [...it.choices] }, h);
      assert.equal(promptFor(it, h), expected);
      assert.equal(scoreItem(it, h, answerText(it)), true, `${h} ${it.id}: "${answerText(it)}"`);
      assert.equal(scoreItem(it, h, "zebra"), false);
      const wrong = it.kind === "gqa" ? "zebra" : it.kind === "scienceqa" ? String.fromCharCode(65 + ((it.answer + 1) % it.choices.length)) : it.answer === "(A)" ? "B" : "A";
      assert.equal(scoreItem(it, h, wrong), score(it.kind, h, wrong, { answer: it.answer, ...(it.kind === "gqa" ? {} : { choices: [...it.choices] }) }));
      assert.equal(scoreItem(it, h, wrong), false);
    }
  }
  const sqa = all.find((it) => it.kind === "scienceqa")!;
  assert.match(promptFor(sqa, "lmms-eval"), /^Context: .*\nA\. .*\nAnswer with the option's letter from the given choices directly\.$/s);
});

test("real formats: GQA (balanced only), ScienceQA IMG, BLINK Jigsaw val from the format fixtures", async () => {
  const gqa = await items("gqa", join(X, "gqa"));
  assert.deepEqual(gqa.items.map((i) => [i.id, i.type, i.answer]), [["20968379", "verifyAttr", "yes"], ["201551245", gqa.items[1]!.type, gqa.items[1]!.answer]]);
  assert.deepEqual(gqa.errors.report().omitted, { "not balanced": 1 });
  assert.equal(gqa.errors.skipped, 1, "the question without an imageId");

  // ScienceQA's own layout: data/scienceqa/{problems.json, pid_splits.json, images/}
  const sqaDir = join(tmp, "scienceqa");
  mkdirSync(sqaDir);
  for (const f of ["problems.json", "pid_splits.json"]) symlinkSync(join(X, "scienceqa/data/scienceqa", f), join(sqaDir, f));
  symlinkSync(join(X, "scienceqa/images"), join(sqaDir, "images"));
  const sqa = await items("scienceqa_img", sqaDir);
  assert.deepEqual(sqa.items.map((i) => [i.id, i.type, i.answer]), [["5", "Geography", 0], ["11", sqa.items[1]!.type, sqa.items[1]!.answer]]);
  assert.deepEqual(sqa.errors.report().omitted, { "without an image (not in the IMG subset)": 1 });

  const blink = await items("blink_jigsaw", join(X, "blink"));
  assert.deepEqual(blink.items.map((i) => [i.id, i.answer, i.images.length]), [["val_Jigsaw_1", "(B)", 3], ["val_Jigsaw_2", "(A)", 3]]);
  await assert.rejects(items("blink_jigsaw", join(X, "blink"), "test"), (e: unknown) => e instanceof DataFormatError && /test_Jigsaw_1\): no gold answer/.test(e.message));
  await assert.rejects(items("gqa", join(X, "gqa"), "val"), (e: unknown) => e instanceof DataFormatError && /gqa: .*val_balanced_questions\.json not found \(--data should be the GQA root/.test(e.message));
  await assert.rejects(items("world_gqa", join(X, "gqa")), /world_gqa: .* not found \(--data should be a synthetic world directory/);
});
