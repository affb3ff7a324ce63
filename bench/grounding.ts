// bench:grounding — how fast the world's small VLM learns to look a cell up from the question,
// for each place of the image in the prompt and each init scale of its LM. Not a speed benchmark:
// a learning diagnostic, side by side in one run. The image features are fine (a linear probe
// reads each cell from its projected token); what is slow to learn is composing the question into
// a lookup ("What is in the top left corner?" → the top-left token) when the image comes before
// the question, as LLaVA puts it. With the image after the question (image_position: after_text)
// each cell's token sits at a fixed distance from the answer and can read the question itself.
//
// For each image position and initializer_range, a fresh VLM (the study's vlm-base LM around the study's frozen
// encoder, built by train/stages/vlm_base.ts's buildVlm) trains on the world's "What is {place}?"
// grounding questions alone (world/grounding.ts, 4 per training scene) with the vlm-base trainer
// settings, and is scored, teacher-forced, on the val scenes' questions: answer-exact and token
// accuracy with the right images and with images shuffled across questions (what the question
// alone gives). A second VLM trains on the questions about one fixed cell only (the top left):
// reading a cell without a lookup to compose, the control. Linear probes of the first VLM's
// projected image tokens (analysis/probes.ts: each cell's colour, shape, size and material, or
// "empty"; fitted on 1,500 training scenes, scored on 300 val scenes) show what the LM is given.
//
// With `--kind where` the VLMs train on "Where is the {np}?" questions instead: finding a cell by
// its content rather than by its place, which nearly every world_gqa question needs. With
// `--image-words λ` they also train on the base's image-word objective at weight λ (each image
// token, through the tied word embeddings, predicts its cell's words: objectives/image_words.ts).
// With `--descriptions minimal` the "where" questions name each object by the fewest attributes
// that single it out in its scene ("Where is the red object?"), as the world's GQA questions do.
// With `--kind rel` they train on relation lookups ("What is to the left of the red object?" → the
// one object there, world/grounding.ts relationPairs): a lookup by content, then a step across
// the grid, as world_gqa's relational questions need.
//
//   npm run bench:grounding [-- --steps 500 --inits 0.02,0.08 --positions before_text,after_text --kind at --image-words 0 --run runs/demo]
// Reads the world and encoder of a finished study (make demo); last line: one row per setting.
// With `--model DIR` it trains nothing and scores that VLM (a base, or a checkpoint of one) on the
// val questions of `--kind`: how well a base VLM finds cells by place or by content. With
// `--save DIR` the first setting's trained VLM is kept in DIR (a model directory `mindseye train`
// can fine-tune), to see what a lookup learnt here does for the task families.
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { torch, type Tensor } from "@mindseye/torch";
import { loadStudy } from "mindseye/dist/experiment/runner.js";
import { VitVisionModel } from "mindseye/dist/models/vit.js";
import { imageTokenCount, MindsEyeVLM } from "mindseye/dist/models/vlm.js";
import { buildExample } from "mindseye/dist/data/vlm_inputs.js";
import { DataLoader } from "mindseye/dist/data/loader.js";
import type { Tokenizer } from "mindseye/dist/data/tokenizer.js";
import { ImageBank, readPreprocessor, loadTokenizer, readScenes, trainConfig, copyCompanions, markDone } from "mindseye/dist/train/stages/common.js";
import { VlmBaseRecipe, buildVlm, collateVlm, collateVlmBase, cellWordIds, imageWordsOf, vlmBaseLoss, type VlmBatch } from "mindseye/dist/train/stages/vlm_base.js";
import { train } from "mindseye/dist/train/trainer.js";
import { groundingPairs, relationPairs, GROUNDING_TEMPLATES, type GroundingDescriptions } from "mindseye/dist/world/grounding.js";
import { POSITION_PHRASES } from "mindseye/dist/world/language.js";
import { Rng } from "mindseye/dist/world/rng.js";
import { GRID, type Scene } from "mindseye/dist/world/scene.js";
import { linearProbe } from "mindseye/dist/analysis/probes.js";

const args = parseArgs({
  options: {
    steps: { type: "string", default: "500" },
    inits: { type: "string", default: "0.02,0.08" },
    positions: { type: "string", default: "before_text,after_text" },
    kind: { type: "string", default: "at" },
    "image-words": { type: "string", default: "0" },
    config: { type: "string", default: "configs/demo.yaml" },
    run: { type: "string" },
    model: { type: "string" },
    save: { type: "string" },
    descriptions: { type: "string", default: "full" },
  },
}).values;
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Pair { image: string; text: string; answer: string }

/**
 * A split's grounding questions of one kind: "at" ("What is {place}?", `perScene` random cells
 * each: a lookup by place), "where" ("Where is the {np}?", every object whose description is
 * unique: a lookup by content) or "rel" ("What is {rel} the {np}?": a lookup, then a relation).
 */
function groundingQuestions(world: string, split: string, perScene: number, seed: number, kind: keyof typeof GROUNDING_TEMPLATES, descriptions: GroundingDescriptions): Pair[] {
  const out: Pair[] = [];
  for (const s of readScenes(world).filter((x) => x.split === split)) {
    const image = join(world, "images", s.file_name);
    const pairs = kind === "rel" ? relationPairs(s, new Rng(seed, "relations", s.id), descriptions) : groundingPairs(s, new Rng(seed, "grounding", s.id), perScene, descriptions);
    for (const g of pairs) if (g.kind === kind) out.push({ image, text: g.question, answer: g.answer });
  }
  return out;
}

/** Teacher-forced scores: answers all of whose tokens are the argmax, and the share of right tokens. */
function score(model: MindsEyeVLM, tok: Tokenizer, bank: ImageBank, pairs: Pair[], shuffle: boolean): { exact: number; token: number } {
  const imagesAfterText = model.config.imagePosition === "after_text";
  const perImage = imageTokenCount(model.config);
  const collate = collateVlm(bank, tok.specialTokenIds.pad ?? 0);
  let exact = 0, right = 0, total = 0;
  for (let i = 0; i < pairs.length; i += 64) {
    const chunk = pairs.slice(i, i + 64);
    // Shuffled: each question gets the image of the question 7 places on in its chunk.
    const examples = chunk.map((p, k) => ({ ...buildExample(tok, { images: 1, text: p.text, answer: p.answer, imagesAfterText }, perImage), images: [shuffle ? chunk[(k + 7) % chunk.length]!.image : p.image] }));
    torch.scope(() => {
      const b = collate(examples);
      const predicted = torch.noGrad(() => model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, pixelValues: b.pixels }).logits.argmax(-1)).tolist() as number[][];
      const labels = b.labels.tolist() as number[][];
      labels.forEach((row, r) => {
        let all = true;
        for (let t = 0; t + 1 < row.length; t++) {
          if (row[t + 1]! < 0) continue; // labels mask everything but the answer
          total++;
          if (predicted[r]![t] === row[t + 1]) right++; else all = false;
        }
        if (all) exact++;
      });
    });
  }
  return { exact: (100 * exact) / pairs.length, token: (100 * right) / total };
}

/**
 * Held-out accuracy (%) of a linear probe of each attribute of each cell from its projected image
 * token, and of the cell itself (which of the 9 the token is: whether the features say where).
 */
function cellProbes(model: MindsEyeVLM, bank: ImageBank, world: string, train: Scene[], test: Scene[]): Record<string, number> {
  const out: Record<string, number> = {};
  const tokens = (scenes: Scene[]) => torch.noGrad(() => model.imageFeatures(bank.get(scenes.map((sc) => join(world, "images", sc.file_name))))); // [n, 9, D]
  const xTrain = tokens(train), xTest = tokens(test);
  const flat = (x: Tensor) => x.reshape(-1, x.shape[2]!); // [n × 9, D]
  const perCell = (scenes: Scene[], label: (sc: Scene, cell: number) => string) => scenes.flatMap((sc) => Array.from({ length: GRID * GRID }, (_, c) => label(sc, c)));
  try {
    for (const attr of ["color", "shape", "size", "material"] as const) {
      const labels = (scenes: Scene[]) => perCell(scenes, (sc, c) => sc.objects.find((o) => o.row * GRID + o.col === c)?.[attr] ?? "empty");
      out[attr] = 100 * linearProbe(flat(xTrain), labels(train), flat(xTest), labels(test)).accuracy;
    }
    const cells = (scenes: Scene[]) => perCell(scenes, (_, c) => String(c));
    out.cell = 100 * linearProbe(flat(xTrain), cells(train), flat(xTest), cells(test)).accuracy;
  } finally {
    xTrain.dispose();
    xTest.dispose();
  }
  return out;
}

async function main(): Promise<void> {
  const study = loadStudy(resolve(root, args.config));
  const run = resolve(root, args.run ?? study.out);
  const world = join(run, "world"), encoderDir = join(run, "stages", "world-encoder", "encoder");
  if (!existsSync(join(encoderDir, "DONE"))) throw new Error(`${encoderDir}: no finished world encoder; run the study first (make demo, or mindseye experiment --config ${args.config})`);
  const steps = Number(args.steps);
  const inits = args.inits.split(",").map(Number);
  const positions = args.positions.split(",").map((p) => VlmBaseRecipe.shape.image_position.parse(p));
  const tok = loadTokenizer(world);
  const pre = readPreprocessor(encoderDir);
  if (args.kind !== "at" && args.kind !== "where" && args.kind !== "rel") throw new Error(`--kind ${args.kind}: expected at (lookups by place), where (lookups by content) or rel (a lookup by content, then a relation)`);
  const kind = args.kind;
  const imageWords = Number(args["image-words"]);
  if (!(imageWords >= 0)) throw new Error(`--image-words ${args["image-words"]}: expected a weight ≥ 0`);
  if (args.descriptions !== "full" && args.descriptions !== "minimal") throw new Error(`--descriptions ${args.descriptions}: expected full (every attribute) or minimal (the fewest that single the object out)`);
  const descriptions = args.descriptions;
  const trainPairs = groundingQuestions(world, "train", 4, 0, kind, descriptions);
  const valPairs = groundingQuestions(world, "val", 2, 7, kind, descriptions).slice(0, 600);
  const topLeft = `${GROUNDING_TEMPLATES.at.q.replace("{pos}", POSITION_PHRASES[0]![0]!)}`;
  const fixedCell = valPairs.filter((p) => p.text === topLeft);
  const scenes = readScenes(world);
  const probeTrain = scenes.filter((sc) => sc.split === "train").slice(0, 1500), probeTest = scenes.filter((sc) => sc.split === "val").slice(0, 300);
  // Every probed scene's image too: a scene may have no question of this kind (no relation with one object there).
  const bank = await ImageBank.load([...trainPairs.map((p) => p.image), ...valPairs.map((p) => p.image), ...[...probeTrain, ...probeTest].map((sc) => join(world, "images", sc.file_name))], pre);
  console.log(`"${kind}" questions: ${trainPairs.length} for training, ${valPairs.length} val (${fixedCell.length} about the top left cell); ${steps} steps of ${study.vlm_base.train.batch_size}`);
  let save = args.save === undefined ? null : resolve(args.save); // the first trained VLM is kept there
  /** A fresh VLM at `init` with its images at `position`, trained `steps` steps on `pairs`; the callback scores it before it is freed. */
  const trained = async <T>(init: number, position: string, pairs: Pair[], then: (model: MindsEyeVLM) => T): Promise<T> => {
    const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-grounding-"));
    const recipe = VlmBaseRecipe.parse({ ...study.vlm_base, stage: "vlm-base", world, encoder: encoderDir, out: dir, image_position: position, lm: { ...study.vlm_base.lm, initializer_range: init } });
    const encoder = VitVisionModel.fromPretrained(encoderDir);
    torch.manualSeed(study.seed);
    const model = buildVlm(encoder, tok.vocabSize, tok.specialTokenIds.imagePad!, recipe, study.seed);
    encoder.parameters().forEach((p) => p.dispose());
    try {
      model.vision_tower.requiresGrad_(false);
      model.vision_tower.eval();
      const perImage = imageTokenCount(model.config);
      const imagesAfterText = model.config.imagePosition === "after_text";
      const examples = pairs.map((p) => ({ ...buildExample(tok, { images: 1, text: p.text, answer: p.answer, imagesAfterText }, perImage), images: [p.image] }));
      const words = imageWords > 0 ? imageWordsOf(world, cellWordIds(tok, model)) : null;
      const loader = new DataLoader({ length: examples.length, get: (i: number) => examples[i]! }, {
        batchSize: recipe.train.batch_size, seed: study.seed, collate: collateVlmBase(bank, tok.specialTokenIds.pad ?? 0, words),
      });
      // Leaving the plateau comes with lone gradient spikes (×100 the median at 0.02): the trainer
      // applies them, clipped, and stops only on a run of them.
      await train({ model, loader: loader as DataLoader<unknown, VlmBatch & { words?: Tensor }>, step: (b) => vlmBaseLoss(model, b, imageWords) },
        trainConfig(dir, { ...recipe.train, steps }, study.seed), { quiet: true });
      model.eval();
      if (save !== null) {
        model.savePretrained(save);
        copyCompanions(save, [world, encoderDir]);
        markDone(save, { stage: "bench:grounding", kind, descriptions, steps, imageWords });
        save = null; // the first setting's only
      }
      return then(model);
    } finally {
      model.parameters().forEach((p) => p.dispose());
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const rows: string[] = [];
  if (args.model) {
    // Score a trained VLM (a base, or a checkpoint of one) on the val questions, without training.
    const m = MindsEyeVLM.fromPretrained(args.model);
    m.eval();
    const [real, blind] = [score(m, tok, bank, valPairs, false), score(m, tok, bank, valPairs, true)];
    console.log(`"${kind}", ${args.model}: exact ${real.exact.toFixed(1)}% (shuffled images ${blind.exact.toFixed(1)}%), token ${real.token.toFixed(1)}% (${blind.token.toFixed(1)}%)`);
    m.parameters().forEach((p) => p.dispose());
    bank.dispose();
    return;
  }
  for (const position of positions) {
    for (const init of inits) {
      const [real, blind, probes] = await trained(init, position, trainPairs, (m) => [score(m, tok, bank, valPairs, false), score(m, tok, bank, valPairs, true), cellProbes(m, bank, world, probeTrain, probeTest)] as const);
      // The control (one fixed cell, nothing to look up) exists for lookups by place only.
      const fixed = kind === "at" ? await trained(init, position, trainPairs.filter((p) => p.text === topLeft), (m) => score(m, tok, bank, fixedCell, false)) : null;
      rows.push(`"${kind}"${descriptions === "minimal" ? " (minimal descriptions)" : ""}, image ${position}, initializer_range ${init}${imageWords > 0 ? `, image words ${imageWords}` : ""}: every question: exact ${real.exact.toFixed(1)}% (shuffled images ${blind.exact.toFixed(1)}%), token ${real.token.toFixed(1)}% (${blind.token.toFixed(1)}%); ` +
        (fixed ? `top-left cell only: exact ${fixed.exact.toFixed(1)}%, token ${fixed.token.toFixed(1)}%; ` : "") +
        `image-token probes ${Object.entries(probes).map(([k, v]) => `${k} ${v.toFixed(1)}%`).join(", ")}`);
      console.log(rows[rows.length - 1]);
    }
  }
  bank.dispose();
  console.log(rows.join(" | "));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
