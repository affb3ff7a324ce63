// The four stages end to end on a tiny world, in seconds: each runs from its recipe, writes what
// the next one reads, and the frozen encoder stays frozen throughout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { torch } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { loadStageRecipe, runRecipe, Recipe } from "./index.js";
import { MindsEyeVLM } from "../../models/vlm.js";
import { VitVisionModel } from "../../models/vit.js";
import { validate } from "../../config/recipe.js";
import { basePairs, VlmBaseRecipe, imageWordViews, jigsawViewPixels, cellWordIds } from "./vlm_base.js";
import { ImageBank, loadTokenizer, readPreprocessor, readScenes } from "./common.js";
import { renderJigsaw } from "../../world/render.js";
import { relationPairs } from "../../world/grounding.js";
import { Rng } from "../../world/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "..", "configs"); // dist/train/stages -> repo root

test("world-encoder → vlm-base → latent-pretrain (latent and text control) → finetune, from the shipped recipes", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-stages-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 240, seed: 3, size: 48, latents: 9, workers: 0, log: () => {} }));
    const run = (name: string, sets: string[]) => runRecipe(loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=4", "train.batch_size=8", ...sets]), { quiet: true });

    const encoder = await run("world-encoder", [`out=${join(root, "enc")}`]);
    assert.ok(existsSync(join(encoder, "preprocessor_config.json")) && existsSync(join(encoder, "DONE")));
    const base = await run("vlm-base", [`encoder=${encoder}`, `out=${join(root, "base")}`]);
    const stageArgs = [`encoder=${encoder}`, `base=${base}`, `targets=${join(root, "targets")}`];
    const latent = await run("latent-pretrain", [...stageArgs, `out=${join(root, "latent")}`]);
    const control = await run("latent-pretrain", [...stageArgs, `out=${join(root, "control")}`, "loss.lambda_sim=0", "loss.lambda_align=0"]);
    const tuned = await run("finetune", [`model=${latent}`, `out=${join(root, "ft")}`, "fraction=0.25"]);

    const logged = readFileSync(join(root, "latent", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
    const last = logged[logged.length - 1]!;
    for (const key of ["ce", "sim", "align", "pred_std", "pred_effective_rank", "pred_mean_cosine"]) assert.ok(Number.isFinite(last[key]), `latent run logs ${key}`);
    const controlLog = readFileSync(join(root, "control", "metrics.jsonl"), "utf8");
    assert.ok(!controlLog.includes("\"sim\""), "the text control computes no latent terms");

    torch.scope(() => {
      const enc = VitVisionModel.fromPretrained(encoder);
      const l = MindsEyeVLM.fromPretrained(latent), c = MindsEyeVLM.fromPretrained(control), t = MindsEyeVLM.fromPretrained(tuned);
      assert.ok(l.latent_head !== null && c.latent_head === null && t.latent_head === null);
      // every model carries the frozen encoder unchanged
      for (const m of [l, c, t]) {
        const theirs = m.vision_tower.stateDict();
        for (const [k, v] of enc.stateDict()) assert.equal(torch.scope(() => v.sub(theirs.get(k)!).abs().amax().item()), 0, k);
      }
      for (const m of [enc, l, c, t]) m.parameters().forEach((p) => p.dispose());
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("every shipped recipe validates; unknown keys and wrong types name the dotted key", () => {
  for (const name of ["world-encoder", "vlm-base", "latent-pretrain", "finetune"]) loadStageRecipe(join(configs, `${name}.yaml`));
  assert.throws(() => loadStageRecipe(join(configs, "latent-pretrain.yaml"), ["loss.lambda_simm=0"]), /unknown key loss\.lambda_simm \(did you mean loss\.lambda_sim\?\)/);
  assert.throws(() => loadStageRecipe(join(configs, "finetune.yaml"), ["fraction=two"]), /fraction/);
  assert.throws(() => validate(Recipe, { stage: "pretrain" }, "inline"), /stage/);
  assert.throws(() => loadStageRecipe(join(configs, "finetune.yaml"), ["stage=pretrain"]), /stage must be one of world-encoder, vlm-base, latent-pretrain, finetune/);
  const dir = mkdtempSync(join(tmpdir(), "mindseye-recipe-"));
  try {
    writeFileSync(join(dir, "r.yaml"), "stage: finetune\nworld: w\nmodel: m\nout: o\ntrain:\n  steps: 1\n  lr: fast\n");
    assert.throws(() => loadStageRecipe(join(dir, "r.yaml")), /train\.lr/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a stage other than finetune refuses train.group_by_length instead of ignoring it", async () => {
  for (const name of ["world-encoder", "vlm-base", "latent-pretrain"]) {
    const r = loadStageRecipe(join(configs, `${name}.yaml`), ["train.group_by_length=true", "out=/nonexistent/never-written"]);
    await assert.rejects(runRecipe(r, { quiet: true }), new RegExp(`${name}: train.group_by_length .* remove it`));
  }
});

test("vlm-base grounding_descriptions: minimal names the same objects by fewer words; captions and place questions unchanged", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-base-pairs-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 40, seed: 3, size: 48, latents: 9, workers: 0, log: () => {} }));
    const recipe = { world, seed: 0, grounding: true };
    const full = await basePairs(recipe), absent = await basePairs({ ...recipe, grounding_descriptions: "full" }), minimal = await basePairs({ ...recipe, grounding_descriptions: "minimal" });
    assert.deepEqual(absent, full, "absent is full");
    const isWhere = (p: { text: string }) => p.text.startsWith("Where");
    assert.deepEqual(minimal.filter((p) => !isWhere(p)), full.filter((p) => !isWhere(p)));
    const words = (ps: { text: string }[]) => ps.filter(isWhere).reduce((n, p) => n + p.text.split(" ").length, 0);
    assert.equal(minimal.filter(isWhere).length, full.filter(isWhere).length);
    assert.ok(words(minimal) < 0.8 * words(full), `${words(minimal)} words against ${words(full)}`);
    assert.throws(() => VlmBaseRecipe.parse({ stage: "vlm-base", world, encoder: "e", out: "o", grounding_descriptions: "short" }), /full|minimal/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("vlm-base alignment: a first phase on the \"where\" questions alone, kept, and a rerun starts from it", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-base-align-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 60, seed: 5, size: 48, latents: 9, workers: 0, log: () => {} }));
    const stage = (name: string, sets: string[]) => loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=4", "train.batch_size=8", ...sets]);
    const encoder = await runRecipe(stage("world-encoder", [`out=${join(root, "enc")}`]), { quiet: true });
    const out = join(root, "base");
    const recipe = stage("vlm-base", [`encoder=${encoder}`, `out=${out}`, "grounding_descriptions=minimal", "alignment.steps=6"]);
    const model = await runRecipe(recipe, { quiet: true });

    const where = (await basePairs({ world, seed: 0, grounding: true, grounding_descriptions: "minimal" })).filter((p) => p.kind === "where");
    const done = JSON.parse(readFileSync(join(out, "alignment", "model", "DONE"), "utf8")) as { questions: number; steps: number };
    assert.equal(done.questions, where.length, "the alignment phase reads the base's \"where\" questions, and only those");
    assert.equal(done.steps, 6);
    const logged = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
    assert.ok(logged(join(out, "alignment")).every((m) => Number.isFinite(m.image_words)), "the alignment phase trains the image-word objective (its default weight 1)");
    assert.ok(logged(out).every((m) => m.image_words === undefined), "the mix does not (image_words 0)");

    // A rerun that lost the mix's progress starts from the kept aligned VLM and ends where the first run did.
    const alignLog = readFileSync(join(out, "alignment", "metrics.jsonl"), "utf8");
    const first = readFileSync(join(model, "model.safetensors"));
    for (const p of ["model", "checkpoints", "metrics.jsonl"]) rmSync(join(out, p), { recursive: true, force: true });
    await runRecipe(recipe, { quiet: true });
    assert.equal(readFileSync(join(out, "alignment", "metrics.jsonl"), "utf8"), alignLog, "the alignment phase is not run again");
    assert.ok(readFileSync(join(model, "model.safetensors")).equals(first), "the same base, to the byte");

    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b2")}`, "grounding=false", "alignment.steps=6"]), { quiet: true }), /alignment .*grounding is false/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("vlm-base grounding_relations: the relation lookups join the grounding questions and a second alignment phase (or lead it, alignment.first: rel); grounding_readouts join the \"where\" questions; each refused without what it needs", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-base-relations-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 60, seed: 5, size: 48, latents: 9, workers: 0, log: () => {} }));
    const recipe = { world, seed: 0, grounding: true, grounding_descriptions: "minimal" as const };
    const without = await basePairs(recipe), withRelations = await basePairs({ ...recipe, grounding_relations: true });
    const relations = withRelations.filter((p) => p.kind === "rel");
    assert.deepEqual(withRelations.filter((p) => p.kind !== "rel"), without, "the other pairs are unchanged");
    const expected = readScenes(world).filter((s) => s.split === "train").flatMap((s) => relationPairs(s, new Rng(0, "relations", s.id), "minimal").map((g) => g.question));
    assert.deepEqual(relations.map((p) => p.text), expected);
    assert.ok(relations.length > 20, `${relations.length} relation lookups`);

    const stage = (name: string, sets: string[]) => loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=2", "train.batch_size=8", ...sets]);
    const encoder = await runRecipe(stage("world-encoder", [`out=${join(root, "enc")}`]), { quiet: true });
    const out = join(root, "base");
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${out}`, "grounding_descriptions=minimal", "grounding_relations=true", "alignment.steps=2"]), { quiet: true });
    const done = JSON.parse(readFileSync(join(out, "alignment", "model", "DONE"), "utf8")) as { questions: number; withRelations: number };
    const where = withRelations.filter((p) => p.kind === "where").length;
    assert.equal(done.questions, where, "the first alignment phase reads the \"where\" questions alone");
    assert.equal(done.withRelations, where + relations.length, "the second reads them and the relation lookups");
    assert.ok(existsSync(join(out, "alignment", "metrics.jsonl")) && existsSync(join(out, "alignment", "relations", "metrics.jsonl")), "each phase logs its own run");
    // alignment.first: rel swaps the first phase's questions for the relation lookups.
    const relFirst = join(root, "rel-first");
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${relFirst}`, "grounding_descriptions=minimal", "grounding_relations=true", "alignment.steps=2", "alignment.first=rel"]), { quiet: true });
    const relDone = JSON.parse(readFileSync(join(relFirst, "alignment", "model", "DONE"), "utf8")) as { questions: number; withRelations: number; first: string };
    assert.deepEqual([relDone.questions, relDone.withRelations, relDone.first], [relations.length, where + relations.length, "rel"]);
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b2")}`, "grounding=false", "grounding_relations=true"]), { quiet: true }), /grounding_relations .*grounding is false/);
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b3")}`, "alignment.steps=2", "alignment.first=rel"]), { quiet: true }), /alignment.first: rel .*grounding_relations: true/);
    // grounding_readouts adds "What is the <np>?" read-outs beside the "where" questions, in both phases.
    const withReadouts = await basePairs({ ...recipe, grounding_relations: true, grounding_readouts: true });
    const readouts = withReadouts.filter((p) => p.kind === "what");
    assert.deepEqual(withReadouts.filter((p) => p.kind !== "what"), withRelations, "the other pairs are unchanged");
    assert.equal(readouts.length, where, "one read-out per \"where\" object");
    const read = join(root, "readouts");
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${read}`, "grounding_descriptions=minimal", "grounding_relations=true", "grounding_readouts=true", "alignment.steps=2"]), { quiet: true });
    const readDone = JSON.parse(readFileSync(join(read, "alignment", "model", "DONE"), "utf8")) as { questions: number; withRelations: number };
    assert.deepEqual([readDone.questions, readDone.withRelations], [2 * where, 2 * where + relations.length]);
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b4")}`, "grounding=false", "grounding_readouts=true"]), { quiet: true }), /grounding_readouts .*grounding is false/);
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b5")}`, "grounding_absent=true"]), { quiet: true }), /grounding_absent .*grounding_readouts is off/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("vlm-base image_word_views: the image-word objective also reads each image's jigsaw views, pixel for pixel as the world draws them, in the mix and a last alignment phase of its own steps; refused without the objective", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-base-views-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 60, seed: 5, size: 48, latents: 9, workers: 0, log: () => {} }));
    const stage = (name: string, sets: string[]) => loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=2", "train.batch_size=8", ...sets]);
    const encoder = await runRecipe(stage("world-encoder", [`out=${join(root, "enc")}`]), { quiet: true });
    const pre = readPreprocessor(encoder);

    // The views made from a scene's pixels are the world's jigsaw images of it, to the bit.
    const scene = readScenes(world).find((s) => s.objects.length > 2)!;
    const drawn = renderJigsaw(scene, scene, 48);
    const files = { full: drawn.full, masked: drawn.masked, piece: drawn.truePatch };
    for (const [name, png] of Object.entries(files)) writeFileSync(join(root, `${name}.png`), png);
    const bank = await ImageBank.load(Object.keys(files).map((n) => join(root, `${n}.png`)), pre);
    const model = MindsEyeVLM.fromPretrained(await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b0")}`]), { quiet: true }));
    const views = imageWordViews(world, cellWordIds(loadTokenizer(world), model), pre);
    const { masked, piece } = jigsawViewPixels(bank.get([join(root, "full.png")]), views.black);
    assert.deepEqual(Array.from(masked.toFloat32Array()), Array.from(bank.get([join(root, "masked.png")]).toFloat32Array()));
    assert.deepEqual(Array.from(piece.toFloat32Array()), Array.from(bank.get([join(root, "piece.png")]).toFloat32Array()));

    const out = join(root, "base");
    const logged = (run: string) => readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${out}`, "image_words=1", "train.steps=1", "train.batch_size=4"]), { quiet: true });
    const withViews = join(root, "views");
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${withViews}`, "image_words=1", "image_word_views=true", "train.steps=1", "train.batch_size=4"]), { quiet: true });
    const [plain, viewed] = [logged(out), logged(withViews)];
    // One step on the same batch from the same model: the same next-token loss, and the views add their own term.
    assert.equal(viewed.length, 1);
    assert.equal(viewed[0]!.ce, plain[0]!.ce);
    assert.ok(viewed[0]!.image_words! > plain[0]!.image_words! + 1, `image words ${viewed[0]!.image_words} with views, ${plain[0]!.image_words} without`);
    // With alignment, a last alignment phase reads the views (after the "where" phase here), for its own steps.
    const aligned = join(root, "aligned");
    await runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${aligned}`, "grounding_descriptions=minimal", "alignment.steps=2", "alignment.views_steps=3", "image_words=1", "image_word_views=true"]), { quiet: true });
    assert.equal(logged(join(aligned, "alignment")).at(-1)!.step, 2);
    assert.equal(logged(join(aligned, "alignment", "views")).at(-1)!.step, 3, "the views' phase runs its own steps");
    assert.ok(logged(join(aligned, "alignment")).every((m) => m.image_words! < viewed[0]!.image_words! - 1), "the first phase reads whole scenes only");
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b2")}`, "image_word_views=true"]), { quiet: true }), /image_word_views .*off/);
    await assert.rejects(runRecipe(stage("vlm-base", [`encoder=${encoder}`, `out=${join(root, "b3")}`, "grounding_descriptions=minimal", "alignment.steps=2", "alignment.views_steps=3"]), { quiet: true }), /views_steps .*image_word_views: true/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
