// The evaluation runner: a VLM of any family (models/family.ts: mindseye_vlm, qwen2_5_vl, llava,
// internvl_chat) answers a task's questions by greedy generation, and the
// public harness's rules (harness.ts) score the answers.
//
//   items ─► decode images (skips counted) ─► the model's preprocessing ─► harness prompt
//         ─► buildPrompt (the chat template training uses, each image's pads expanded to the
//            tokens the family's processor gives it) ─► left-padded
//         batches ─► greedy generation until <|im_end|> (LLaVA: </s>) ─► decodeAnswer ─► harness score
//
// Output, in `out`:
//   predictions.jsonl   one line per question: {id, type, prompt, prediction, answer, choices?, correct}
//                       (answer as harness.score takes it: GQA's string, ScienceQA's 0-based index,
//                       BLINK's "(A)"; prompt is the harness's text, without the chat template)
//   results.json        task, harness, split, n, accuracy overall, per type and (world_sqa) per form with bootstrap 95%
//                       intervals, skipped records/images/items (counts and the list, each image
//                       once however many questions use it), answers cut at the token limit,
//                       model path and fingerprint, generation settings, time
//
// Bad input: malformed records and undecodable images are skipped and counted; past maxErrorRate
// (over all records read, and over the distinct images) the run stops. A non-finite logit during
// generation stops the run too: broken weights must not score as a quiet 0%.
//
// New tokens: the harness's max_new_tokens (16 for GQA and ScienceQA, 1024 for BLINK), capped at
// MAX_NEW_TOKENS_CAP = 32 unless `maxNewTokens` says otherwise. A small model that never says
// <|im_end|> would otherwise generate 1024 tokens per BLINK question. The cap changes no score
// under lmms-eval: GQA and ScienceQA stay at 16, and lmms-eval reads only BLINK's leading letter.
// Under VLMEvalKit a BLINK answer longer than 32 tokens could score differently (its option
// search looks at the last tokens); pass maxNewTokens: 1024 for the harness's exact setting.
// results.json counts the answers that hit the limit ("truncated").
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { torch } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { resolveModelRef } from "../config/hub.js";
import { loadVlm, MindsEyeVlm, type Vlm, type VlmProcessor } from "../models/family.js";
import { padLeft, type GenerationStep, type GenerativeLM, type GenerationCache } from "../models/generation.js";
import type { RgbImage } from "../models/processors.js";
import { DistinctImages } from "../data/images.js";
import { Tokenizer } from "../data/tokenizer.js";
import { buildPrompt, decodeAnswer, endTokenId, endTokenName, imageTokenId } from "../data/vlm_inputs.js";
import { SkipCounter, type SkippedRecord } from "../data/formats/index.js";
import { makeOutputDir } from "../util/output_dir.js";
import { Progress } from "../util/progress.js";
import { mulberry32, shuffleInPlace } from "../util/random.js";
import { GENERATION, type Harness, type TaskKind } from "./harness.js";
import { accuracyReport, type Interval } from "./stats.js";
import { getTask, promptFor, resolveSplit, scoreItem, type EvalItem } from "./tasks.js";

export const HARNESSES: readonly Harness[] = ["lmms-eval", "vlmevalkit"];
/** Default ceiling on new tokens per answer (see the header). */
export const MAX_NEW_TOKENS_CAP = 32;

export interface EvaluateOptions {
  /** A MindsEye VLM directory (see resolveModelDir), or a run folder holding one in model/. */
  modelDir: string;
  /** A task name (eval/tasks.ts: world_gqa, world_sqa, world_jigsaw, gqa, scienceqa_img, blink_jigsaw). */
  task: string;
  /** Whose prompts and scoring: "lmms-eval" (default) or "vlmevalkit" (exact matching, no LLM judge). */
  harness?: Harness;
  /** Default: the task's (test for world tasks, testdev for gqa, test for scienceqa_img, val for blink_jigsaw). */
  split?: string;
  /** Only the first `limit` questions, in the dataset's order. */
  limit?: number;
  /** Questions per generation batch (default 16). */
  batchSize?: number;
  /** The world directory, or the dataset root the task names. */
  dataDir: string;
  /** Where predictions.jsonl and results.json go (created). */
  out: string;
  /** New tokens per answer (default: the harness's, capped at MAX_NEW_TOKENS_CAP). */
  maxNewTokens?: number;
  /** No progress output. */
  quiet?: boolean;
  /**
   * The run stops when more than this fraction of the records read are malformed, or of the
   * distinct images are undecodable (default 0.01).
   */
  maxErrorRate?: number;
  /**
   * The blind control: with a seed, every question is shown the images of another question
   * (a seeded derangement among questions with as many images), so the image carries no
   * information about the answer and accuracy falls to what the text alone allows.
   */
  shuffleImages?: number;
  /** Only these question ids (e.g. the questions a model was fine-tuned on). */
  onlyIds?: readonly string[];
}

/** A record or image the run left out, and why. */
export interface SkippedEntry {
  kind: "record" | "image";
  file: string;
  record: string;
  reason: string;
}

export interface EvalResults {
  task: string;
  kind: TaskKind;
  harness: Harness;
  split: string;
  /** Questions scored. */
  n: number;
  accuracy: Interval;
  /** Per question type (GQA types.detailed, ScienceQA category, BLINK sub_task). */
  byType: Record<string, Interval>;
  /** Per form, for tasks whose items have one (world_sqa: count, verify, which-2 / 3 / 4). */
  byForm?: Record<string, Interval>;
  skipped: {
    /** Malformed records of the task's files. */
    records: number;
    /** Images that could not be decoded. */
    images: number;
    /** Questions left out because an image of theirs could not be decoded. */
    items: number;
    /** Every skipped record and image (each image once), in the order met. */
    list: SkippedEntry[];
  };
  /** Answers that reached maxNewTokens without <|im_end|>. */
  truncated: number;
  model: { path: string; fingerprint: string };
  data: string;
  generation: { greedy: true; maxNewTokens: number; harnessMaxNewTokens: number; stopToken: string; batchSize: number };
  limit: number | null;
  /** The blind control's seed when every question was shown another question's images, else null. */
  shuffledImages: number | null;
  /** Wall time of the whole call (reading, loading, fingerprint, generation). */
  seconds: number;
  /** Questions per second of the decode–generate–score loop. */
  itemsPerSecond: number;
  /** ISO time the run ended. */
  finished: string;
}

/** One line of predictions.jsonl. */
export interface PredictionLine {
  id: string;
  type: string;
  prompt: string;
  prediction: string;
  answer: string | number;
  choices?: string[];
  correct: boolean;
}

// ---- the model -------------------------------------------------------------------------------

const MODEL_FILES = "config.json (model_type mindseye_vlm, qwen2_5_vl, llava or internvl_chat), model.safetensors, preprocessor_config.json, tokenizer.json, tokenizer_config.json";

/**
 * The model directory itself when it holds config.json, else its model/ (a run folder), else —
 * for a training checkpoint (a run's checkpoints/step-N) — a view of it as a model directory.
 */
export function resolveModelDir(ref: string): string {
  const path = resolveModelRef(ref); // a directory, or a Hugging Face id in the hub cache
  if (existsSync(join(path, "config.json"))) return path;
  const view = checkpointView(path);
  if (view !== null) return view;
  if (existsSync(join(path, "model", "config.json"))) return join(path, "model");
  throw new ConfigError(`${path}: neither it nor ${join(path, "model")} holds a config.json; --model takes a MindsEye VLM directory (${MODEL_FILES}) or a run folder with one in model/`);
}

const checkpointViews = new Map<string, string>();

/**
 * A training checkpoint (checkpoints/step-N: model.safetensors + trainer.json) read as a model: a
 * temporary directory holding links to the run's saved model/ files (config.json, tokenizer,
 * preprocessing) and to the checkpoint's weights, so intermediate points of a run are evaluated
 * with the run's own configuration (learning curves). Null when `path` is not a checkpoint. The
 * weights must carry the saved model's names (mindseye_vlm runs do; a LoRA run's checkpoint holds
 * the wrapped names and is refused by the loader). Removed when the process exits.
 */
function checkpointView(path: string): string | null {
  if (!existsSync(join(path, "trainer.json")) || !existsSync(join(path, "model.safetensors"))) return null;
  const key = resolve(path);
  const known = checkpointViews.get(key);
  if (known !== undefined) return known;
  const modelDir = resolve(path, "..", "..", "model");
  if (!existsSync(join(modelDir, "config.json"))) {
    throw new ConfigError(`${path} is a training checkpoint, but its run has no saved model (${modelDir}/config.json) whose configuration, tokenizer and preprocessing would read it; evaluate it once the run has finished, or copy those files next to the checkpoint's model.safetensors`);
  }
  const view = mkdtempSync(join(tmpdir(), "mindseye-checkpoint-"));
  process.once("exit", () => rmSync(view, { recursive: true, force: true }));
  for (const f of readdirSync(modelDir)) {
    if (f.endsWith(".safetensors") || f === "model.safetensors.index.json" || f === "DONE") continue; // the final weights and marker stay out
    symlinkSync(join(modelDir, f), join(view, f));
  }
  symlinkSync(join(key, "model.safetensors"), join(view, "model.safetensors"));
  checkpointViews.set(key, view);
  return view;
}

export interface EvalModel {
  /** What was asked for: the model directory, or the training checkpoint (then `dir` is its view). */
  source: string;
  dir: string;
  /** The model through its family's interface. */
  model: Vlm;
  tokenizer: Tokenizer;
  processor: VlmProcessor;
}

/** Loads a VLM directory for evaluation (eval mode) and checks that its parts agree. */
export function loadEvalModel(path: string): EvalModel {
  const asked = resolve(resolveModelRef(path));
  const dir = resolveModelDir(path);
  const ppPath = join(dir, "preprocessor_config.json");
  if (!existsSync(ppPath)) throw new ConfigError(`${dir}: no preprocessor_config.json; a model directory needs ${MODEL_FILES}`);
  const tokenizer = Tokenizer.fromPretrained(dir);
  const model = loadVlm(dir);
  model.module.eval();
  const problems: string[] = [];
  const key = model.modelType === "qwen2_5_vl" ? "image_token_id" : "image_token_index";
  const format = model.promptFormat;
  if (endTokenId(tokenizer, format) === null) problems.push(`the tokenizer has no ${endTokenName(format)} (the stop token)`);
  const imageId = imageTokenId(tokenizer, format);
  if (imageId !== model.imageTokenId) problems.push(`the tokenizer's ${format.imageToken} is ${imageId} but config.json's ${key} is ${model.imageTokenId}`);
  if (tokenizer.vocabSize > model.vocabSize) problems.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary ${model.vocabSize}`);
  if (problems.length > 0) {
    model.dispose();
    throw new ConfigError(`${dir}: the tokenizer does not belong to this model: ${problems.join("; ")}`);
  }
  return { source: checkpointViews.get(asked) === dir ? asked : dir, dir, model, tokenizer, processor: model.processor };
}

/** sha256 over the files that decide predictions: config, weights, tokenizer, preprocessing. */
export async function modelFingerprint(dir: string): Promise<string> {
  const names = readdirSync(dir).filter((f) => f.endsWith(".safetensors") || f === "model.safetensors.index.json").sort();
  const h = createHash("sha256");
  for (const f of ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", ...names]) {
    if (!existsSync(join(dir, f))) throw new ConfigError(`${dir}: no ${f}; a model directory needs ${MODEL_FILES}`);
    h.update(`${f}\n`);
    for await (const chunk of createReadStream(join(dir, f))) h.update(chunk as Buffer);
  }
  return h.digest("hex");
}

// ---- the run ---------------------------------------------------------------------------------

/** The items with every one given another item's images (a seeded derangement within each image count). */
export function shuffleImagesAcross(items: readonly EvalItem[], seed: number): EvalItem[] {
  const rand = mulberry32(seed);
  const out = [...items];
  for (const count of new Set(items.map((it) => it.images.length))) {
    const at = items.flatMap((it, i) => (it.images.length === count ? [i] : []));
    if (at.length < 2) continue;
    // A cyclic shift (by 1..n-1) of a shuffled order moves every item's images to another item.
    const order = shuffleInPlace([...at], rand);
    const shift = 1 + Math.floor(rand() * (order.length - 1));
    order.forEach((from, j) => {
      const to = order[(j + shift) % order.length]!;
      out[to] = { ...items[to]!, images: items[from]!.images };
    });
  }
  return out;
}

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new ConfigError(`${name} must be a positive integer, got ${v}`);
}

/** Where a user sets the error rate a run stops at. */
const RATE_SETTING = "--max-error-rate (EvaluateOptions.maxErrorRate)";

/**
 * The language model as generation sees it, with every step's logits checked: a NaN or an
 * infinity would otherwise become an arbitrary argmax and a quiet 0% accuracy.
 */
function checkedLogits<C extends GenerationCache>(lm: GenerativeLM<C>, dir: string, ids: () => string[]): GenerativeLM<C> {
  let step = 0;
  return {
    forward(input: GenerationStep<C>) {
      const out = lm.forward(input);
      const bad = torch.scope(() => out.logits.isfinite().logicalNot().flatten(1).any(-1)); // [B]
      const rows = Array.from(bad.toFloat64Values());
      bad.dispose();
      if (rows.some((x) => x !== 0)) {
        const which = ids().filter((_, b) => rows[b] !== 0);
        throw new Error(
          `the model in ${dir} produced non-finite logits (NaN or infinity) at generation step ${step} for question${which.length > 1 ? "s" : ""} ${which.join(", ")}; ` +
            "its weights or activations overflow or are broken (a checkpoint with huge values, or a diverged training run), so no answer can be scored",
        );
      }
      step++;
      return out;
    },
  };
}

/**
 * Evaluates a model on a task and writes predictions.jsonl and results.json to `out`.
 * ```ts
 * const r = await evaluate({ modelDir: "runs/latent/finetune", task: "world_gqa", dataDir: "world", out: "runs/latent/eval/world_gqa" });
 * console.log(r.accuracy.mean, r.byType);
 * ```
 */
export async function evaluate(o: EvaluateOptions): Promise<EvalResults> {
  const t0 = performance.now();
  const task = getTask(o.task);
  const split = resolveSplit(task, o.split);
  const harness = o.harness ?? "lmms-eval";
  if (!HARNESSES.includes(harness)) throw new ConfigError(`harness must be ${HARNESSES.join(" or ")}, got ${JSON.stringify(harness)}`);
  const batchSize = o.batchSize ?? 16;
  positiveInt("batchSize", batchSize);
  positiveInt("limit", o.limit);
  positiveInt("maxNewTokens", o.maxNewTokens);
  const harnessMaxNewTokens = GENERATION[task.kind].maxNewTokens;
  const maxNewTokens = o.maxNewTokens ?? Math.min(harnessMaxNewTokens, MAX_NEW_TOKENS_CAP);

  const maxErrorRate = o.maxErrorRate ?? 0.01;
  if (!(maxErrorRate >= 0 && maxErrorRate <= 1)) throw new ConfigError(`maxErrorRate must be a fraction in [0, 1], got ${maxErrorRate}`);
  const policy = { maxErrorRate, setting: RATE_SETTING };

  // 1. The questions (all of them, or the first `limit`), the error rate judged over every record read.
  const records = new SkipCounter(`${task.name} ${split}`, policy);
  const items: EvalItem[] = [];
  const only = o.onlyIds ? new Set(o.onlyIds) : null;
  for await (const item of task.items(o.dataDir, split, records)) {
    if (only && !only.has(item.id)) continue;
    items.push(item);
    if (o.limit !== undefined && items.length >= o.limit) break;
  }
  if (o.shuffleImages !== undefined) items.splice(0, items.length, ...shuffleImagesAcross(items, o.shuffleImages));
  if (items.length === 0) throw new Error(`${task.name} ${split} in ${o.dataDir} has no questions to evaluate${records.skipped > 0 ? `\n${records.summary()}` : ""}`);
  records.finish();

  // 2. The model.
  const fingerprint = await modelFingerprint(resolveModelDir(o.modelDir));
  const { source, dir, model, tokenizer, processor } = loadEvalModel(o.modelDir);
  const format = model.promptFormat;
  const stopId = endTokenId(tokenizer, format)!; // <|im_end|>, or LLaVA's </s>
  const padId = tokenizer.specialTokenIds.pad ?? stopId; // any id will do: the attention mask hides padding

  makeOutputDir(o.out, "the evaluation's output folder (--out)");
  const predictionsPath = join(o.out, "predictions.jsonl");
  writeFileSync(predictionsPath, "");
  // Each distinct image counts once, however many questions use it; their number is known up front.
  const images = new DistinctImages(new SkipCounter(`${task.name} ${split} images`, policy));
  images.errors.expectTotal(DistinctImages.count(items.flatMap((it) => it.images)));
  const scored: { correct: boolean; type: string; form?: string }[] = [];
  let skippedItems = 0, truncated = 0, done = 0;
  const progress = new Progress(items.length, 0, o.quiet ?? false, `eval ${task.name}`, "items");
  const tLoop = performance.now();
  try {
    for (let start = 0; start < items.length; start += batchSize) {
      const batch = items.slice(start, start + batchSize);
      // 3. Images, decoded; a question with an undecodable image is left out.
      const decoded = await images.decodeBatch(batch.flatMap((it) => it.images.map((image) => ({ image, source: it.source }))));
      const ready: { item: EvalItem; images: RgbImage[] }[] = [];
      let at = 0;
      for (const item of batch) {
        const mine = decoded.slice(at, at + item.images.length);
        at += item.images.length;
        if (mine.every((x): x is RgbImage => x !== null)) ready.push({ item, images: mine });
        else skippedItems++;
      }
      if (ready.length > 0) {
        // 4. Prompts and greedy generation; only plain values leave the scope.
        const prompts = ready.map((r) => promptFor(r.item, harness));
        const generated = torch.noGrad(() => torch.scope(() => {
          const imagesAfterText = model.imagesAfterText;
          const pixels = processor.process(ready.flatMap((r) => r.images)); // batch order
          let at = 0;
          const ids = ready.map((r, i) => {
            const counts = pixels.tokensPerImage.slice(at, at += r.images.length);
            return buildPrompt(tokenizer, { images: r.images.length, text: prompts[i]!, imagesAfterText }, counts, format);
          });
          const { inputIds, attentionMask } = padLeft(ids, padId);
          if (model instanceof MindsEyeVlm) {
            const size = model.model.config.vision.imageSize, px = pixels.pixelValues;
            if (px.shape[2] !== size || px.shape[3] !== size) {
              throw new ConfigError(`${dir}/preprocessor_config.json makes ${px.shape[3]}×${px.shape[2]} images but the vision tower takes ${size}×${size}`);
            }
          }
          return model.generate({
            inputIds, attentionMask, pixels, maxNewTokens, stopTokenIds: [stopId],
            wrap: (lm) => checkedLogits(lm, dir, () => ready.map((r) => r.item.id)),
          });
        }));
        // 5. Answers, scored; one line each.
        const lines = ready.map((r, i): PredictionLine => {
          const prediction = decodeAnswer(tokenizer, generated.tokens[i]!, format);
          if (generated.finishReasons[i] === "length") truncated++;
          const correct = scoreItem(r.item, harness, prediction);
          scored.push({ correct, type: r.item.type, ...(r.item.form === undefined ? {} : { form: r.item.form }) });
          return {
            id: r.item.id, type: r.item.type, prompt: prompts[i]!, prediction, answer: r.item.answer,
            ...(r.item.kind === "gqa" ? {} : { choices: [...r.item.choices] }), correct,
          };
        });
        appendFileSync(predictionsPath, lines.map((l) => JSON.stringify(l) + "\n").join(""));
      }
      done += batch.length;
      const right = scored.filter((s) => s.correct).length;
      progress.update(done, scored.length > 0 ? `acc ${(right / scored.length).toFixed(3)}` : "");
    }
  } finally {
    progress.stop(done);
    model.dispose();
  }
  if (scored.length === 0) throw new Error(`${task.name} ${split}: no question could be evaluated (every one had an undecodable image)\n${images.errors.summary()}`);
  images.errors.finish();

  // 6. Accuracy with intervals, written atomically.
  const report = accuracyReport(scored);
  const forms = scored.filter((s) => s.form !== undefined).map((s) => ({ correct: s.correct, type: s.form! }));
  const now = performance.now(), seconds = (now - t0) / 1000;
  const results: EvalResults = {
    task: task.name, kind: task.kind, harness, split, n: scored.length, accuracy: report.overall, byType: report.byType,
    ...(forms.length > 0 ? { byForm: accuracyReport(forms).byType } : {}),
    skipped: {
      records: records.skipped, images: images.errors.skipped, items: skippedItems,
      list: [...entries("record", records.report().records), ...entries("image", images.errors.report().records)],
    },
    truncated,
    model: { path: resolve(source), fingerprint }, data: resolve(o.dataDir),
    generation: { greedy: true, maxNewTokens, harnessMaxNewTokens, stopToken: "<|im_end|>", batchSize },
    limit: o.limit ?? null, shuffledImages: o.shuffleImages ?? null, seconds, itemsPerSecond: items.length / ((now - tLoop) / 1000), finished: new Date().toISOString(),
  };
  const tmp = join(o.out, `results.json.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(results, null, 2) + "\n");
  renameSync(tmp, join(o.out, "results.json"));
  return results;
}

function entries(kind: SkippedEntry["kind"], skipped: readonly SkippedRecord[]): SkippedEntry[] {
  return skipped.map((r) => ({ kind, file: r.source.file, record: r.source.record, reason: r.reason }));
}
