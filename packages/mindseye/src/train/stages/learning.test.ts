// Every stage provably learns: each one, run from its recipe on a tiny world, fits its training
// set — the encoder reads every attribute of the training scenes, fine-tuning answers its
// training questions, and latent pretraining retrieves each training image from its caption.
// A stage that runs but cannot learn (a detached loss, a collapsed head, a broken mask) fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { evaluate } from "../../eval/run.js";
import { evaluateRetrieval } from "../../analysis/retrieval.js";
import { loadStudy } from "../../experiment/runner.js";
import { readScenes, loadTokenizer, readPreprocessor, ImageBank } from "./common.js";
import { basePairs, cellWordIds, imageWordViews, jigsawViewPixels } from "./vlm_base.js";
import { JIGSAW_VIEWS, viewCellWords } from "../../world/jigsaw.js";
import { imageWordLoss } from "../../objectives/image_words.js";
import { MindsEyeVLM } from "../../models/vlm.js";
import { torch } from "@mindseye/torch";
import { cellWords } from "../../world/grounding.js";
import {
  runWorldEncoder, runVlmBase, runLatentPretrain, runFinetune, WorldEncoderRecipe, VlmBaseRecipe, LatentPretrainRecipe, FinetuneRecipe,
} from "./index.js";

const tiny = { lm: { hidden_size: 64, intermediate_size: 128, layers: 2, heads: 4, kv_heads: 2 } };

/**
 * The image-word loss's two reference levels over `cells` (each cell's four words): its floor, ln 4
 * for a cell with an object (four words, a quarter each) and 0 for an empty one ("nothing" four
 * times), and the level of a token that ignores its image and predicts the words' frequencies.
 */
function imageWordLevels(cells: string[][]): { floor: number; blind: number } {
  const floor = Math.log(4) * cells.filter((w) => w[0] !== "nothing").length / cells.length;
  const freq = new Map<string, number>();
  for (const w of cells.flat()) freq.set(w, (freq.get(w) ?? 0) + 1 / (4 * cells.length));
  const blind = cells.reduce((sum, ws) => sum - ws.reduce((a, w) => a + Math.log(freq.get(w)!), 0) / 4, 0) / cells.length;
  return { floor, blind };
}

test("each stage fits a tiny training set: encoder F1, fine-tuning accuracy, latent retrieval", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-learning-"));
  try {
    // 47 scenes: 32 in train. 48 px scenes and 16 px patches: one vision token per layout cell.
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 47, seed: 11, size: 48, latents: 9, workers: 0, log: () => {} }));

    const enc = await runWorldEncoder(WorldEncoderRecipe.parse({
      stage: "world-encoder", world, out: join(root, "enc"), encoder: { hidden_size: 64, intermediate_size: 128, layers: 2, heads: 4, patch_size: 16 },
      train: { steps: 250, batch_size: 32, lr: 3e-3, warmup_steps: 10, log_every: 50 },
    }), { quiet: true });
    assert.ok(enc.trainF1 >= 0.97, `the encoder reads the 32 training scenes' attributes per cell: F1 ${enc.trainF1.toFixed(3)}`);

    // The base with the image-word objective: its image tokens come to name their cells' words.
    // The loss starts near ln(vocabulary) ≈ 5; its floor is ln 4 for a cell with an object (four
    // words, a quarter each) and 0 for an empty one, ln 4 × the share of filled cells in all.
    const base = await runVlmBase(VlmBaseRecipe.parse({
      stage: "vlm-base", world, encoder: enc.encoderDir, out: join(root, "base"), ...tiny, image_words: 1, train: { steps: 60, batch_size: 32, lr: 3e-3, log_every: 20 },
    }), { quiet: true });
    // A token that ignores its image can do no better than the words' frequencies ("blind").
    const { floor, blind } = imageWordLevels(readScenes(world).filter((s) => s.split === "train").flatMap(cellWords));
    const wordLoss = readFileSync(join(root, "base", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { image_words: number }).image_words);
    assert.ok(wordLoss.at(-1)! < floor + 0.25 * (blind - floor),
      `the image tokens learn their cells' words: image-word loss ${wordLoss.map((v) => v.toFixed(2)).join(" → ")}; floor ${floor.toFixed(2)}, blind ${blind.toFixed(2)}`);

    // With image_word_views, the tokens of the jigsaw views (the scene without its lower-right
    // quadrant; the quadrant alone) come to name what shows in their cells as well.
    const viewed = await runVlmBase(VlmBaseRecipe.parse({
      stage: "vlm-base", world, encoder: enc.encoderDir, out: join(root, "viewed"), ...tiny, image_words: 1, image_word_views: true, train: { steps: 200, batch_size: 32, lr: 3e-3, log_every: 20 },
    }), { quiet: true });
    const trainScenes = readScenes(world).filter((s) => s.split === "train");
    const viewedModel = MindsEyeVLM.fromPretrained(viewed.modelDir), pre = readPreprocessor(enc.encoderDir);
    const views = imageWordViews(world, cellWordIds(loadTokenizer(world), viewedModel), pre);
    const paths = trainScenes.map((s) => join(world, "images", s.file_name));
    const bank = await ImageBank.load(paths, pre);
    for (const view of JIGSAW_VIEWS) {
      const { floor: viewFloor, blind: viewBlind } = imageWordLevels(trainScenes.flatMap((s) => viewCellWords(s, view)));
      const loss = torch.noGrad(() => torch.scope(() => imageWordLoss(viewedModel.imageFeatures(jigsawViewPixels(bank.get(paths), views.black)[view]), viewedModel.language_model.model.embed_tokens.weight, views.words[view](paths)).item()));
      assert.ok(loss < viewFloor + 0.25 * (viewBlind - viewFloor),
        `the ${view} views' tokens learn what shows in their cells: image-word loss ${loss.toFixed(2)}; floor ${viewFloor.toFixed(2)}, blind ${viewBlind.toFixed(2)}`);
    }
    bank.dispose();
    views.black.dispose();
    viewedModel.parameters().forEach((p) => p.dispose());

    // The base's alignment phase: its "where" questions about the 32 training scenes ("Where is the
    // red object?" → "in the top left corner") come to be answered from the image. Text alone
    // cannot: the same description names objects in different places in different scenes, so
    // without the image the answer tokens' cross-entropy is at least the entropy of the places
    // given the question, spread over the answer's tokens (+2 for the turn's end: a lower bound).
    const alignedOut = join(root, "aligned");
    await runVlmBase(VlmBaseRecipe.parse({
      stage: "vlm-base", world, encoder: enc.encoderDir, out: alignedOut, ...tiny, grounding_descriptions: "minimal", alignment: { steps: 600 }, grounding_relations: true,
      train: { steps: 1, batch_size: 32, lr: 3e-3, log_every: 1 },
    }), { quiet: true });
    // Its second phase (grounding_relations) adds the relation lookups ("What is to the left of the
    // red object?" → the one object there), answered from the image in the same way.
    const pairs = await basePairs({ world, seed: 0, grounding: true, grounding_descriptions: "minimal", grounding_relations: true });
    const tok = loadTokenizer(world);
    for (const [what, kinds, dir] of [["\"where\" questions", ["where"], "alignment"], ["\"where\" questions and relation lookups", ["where", "rel"], join("alignment", "relations")]] as const) {
      const of = pairs.filter((p) => (kinds as readonly string[]).includes(p.kind));
      const blindPerToken = blindAnswerEntropy(of) * of.length / of.reduce((n, p) => n + tok.encode(p.answer, { addSpecialTokens: false }).length + 2, 0);
      const ce = readFileSync(join(alignedOut, dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { ce: number }).ce);
      const lastCe = ce.slice(-5).reduce((a, b) => a + b, 0) / 5;
      assert.ok(blindPerToken > 0.02 && lastCe < blindPerToken / 4,
        `the alignment answers its ${of.length} ${what} from the image: answer cross-entropy ${ce[0]!.toFixed(3)} → ${lastCe.toFixed(4)} per token; text alone ≥ ${blindPerToken.toFixed(3)}`);
    }

    // Latent pretraining with replay rehearses the base's mix beside the captions: from the aligned
    // base, its loss on the rehearsed examples falls where they are weighted 1 and not where they
    // are weighted ~0 (logged all the same). Both arms, at either weight, draw the same examples:
    // their first step's rehearsed loss, before any update, is one value.
    const rehearsedCe = async (arm: "control" | "latent", weight: number) => {
      const out = join(root, `replay-${arm}-${weight}`);
      const loss = arm === "control" ? { lambda_sim: 0, lambda_align: 0 } : { lambda_sim: 0.3, lambda_align: 0.05, similarity: "l2" as const };
      await runLatentPretrain(LatentPretrainRecipe.parse({
        stage: "latent-pretrain", world, encoder: enc.encoderDir, base: join(alignedOut, "model"), targets: join(root, "targets"), out, pool: "grid:9", loss,
        replay: { batch_size: 16, weight, grounding_descriptions: "minimal", grounding_relations: true }, train: { steps: 60, batch_size: 16, lr: 3e-3, warmup_steps: 5, log_every: 1 },
      }), { quiet: true });
      return readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { replay_ce?: number }).replay_ce).filter((v) => v !== undefined);
    };
    const [rehearsed, ignored, latentRehearsed] = [await rehearsedCe("control", 1), await rehearsedCe("control", 1e-6), await rehearsedCe("latent", 1)];
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    assert.equal(rehearsed.length, 60);
    assert.ok(Math.abs(rehearsed[0]! - ignored[0]!) < 1e-6 && Math.abs(rehearsed[0]! - latentRehearsed[0]!) < 1e-6, `one draw for every run: first rehearsed loss ${rehearsed[0]} / ${ignored[0]} / ${latentRehearsed[0]}`);
    for (const [arm, v] of [["text control", rehearsed], ["latent arm", latentRehearsed]] as const) {
      assert.ok(mean(v.slice(-10)) < 0.8 * mean(ignored.slice(-10)), `the ${arm} learns the rehearsed mix: its loss ${v[0]!.toFixed(3)} → ${mean(v.slice(-10)).toFixed(3)}, unweighted ${mean(ignored.slice(-10)).toFixed(3)}`);
    }

    // Fine-tuning: 32 GQA-style training questions, answered exactly after training on them.
    const tuned = await runFinetune(FinetuneRecipe.parse({
      stage: "finetune", world, model: base.modelDir, out: join(root, "ft"), tasks: ["gqa"], fraction: 32 / gqaTrainCount(world),
      train: { steps: 150, batch_size: 32, lr: 3e-3, warmup_steps: 10, log_every: 50 },
    }), { quiet: true });
    assert.equal(tuned.examples, 32);
    const fit = await evaluate({ modelDir: tuned.modelDir, task: "world_gqa", split: "train", dataDir: world, out: join(root, "eval"), quiet: true, onlyIds: tuned.questionIds });
    assert.equal(fit.n, 32);
    assert.ok(fit.accuracy.mean >= 0.97, `fine-tuning answers its 32 training questions: ${(100 * fit.accuracy.mean).toFixed(1)}%`);

    // Latent pretraining: each of the 32 training images is retrieved from its first caption, with
    // cosine + InfoNCE and with configs/demo.yaml's objective (L2 at λ_sim 0.3, InfoNCE at λ_align 0.1).
    // The demo's weaker alignment (λ_align 0.1) separates fewer of the near-alike scenes at the top
    // rank: it must still put most images first (chance: 1 in 32).
    const objectives = [
      { name: "cosine", loss: { lambda_align: 0.5 }, minRecall1: 0.9 },
      { name: "demo", loss: loadStudy(join(CONFIGS, "demo.yaml"), ["out=unused"]).latent_pretrain.loss, minRecall1: 0.75 },
    ];
    for (const { name, loss, minRecall1 } of objectives) {
      const out = join(root, `latent-${name}`);
      await runLatentPretrain(LatentPretrainRecipe.parse({
        stage: "latent-pretrain", world, encoder: enc.encoderDir, base: base.modelDir, targets: join(root, "targets"), out, pool: "grid:9",
        loss, train: { steps: 200, batch_size: 64, lr: 3e-3, warmup_steps: 10, log_every: 50 },
      }), { quiet: true });
      const r = await evaluateRetrieval({ modelDir: join(out, "model"), dataDir: world, split: "train", out: join(out, "retrieval"), cacheRoot: join(root, "gallery"), quiet: true });
      assert.equal(r.gallery.images, 32);
      assert.ok(r.recall["1"]!.mean >= minRecall1, `${name}: imagined latents retrieve their training images: recall@1 ${(100 * r.recall["1"]!.mean).toFixed(1)}%, median rank ${r.medianRank}`);
      assert.ok(r.collapse.predicted.meanPairwiseCosine < 0.5, `${name}: imagined latents do not collapse: mean pairwise cosine ${r.collapse.predicted.meanPairwiseCosine.toFixed(3)}`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const CONFIGS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "..", "configs");

/** The mean over pairs of the entropy (nats) of the answers given the question's text: the least a model reading text alone can reach per answer. */
function blindAnswerEntropy(pairs: { text: string; answer: string }[]): number {
  const byText = new Map<string, Map<string, number>>();
  for (const p of pairs) { const m = byText.get(p.text) ?? new Map<string, number>(); m.set(p.answer, (m.get(p.answer) ?? 0) + 1); byText.set(p.text, m); }
  let h = 0;
  for (const m of byText.values()) { const n = [...m.values()].reduce((a, b) => a + b, 0); for (const c of m.values()) h -= c * Math.log(c / n); }
  return h / pairs.length;
}

function gqaTrainCount(world: string): number {
  return Object.keys(JSON.parse(readFileSync(join(world, "gqa", "train_balanced_questions.json"), "utf8")) as object).length;
}
