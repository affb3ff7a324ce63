// Evaluation tasks: where a benchmark's questions live on disk, and how each becomes an item the
// harness rules (harness.ts) prompt and score. One explicit registry, by name:
//
//   task           kind       --data                                  splits (default first)
//   world_gqa      gqa        a world directory (mindseye world …)    test, test_novel, val
//   world_sqa      scienceqa  a world directory                       test, test_novel, val
//   world_jigsaw   blink      a world directory                       test, test_novel, val
//   gqa            gqa        the GQA root: questions1.2/, images/    testdev, or any {split}_balanced_questions.json
//   scienceqa_img  scienceqa  ScienceQA's data/scienceqa folder:      test, or any key of pid_splits.json
//                             problems.json, pid_splits.json, images/
//   blink_jigsaw   blink      the BLINK snapshot root: Jigsaw/*.parquet  val (test hides its answers)
//
// world_retrieval is not a generation task and not in this registry: imagined latents of the
// world's captions rank its images (analysis/retrieval.ts evaluateRetrieval, which `mindseye eval
// --task world_retrieval` runs). RETRIEVAL_TASK names it so that lookups can point there.
//
// Items carry the question type the results break accuracy down by: GQA's types.detailed (the
// world's stats.json uses the same), ScienceQA's category, BLINK's sub_task; the world's ScienceQA
// problems also carry their form (count, verify, which-N), a second breakdown.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/errors.js";
import { DataFormatError, didYouMean, readTasks, type ImageRef, type RecordSource, type SkipCounter, type TaskItem } from "../data/formats/index.js";
import { scienceForm } from "../world/science.js";
import { blinkPrompt, gqaPrompt, scienceqaPrompt, score, type Harness, type TaskKind } from "./harness.js";

interface ItemBase {
  /** The dataset's own id: GQA questionId, ScienceQA pid, BLINK idx. */
  readonly id: string;
  /** In the order the model sees them. */
  readonly images: readonly ImageRef[];
  /** What accuracy is broken down by (GQA types.detailed, ScienceQA category, BLINK sub_task). */
  readonly type: string;
  /** A second breakdown, where the task has one: the world's ScienceQA problems' form (world/science.ts scienceForm). */
  readonly form?: string;
  readonly source: RecordSource;
}

/** One question, with its gold answer in the form harness.score takes it. */
export type EvalItem =
  | (ItemBase & { readonly kind: "gqa"; readonly question: string; /** GQA's answer string. */ readonly answer: string })
  | (ItemBase & {
    readonly kind: "scienceqa"; readonly question: string; readonly choices: readonly string[]; /** "" when none. */ readonly hint: string;
    /** 0-based index of the right choice. */ readonly answer: number;
  })
  | (ItemBase & {
    readonly kind: "blink"; readonly question: string; /** The item's full published prompt. */ readonly prompt: string; readonly choices: readonly string[];
    /** "(A)", "(B)", … as BLINK publishes it. */ readonly answer: string;
  });

/** The harness's text prompt for an item (images are not in it; buildPrompt puts them first). */
export function promptFor(item: EvalItem, harness: Harness): string {
  switch (item.kind) {
    case "gqa": return gqaPrompt({ question: item.question });
    case "scienceqa": return scienceqaPrompt({ question: item.question, choices: [...item.choices], hint: item.hint }, harness);
    case "blink": return blinkPrompt({ prompt: item.prompt, question: item.question, choices: [...item.choices] }, harness);
  }
}

/** Whether a prediction is right under the harness's rules. */
export function scoreItem(item: EvalItem, harness: Harness, prediction: string): boolean {
  return score(item.kind, harness, prediction, item.kind === "gqa" ? { answer: item.answer } : { answer: item.answer, choices: [...item.choices] });
}

/**
 * The answer a model is taught to give (fine-tuning targets): GQA's answer, the letter of the
 * right choice for ScienceQA and BLINK ("B"), which every harness here reads as that choice.
 */
export function answerText(item: EvalItem): string {
  switch (item.kind) {
    case "gqa": return item.answer;
    case "scienceqa": return String.fromCharCode(65 + item.answer);
    case "blink": return item.answer.replace(/^\(|\)$/g, "");
  }
}

export interface EvalTask {
  readonly name: string;
  readonly kind: TaskKind;
  readonly summary: string;
  /** What --data points at. */
  readonly data: string;
  /** The splits it accepts (null: whatever the files hold); the first is the default. */
  readonly splits: readonly string[] | null;
  readonly defaultSplit: string;
  /**
   * The split's items, in the dataset's order. Malformed records are counted in `errors`;
   * a split without gold answers is a DataFormatError.
   */
  items(dataDir: string, split: string, errors: SkipCounter): AsyncGenerator<EvalItem>;
}

// ---- conversions from the format readers' items ---------------------------------------------

function noAnswer(item: TaskItem): never {
  throw new DataFormatError(`${item.source.file} ${item.source.record}: no gold answer (this split hides its answers, so it cannot be scored here; evaluate a split with answers, e.g. GQA testdev or BLINK val)`);
}

function fromGqa(item: TaskItem): EvalItem {
  if (item.dataset !== "gqa") throw new Error(`expected a GQA item, got ${item.dataset}`);
  if (item.answer === null) noAnswer(item);
  return { kind: "gqa", id: item.id, images: item.images, type: item.types.detailed ?? "(none)", source: item.source, question: item.question, answer: item.answer };
}

/** A ScienceQA item; `form`, where the task tells one (the world's problems). */
function fromScienceQa(item: TaskItem, form: string | null = null): EvalItem {
  if (item.dataset !== "scienceqa") throw new Error(`expected a ScienceQA item, got ${item.dataset}`);
  return {
    kind: "scienceqa", id: item.id, images: item.images, type: item.category, ...(form === null ? {} : { form }), source: item.source,
    question: item.question, choices: item.choices, hint: item.hint, answer: item.answerIndex,
  };
}

function fromBlink(item: TaskItem): EvalItem {
  if (item.dataset !== "blink") throw new Error(`expected a BLINK item, got ${item.dataset}`);
  if (item.answer === null) noAnswer(item);
  return {
    kind: "blink", id: item.id, images: item.images, type: item.subTask, source: item.source,
    question: item.question, prompt: item.prompt, choices: item.choices, answer: `(${item.answer})`,
  };
}

function requirePath(path: string, task: string, data: string): string {
  if (!existsSync(path)) throw new DataFormatError(`${task}: ${path} not found (--data should be ${data})`);
  return path;
}

// ---- the tasks -------------------------------------------------------------------------------

const WORLD_SPLITS = ["test", "test_novel", "val", "train"] as const; // train: to check what a model fitted
const WORLD_DATA = "a synthetic world directory (mindseye world generate --out DIR)";
const GQA_DATA = "the GQA root holding questions1.2/ and images/";
const SQA_DATA = "ScienceQA's data/scienceqa folder: problems.json, pid_splits.json, images/{split}/{pid}/image.png";
const BLINK_DATA = "the BLINK snapshot root holding Jigsaw/{split}-*.parquet";

const TASK_LIST: readonly EvalTask[] = [
  {
    name: "world_gqa", kind: "gqa", summary: "the world's compositional questions (GQA format)", data: WORLD_DATA,
    splits: WORLD_SPLITS, defaultSplit: "test",
    async *items(dir, split, errors) {
      const questions = requirePath(join(dir, "gqa", `${split}_balanced_questions.json`), "world_gqa", WORLD_DATA);
      for await (const item of readTasks({ format: "gqa", questions, images: join(dir, "images"), imageExtension: "png" }, { errors })) {
        if (item.dataset !== "gqa") continue;
        yield fromGqa(item);
      }
    },
  },
  {
    name: "world_sqa", kind: "scienceqa", summary: "the world's science questions, knowledge taught in text (ScienceQA format)", data: WORLD_DATA,
    splits: WORLD_SPLITS, defaultSplit: "test",
    async *items(dir, split, errors) {
      const root = join(dir, "scienceqa");
      const spec = { format: "scienceqa", problems: requirePath(join(root, "problems.json"), "world_sqa", WORLD_DATA), pidSplits: join(root, "pid_splits.json"), images: join(root, "images"), split };
      // The world's problems are also broken down by form (count, verify, which-N): what decides
      // how much of the picture a problem needs.
      for await (const item of readTasks(spec, { errors })) {
        yield fromScienceQa(item, item.dataset === "scienceqa" ? scienceForm(item.question, item.choices) : null);
      }
    },
  },
  {
    name: "world_jigsaw", kind: "blink", summary: "the world's jigsaw completion (BLINK-Jigsaw records as JSON lines)", data: WORLD_DATA,
    splits: WORLD_SPLITS, defaultSplit: "test",
    async *items(dir, split, errors) {
      const file = requirePath(join(dir, "blink", "Jigsaw", `${split}.jsonl`), "world_jigsaw", WORLD_DATA);
      for await (const item of readTasks({ format: "blink_jsonl", file }, { errors })) yield fromBlink(item);
    },
  },
  {
    name: "gqa", kind: "gqa", summary: "GQA balanced questions; only isBalanced ones are scored (GQA eval.py)",
    data: GQA_DATA, splits: null, defaultSplit: "testdev",
    async *items(dir, split, errors) {
      const questions = requirePath(join(dir, "questions1.2", `${split}_balanced_questions.json`), "gqa", GQA_DATA);
      for await (const item of readTasks({ format: "gqa", questions, images: join(dir, "images") }, { errors })) {
        if (item.dataset !== "gqa") continue;
        if (!item.isBalanced) {
          errors.omit("not balanced");
          continue;
        }
        yield fromGqa(item);
      }
    },
  },
  {
    name: "scienceqa_img", kind: "scienceqa", summary: "ScienceQA, problems with an image (the IMG subset)",
    data: SQA_DATA, splits: null, defaultSplit: "test",
    async *items(dir, split, errors) {
      const spec = { format: "scienceqa", problems: requirePath(join(dir, "problems.json"), "scienceqa_img", SQA_DATA), pidSplits: join(dir, "pid_splits.json"), images: join(dir, "images"), split };
      for await (const item of readTasks(spec, { errors })) yield fromScienceQa(item);
    },
  },
  {
    name: "blink_jigsaw", kind: "blink", summary: "BLINK Jigsaw (HF BLINK-Benchmark/BLINK parquet)",
    data: BLINK_DATA, splits: null, defaultSplit: "val",
    async *items(dir, split, errors) {
      const folder = requirePath(join(dir, "Jigsaw"), "blink_jigsaw", BLINK_DATA);
      const files = readdirSync(folder).filter((f) => f.startsWith(`${split}-`) && f.endsWith(".parquet")).sort();
      if (files.length === 0) throw new DataFormatError(`blink_jigsaw: no ${split}-*.parquet in ${folder} (--data should be ${BLINK_DATA})`);
      for (const f of files) for await (const item of readTasks({ format: "blink", files: join(folder, f) }, { errors })) yield fromBlink(item);
    },
  },
];

/** Builds a name → task map; two tasks with one name are an error. */
export function createTaskRegistry(list: readonly EvalTask[]): ReadonlyMap<string, EvalTask> {
  const map = new Map<string, EvalTask>();
  for (const t of list) {
    if (map.has(t.name)) throw new Error(`evaluation task "${t.name}" is registered twice`);
    map.set(t.name, t);
  }
  return map;
}

/** Every evaluation task, by name. */
export const TASKS: ReadonlyMap<string, EvalTask> = createTaskRegistry(TASK_LIST);

/** The retrieval task (not a generation task: analysis/retrieval.ts runs it). */
export const RETRIEVAL_TASK = {
  name: "world_retrieval", summary: "imagined latents of the world's captions rank its images (recall@k)", data: WORLD_DATA,
  splits: WORLD_SPLITS as readonly string[], defaultSplit: "test",
} as const;

/**
 * The task called `name`; an unknown name is a ConfigError that suggests the closest one.
 * ```ts
 * const task = getTask("world_gqa");
 * for await (const item of task.items("world", "test", new SkipCounter("world_gqa"))) promptFor(item, "lmms-eval");
 * ```
 */
export function getTask(name: string): EvalTask {
  const t = TASKS.get(name);
  if (name === RETRIEVAL_TASK.name) throw new ConfigError(`${name} is not a generation task: run it with \`mindseye eval --task ${name}\` or evaluateRetrieval (analysis/retrieval.ts)`);
  if (t === undefined) {
    const known = [...TASKS.keys(), RETRIEVAL_TASK.name];
    throw new ConfigError(`unknown evaluation task "${name}"${didYouMean(name, known)}; known tasks: ${known.join(", ")}`);
  }
  return t;
}

/** The split to evaluate: the given one if the task accepts it, else the task's default. */
export function resolveSplit(task: EvalTask, split: string | undefined): string {
  const s = split ?? task.defaultSplit;
  if (task.splits !== null && !task.splits.includes(s)) {
    throw new ConfigError(`task ${task.name} has no split "${s}"${didYouMean(s, task.splits)}; its splits are ${task.splits.join(", ")}`);
  }
  return s;
}
