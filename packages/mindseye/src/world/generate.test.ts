import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Command } from "commander";
import { generateWorld, resolveWorldOptions } from "./generate.js";
import { registerWorldCommand } from "../cli/world.js";
import { SPLITS, type Scene } from "./scene.js";
import type { GqaQuestion } from "./questions.js";
import type { ScienceProblem } from "./science.js";
import type { JigsawRecord } from "./jigsaw.js";
import type { CocoCaptions } from "./captions.js";

const root = mkdtempSync(join(tmpdir(), "mindseye-world-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(relative(dir, p), createHash("sha256").update(readFileSync(p)).digest("hex"));
    }
  };
  walk(dir);
  return out;
}
const read = <T>(dir: string, path: string): T => JSON.parse(readFileSync(join(dir, path), "utf8")) as T;
/** Width and height from a PNG's IHDR. */
const pngSize = (path: string) => {
  const b = readFileSync(path);
  assert.equal(b.subarray(1, 4).toString(), "PNG");
  return [b.readUInt32BE(16), b.readUInt32BE(20)];
};

const world = (name: string, extra: { seed?: number; workers?: number; scenes?: number } = {}) =>
  generateWorld(resolveWorldOptions({ out: join(root, name), scenes: extra.scenes ?? 80, seed: extra.seed ?? 4, workers: extra.workers ?? 0 }));

test("the same seed gives byte-identical files, with or without render threads; another seed differs", async () => {
  await world("a");
  await world("b");
  await world("c", { workers: 2 });
  await world("d", { seed: 5 });
  const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => files(join(root, n)));
  assert.ok(a!.size > 200);
  assert.deepEqual(b, a);
  assert.deepEqual(c, a);
  assert.notDeepEqual(d!.get("images/000000000001.png"), a!.get("images/000000000001.png"));
  assert.notDeepEqual(d!.get("captions_train.json"), a!.get("captions_train.json"));
  assert.equal(d!.get("tokenizer.json"), a!.get("tokenizer.json"), "the tokenizer does not depend on the seed");
});

test("gqaDraws: more distinct questions about the training scenes, everything else unchanged", async () => {
  const base = join(root, "a"), dense = join(root, "draws");
  await generateWorld(resolveWorldOptions({ out: dense, scenes: 80, seed: 4, workers: 0, gqaDraws: 3 }));
  const [a, d] = [files(base), files(dense)];
  for (const [path, hash] of a) {
    if (path === "gqa/train_balanced_questions.json" || path === "stats.json" || path === "manifest.json") continue;
    assert.equal(d.get(path), hash, `${path} does not depend on the draws`);
  }
  const once = Object.entries(read<Record<string, GqaQuestion>>(base, "gqa/train_balanced_questions.json"));
  const thrice = Object.entries(read<Record<string, GqaQuestion>>(dense, "gqa/train_balanced_questions.json"));
  assert.deepEqual(thrice.slice(0, once.length), once, "the first draw, ids included, is the one-draw world's");
  assert.ok(thrice.length > 2.5 * once.length, `${thrice.length} questions against ${once.length}`);
  const asked = thrice.map(([, q]) => `${q.imageId}|${q.question}`);
  assert.equal(new Set(asked).size, asked.length, "no question is asked twice about one scene");
  const trainImages = new Set(once.map(([, q]) => q.imageId));
  assert.ok(thrice.every(([, q]) => trainImages.has(q.imageId)), "only the training scenes get more questions");
  const ids = thrice.map(([id]) => Number(id));
  assert.equal(new Set(ids).size, ids.length, "ids stay unique across splits");
  const others = SPLITS.filter((s) => s !== "train").flatMap((s) => Object.keys(read<Record<string, GqaQuestion>>(dense, `gqa/${s}_balanced_questions.json`)).map(Number));
  assert.ok(others.every((id) => !ids.includes(id)));
  for (const type of new Set(thrice.map(([, q]) => q.types.detailed))) {
    const yesNo = thrice.filter(([, q]) => q.types.detailed === type && (q.answer === "yes" || q.answer === "no"));
    if (yesNo.length < 40) continue;
    const yes = yesNo.filter(([, q]) => q.answer === "yes").length / yesNo.length;
    assert.ok(yes > 0.35 && yes < 0.65, `${type}: still balanced (${(100 * yes).toFixed(0)}% yes)`);
  }
  const manifest = read<{ gqaDraws?: number; counts: { train: { gqa: number } } }>(dense, "manifest.json");
  assert.equal(manifest.gqaDraws, 3);
  assert.equal(manifest.counts.train.gqa, thrice.length);
  assert.equal(read<{ gqaDraws?: number }>(base, "manifest.json").gqaDraws, undefined, "a one-draw world's manifest is as before");
  assert.throws(() => resolveWorldOptions({ out: dense, scenes: 80, seed: 4, gqaDraws: 0 }), /--gqa-draws must be an integer from 1 to 100/);
});

test("the layout: every file the formats name exists and agrees with the others", () => {
  const dir = join(root, "a");
  const manifest = read<{ name: string; version: string; seed: number; size: number; scenes: number; latents: number; counts: Record<string, Record<string, number>>; heldOut: string[][] }>(dir, "manifest.json");
  assert.equal(manifest.name, "mindseye-world");
  assert.deepEqual([manifest.seed, manifest.size, manifest.scenes, manifest.latents], [4, 48, 80, 16]);
  assert.equal(manifest.heldOut.length, 6);
  const { scenes } = read<{ version: string; scenes: Scene[] }>(dir, "scenes.json");
  assert.equal(scenes.length, 80);
  assert.deepEqual(readdirSync(join(dir, "images")).sort(), scenes.map((s) => s.file_name).sort());
  assert.deepEqual(pngSize(join(dir, "images", scenes[0]!.file_name)), [48, 48]);
  const byId = new Map(scenes.map((s) => [s.id, s]));
  const byImageId = new Map(scenes.map((s) => [s.imageId, s]));
  const problems = read<Record<string, ScienceProblem>>(dir, "scienceqa/problems.json");
  const pidSplits = read<Record<string, string[]>>(dir, "scienceqa/pid_splits.json");
  assert.deepEqual(Object.keys(pidSplits), [...SPLITS]);
  for (const split of SPLITS) {
    const c = manifest.counts[split]!;
    assert.equal(c.scenes, scenes.filter((s) => s.split === split).length);
    const coco = read<CocoCaptions>(dir, `captions_${split}.json`);
    assert.equal(coco.images.length, c.scenes);
    assert.equal(coco.annotations.length, c.captions);
    for (const img of coco.images) assert.equal(byId.get(img.id)!.split, split);
    const gqa = read<Record<string, GqaQuestion>>(dir, `gqa/${split}_balanced_questions.json`);
    assert.equal(Object.keys(gqa).length, c.gqa);
    for (const q of Object.values(gqa)) assert.equal(byImageId.get(q.imageId)!.split, split);
    assert.equal(pidSplits[split]!.length, c.scienceqa);
    for (const pid of pidSplits[split]!) {
      assert.equal(problems[pid]!.split, split);
      statSync(join(dir, "scienceqa/images", split, pid, "image.png"));
    }
    const jsonl = readFileSync(join(dir, "blink/Jigsaw", `${split}.jsonl`), "utf8");
    const records = jsonl.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as JigsawRecord);
    assert.equal(records.length, c.blink);
    for (const r of records) {
      assert.deepEqual(pngSize(join(dir, "blink/Jigsaw", r.image_1)), [48, 48]);
      assert.deepEqual(pngSize(join(dir, "blink/Jigsaw", r.image_2)), [48, 48]);
      assert.deepEqual(pngSize(join(dir, "blink/Jigsaw", r.image_3)), [48, 48]);
    }
  }
  // Captions' annotation ids are unique across splits.
  const ids = SPLITS.flatMap((s) => read<CocoCaptions>(dir, `captions_${s}.json`).annotations.map((a) => a.id));
  assert.equal(new Set(ids).size, ids.length);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "stats.json"]) statSync(join(dir, f));
});

test("stats.json reports chance and majority per task and split, as the files give them", () => {
  const dir = join(root, "a");
  const stats = read<Record<string, Record<string, { overall: { n: number; chance: number; majority: number; majorityAnswer: string; trainQuestionPrior?: number } }>>>(dir, "stats.json");
  assert.deepEqual(Object.keys(stats), ["gqa", "scienceqa", "blink"]);
  for (const split of SPLITS) {
    const qs = Object.values(read<Record<string, GqaQuestion>>(dir, `gqa/${split}_balanced_questions.json`));
    const o = stats.gqa![split]!.overall;
    assert.equal(o.n, qs.length);
    const top = qs.filter((q) => q.answer === o.majorityAnswer).length;
    assert.ok(qs.every((q) => qs.filter((x) => x.answer === q.answer).length <= top));
    assert.equal(o.majority, Math.round((top / qs.length) * 1e4) / 1e4);
    assert.ok(o.chance > 0.2 && o.chance < 0.6);
    assert.equal(stats.blink![split]!.overall.chance, 0.5);
    assert.equal(split === "train", o.trainQuestionPrior === undefined);
  }
});

test("bad options are refused with the option's name; existing output is protected", async () => {
  const base = { out: join(root, "x"), scenes: 100, seed: 0 };
  assert.throws(() => resolveWorldOptions({ ...base, scenes: 5 }), /--scenes must be an integer from 10/);
  assert.throws(() => resolveWorldOptions({ ...base, size: 63 }), /--size must be even/);
  assert.throws(() => resolveWorldOptions({ ...base, size: 8 }), /--size must be an integer from 32/);
  assert.throws(() => resolveWorldOptions({ ...base, latents: 0 }), /--latents/);
  assert.throws(() => resolveWorldOptions({ ...base, seed: -1 }), /--seed/);
  assert.throws(() => resolveWorldOptions({ ...base, out: "" }), /--out/);
  const other = join(root, "other");
  mkdirSync(other);
  writeFileSync(join(other, "notes.txt"), "mine");
  await assert.rejects(world("other", { scenes: 10 }), /is not empty; choose a new or empty directory/);
  await assert.rejects(generateWorld(resolveWorldOptions({ out: other, scenes: 10, seed: 0, force: true })), /choose a new or empty directory/);
  assert.equal(readFileSync(join(other, "notes.txt"), "utf8"), "mine");
  await assert.rejects(generateWorld(resolveWorldOptions({ out: join(other, "notes.txt"), scenes: 10, seed: 0 })), /is a file/);
  await assert.rejects(world("a", { scenes: 10 }), /pass --force/);
  await generateWorld(resolveWorldOptions({ out: join(root, "a"), scenes: 10, seed: 4, force: true }));
  assert.equal(read<{ scenes: number }>(join(root, "a"), "manifest.json").scenes, 10);
});

test("the CLI command parses its options and reports bad values", async () => {
  const run = (...args: string[]) => {
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {} });
    registerWorldCommand(program);
    return program.parseAsync(["node", "mindseye", "world", "generate", ...args]);
  };
  await assert.rejects(run("--out", join(root, "cli"), "--scenes", "abc"), /--scenes must be a non-negative integer, got "abc"/);
  await assert.rejects(run("--out", join(root, "cli"), "--scenes", "20", "--size", "-4"), /--size/);
  await assert.rejects(run("--scenes", "20"), /--out/);
  const log = console.log;
  const lines: string[] = [];
  console.log = (l: string) => lines.push(l);
  try {
    await run("--out", join(root, "cli"), "--scenes", "20", "--seed", "3", "--size", "32", "--latents", "4");
  } finally {
    console.log = log;
  }
  assert.ok(lines.some((l) => /generated 20 scenes .* scenes\/s/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => /^gqa +val/.test(l)));
  assert.deepEqual(pngSize(join(root, "cli/images/000000000001.png")), [32, 32]);
  const m = read<{ latents: number; size: number }>(join(root, "cli"), "manifest.json");
  assert.deepEqual([m.latents, m.size], [4, 32]);
});
