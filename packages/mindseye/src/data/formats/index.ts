// Readers for the real datasets, as they are published (see shared/reference/formats.md §1–2),
// and the two record shapes they produce: image–caption pairs for pretraining and task items for
// fine-tuning and evaluation. Every reader is an async generator: records stream one at a time,
// files are read incrementally where they can be large (TSV, tar, parquet, GQA's JSON).
//
// The registry at the bottom maps a dataset spec from a recipe (`{ format: "cc3m", tsv, images }`)
// to its reader: one explicit list, an error on duplicates, "did you mean" on a miss.
import { readFile } from "node:fs/promises";
import { ConfigError } from "../../config/errors.js";
import { DataFormatError, SkipCounter, messageOf, type ReadOptions, type RecordSource } from "./errors.js";
import { readCoco, type CocoOptions } from "./coco.js";
import { readCc3m, type Cc3mOptions } from "./cc3m.js";
import { readWebDataset, type WebDatasetOptions } from "./webdataset.js";
import { readLaion, type LaionOptions } from "./laion.js";
import { readGqa, type GqaOptions } from "./gqa.js";
import { readScienceQa, type ScienceQaOptions } from "./scienceqa.js";
import { readBlink, readBlinkJsonl, type BlinkOptions, type BlinkJsonlOptions } from "./blink.js";

export type { RecordSource } from "./errors.js";

// ---- records ---------------------------------------------------------------------------------

/**
 * An image as a reader found it: a file on disk (COCO, CC3M, GQA, ScienceQA) or bytes held in
 * memory (a tar member, a parquet cell). Decode either with `decodeImage` (data/images.ts).
 */
export type ImageRef =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "bytes"; readonly bytes: Uint8Array; /** member or column it came from, e.g. "000000005.jpg" */ readonly name: string };

/** The encoded bytes of an image. */
export async function imageBytes(ref: ImageRef): Promise<Uint8Array> {
  if (ref.kind === "bytes") return ref.bytes;
  try {
    return await readFile(ref.path);
  } catch (e) {
    throw new DataFormatError(`cannot read image ${ref.path}: ${messageOf(e)}`);
  }
}

/** One pretraining example: an image and its caption(s). */
export interface ImageTextPair {
  /** Unique within the dataset: COCO image id, img2dataset key, WebDataset key. */
  readonly id: string;
  readonly image: ImageRef;
  /** At least one, trimmed (COCO has about five per image; the others one). */
  readonly captions: readonly string[];
  /** What else the source says about the sample, under its own names (img2dataset's url/width/height, LAION's NSFW/similarity/LICENSE). */
  readonly meta: Readonly<Record<string, unknown>>;
  readonly source: RecordSource;
}

interface TaskItemBase {
  /** The dataset's own id: GQA questionId, ScienceQA pid, BLINK idx. */
  readonly id: string;
  readonly question: string;
  /** In the order the model sees them (BLINK: image_1, image_2, … skipping nulls). */
  readonly images: readonly ImageRef[];
  /**
   * The gold answer as the harnesses compare it: GQA's answer string; for multiple choice the
   * letter of the right choice ("A", "B", …). Null where the split hides answers (GQA test,
   * BLINK test).
   */
  readonly answer: string | null;
  readonly source: RecordSource;
}

/** A GQA question (questions1.2/*_questions.json). */
export interface GqaItem extends TaskItemBase {
  readonly dataset: "gqa";
  readonly imageId: string;
  readonly fullAnswer: string | null;
  /** eval.py scores only balanced questions. */
  readonly isBalanced: boolean;
  readonly types: { readonly structural: string | null; readonly semantic: string | null; readonly detailed: string | null };
  readonly groups: { readonly global: string | null; readonly local: string | null };
}

/** A ScienceQA problem with an image (problems.json + pid_splits.json). */
export interface ScienceQaItem extends TaskItemBase {
  readonly dataset: "scienceqa";
  readonly choices: readonly string[];
  readonly answer: string;
  /** The published 0-based `answer`. */
  readonly answerIndex: number;
  /** "" when there is none, as published. */
  readonly hint: string;
  readonly lecture: string;
  readonly solution: string;
  readonly task: string;
  readonly grade: string;
  readonly subject: string;
  readonly topic: string;
  readonly category: string;
  readonly skill: string;
  /** The split the problem belongs to ("train" | "val" | "test"); its image lives under images/{split}/{pid}/. */
  readonly split: string;
}

/** A BLINK item (BLINK-Benchmark/BLINK parquet, one config such as Jigsaw). */
export interface BlinkItem extends TaskItemBase {
  readonly dataset: "blink";
  readonly choices: readonly string[];
  /** null on the test split, whose published answer is "hidden". */
  readonly answerIndex: number | null;
  readonly subTask: string;
  /** The full published model prompt: the instruction, "Select from the following choices.", the lettered options. */
  readonly prompt: string;
  readonly explanation: string | null;
}

export type TaskItem = GqaItem | ScienceQaItem | BlinkItem;

export { readCoco, readCc3m, readWebDataset, readLaion, readGqa, readScienceQa, readBlink, readBlinkJsonl };
export type { CocoOptions, Cc3mOptions, WebDatasetOptions, LaionOptions, GqaOptions, ScienceQaOptions, BlinkOptions, BlinkJsonlOptions };
export { webDatasetSamples, tarSamples, expandBraces } from "./webdataset.js";
export type { WebDatasetSample } from "./webdataset.js";
export { SkipCounter, DataFormatError, ErrorRateExceeded, MalformedRecord, DEFAULT_ERROR_POLICY } from "./errors.js";
export type { ErrorPolicy, SkipReport, SkippedRecord, ReadOptions } from "./errors.js";

// ---- registry --------------------------------------------------------------------------------

/** A dataset as a recipe names it: `{ format: "coco", annotations: "…/captions_val2017.json", images: "…/val2017" }`. */
export type DatasetSpec = Readonly<{ format: string } & Record<string, unknown>>;

export interface SpecField {
  readonly type: "path" | "paths" | "string" | "integer";
  readonly required: boolean;
  /** One line: what to give. */
  readonly doc: string;
}

interface FormatBase {
  readonly name: string;
  readonly summary: string;
  /** The keys a spec of this format takes, besides `format`. */
  readonly fields: Readonly<Record<string, SpecField>>;
}

export interface PairFormat extends FormatBase {
  readonly kind: "pairs";
  /** Validates the spec (unknown keys and wrong types are ConfigErrors) and streams its pairs. */
  read(spec: DatasetSpec, options?: ReadOptions): AsyncGenerator<ImageTextPair>;
}

export interface TaskFormat extends FormatBase {
  readonly kind: "tasks";
  read(spec: DatasetSpec, options?: ReadOptions): AsyncGenerator<TaskItem>;
}

export type Format = PairFormat | TaskFormat;

type Values = Record<string, string | readonly string[] | number>;
const req = (type: SpecField["type"], doc: string): SpecField => ({ type, required: true, doc });
const opt = (type: SpecField["type"], doc: string): SpecField => ({ type, required: false, doc });

function pairs(name: string, summary: string, fields: Record<string, SpecField>, open: (v: Values, o: ReadOptions) => AsyncGenerator<ImageTextPair>): PairFormat {
  return { kind: "pairs", name, summary, fields, read: (spec, o) => judged(name, o, (opts) => open(checkSpec(name, fields, spec), opts)) };
}

function tasks(name: string, summary: string, fields: Record<string, SpecField>, open: (v: Values, o: ReadOptions) => AsyncGenerator<TaskItem>): TaskFormat {
  return { kind: "tasks", name, summary, fields, read: (spec, o) => judged(name, o, (opts) => open(checkSpec(name, fields, spec), opts)) };
}

/**
 * A read with the caller's counter as is (the caller judges it with `finish`); without one, the
 * read gets its own and judges the error rate over everything it read when it reaches the end.
 * The spec is checked at once, before the first record is asked for.
 */
function judged<T>(what: string, o: ReadOptions | undefined, open: (o: ReadOptions) => AsyncGenerator<T>): AsyncGenerator<T> {
  if (o?.errors !== undefined) return open(o);
  const errors = new SkipCounter(what);
  const inner = open({ errors });
  return (async function* () {
    yield* inner;
    errors.finish();
  })();
}

const IMG2DATASET_FIELDS = {
  samplesPerShard: opt("integer", "--number_sample_per_shard of the img2dataset run (default 10000)"),
  shardDigits: opt("integer", "--oom_shard_count of the img2dataset run (default 5)"),
};

// The casts below are checked by the registry test, which reads every format's fixture through its spec.
const FORMAT_LIST: readonly Format[] = [
  pairs("coco", "COCO captions JSON + image folder", {
    annotations: req("path", "annotations/captions_train2017.json"),
    images: req("path", "the folder of the images it names (train2017/)"),
  }, (v, o) => readCoco(v as unknown as CocoOptions, o)),
  pairs("cc3m", "CC3M TSV + the img2dataset (files) download of it", {
    tsv: req("path", "the TSV given to img2dataset (caption \\t url)"),
    images: req("path", "img2dataset's --output_folder (--output_format files)"),
    ...IMG2DATASET_FIELDS,
  }, (v, o) => readCc3m(v as unknown as Cc3mOptions, o)),
  pairs("webdataset", "WebDataset / img2dataset tar shards (jpg|png|webp + txt + json)", {
    shards: req("paths", "shard paths, brace notation allowed: data/{00000..00099}.tar"),
  }, (v, o) => readWebDataset(v as unknown as WebDatasetOptions, o)),
  pairs("laion", "LAION metadata parquet (URL, TEXT, …) + the img2dataset (files) download of it", {
    metadata: req("path", "a metadata parquet file or the folder of them (img2dataset's --url_list)"),
    images: req("path", "img2dataset's --output_folder (--output_format files)"),
    ...IMG2DATASET_FIELDS,
  }, (v, o) => readLaion(v as unknown as LaionOptions, o)),
  tasks("gqa", "GQA questions JSON + image folder", {
    questions: req("path", "questions1.2/testdev_balanced_questions.json, or a folder of chunk files"),
    images: req("path", "the folder holding {imageId}.jpg"),
    imageExtension: opt("string", "the images' extension (default jpg; the synthetic world's are png)"),
  }, (v, o) => readGqa(v as unknown as GqaOptions, o)),
  tasks("scienceqa", "ScienceQA problems.json + pid_splits.json, problems with an image", {
    problems: req("path", "data/scienceqa/problems.json"),
    pidSplits: req("path", "data/scienceqa/pid_splits.json"),
    images: req("path", "the folder holding {split}/{pid}/image.png"),
    split: req("string", "a key of pid_splits.json: train, val, test, minival"),
  }, (v, o) => readScienceQa(v as unknown as ScienceQaOptions, o)),
  tasks("blink", "BLINK parquet with embedded images (one config, e.g. Jigsaw)", {
    files: req("path", "a BLINK parquet file or a config's folder (Jigsaw/)"),
  }, (v, o) => readBlink(v as unknown as BlinkOptions, o)),
  tasks("blink_jsonl", "BLINK records as JSON lines with image files (the synthetic world's blink/Jigsaw/{split}.jsonl)", {
    file: req("path", "a .jsonl file; image_N are paths relative to its folder"),
  }, (v, o) => readBlinkJsonl(v as unknown as BlinkJsonlOptions, o)),
];

/** Builds a name → format map; two formats with one name are an error. */
export function createRegistry(list: readonly Format[]): ReadonlyMap<string, Format> {
  const map = new Map<string, Format>();
  for (const f of list) {
    if (map.has(f.name)) throw new Error(`data format "${f.name}" is registered twice`);
    map.set(f.name, f);
  }
  return map;
}

/** Every dataset format, by name. */
export const FORMATS: ReadonlyMap<string, Format> = createRegistry(FORMAT_LIST);

/** The format called `name`; an unknown name is a ConfigError that suggests the closest one. */
export function getFormat(name: string): Format {
  const f = FORMATS.get(name);
  if (f === undefined) throw new ConfigError(`unknown data format "${name}"${didYouMean(name, [...FORMATS.keys()])}; known formats: ${[...FORMATS.keys()].join(", ")}`);
  return f;
}

/**
 * Pretraining pairs of a dataset spec.
 * ```ts
 * for await (const p of readPairs({ format: "webdataset", shards: "cc3m/{00000..00331}.tar" })) p.captions;
 * ```
 */
export function readPairs(spec: DatasetSpec, options?: ReadOptions): AsyncGenerator<ImageTextPair> {
  const f = getFormat(spec.format);
  if (f.kind !== "pairs") throw new ConfigError(`data format "${f.name}" gives task items, not image–caption pairs (pair formats: ${namesOf("pairs")})`);
  return f.read(spec, options);
}

/** Task items (questions) of a dataset spec. */
export function readTasks(spec: DatasetSpec, options?: ReadOptions): AsyncGenerator<TaskItem> {
  const f = getFormat(spec.format);
  if (f.kind !== "tasks") throw new ConfigError(`data format "${f.name}" gives image–caption pairs, not task items (task formats: ${namesOf("tasks")})`);
  return f.read(spec, options);
}

function namesOf(kind: Format["kind"]): string {
  return [...FORMATS.values()].filter((f) => f.kind === kind).map((f) => f.name).join(", ");
}

function checkSpec(name: string, fields: Readonly<Record<string, SpecField>>, spec: DatasetSpec): Values {
  const where = `data format "${name}"`;
  const known = Object.keys(fields);
  const values: Values = {};
  for (const key of Object.keys(spec)) {
    if (key !== "format" && !(key in fields)) throw new ConfigError(`${where}: unknown key "${key}"${didYouMean(key, known)}; it takes ${known.join(", ")}`);
  }
  for (const [key, field] of Object.entries(fields)) {
    const v = spec[key];
    if (v === undefined || v === null) {
      if (field.required) throw new ConfigError(`${where}: missing "${key}" (${field.doc})`);
      continue;
    }
    const ok =
      field.type === "integer" ? Number.isInteger(v) && (v as number) > 0
      : field.type === "paths" ? (typeof v === "string" && v !== "") || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string" && x !== ""))
      : typeof v === "string" && v !== "";
    if (!ok) throw new ConfigError(`${where}: "${key}" must be ${field.type === "integer" ? "a positive integer" : field.type === "paths" ? "a path or a list of paths" : `a non-empty ${field.type === "path" ? "path" : "string"}`}, got ${JSON.stringify(v)} (${field.doc})`);
    values[key] = v as string | readonly string[] | number;
  }
  return values;
}

/** ' (did you mean "coco"?)' when a known name is within a few edits, else "". Shared by the other registries. */
export function didYouMean(name: string, known: readonly string[]): string {
  let best = "", bestD = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : "";
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}
