// ScienceQA (lupantech/ScienceQA data/scienceqa/): problems.json is one object pid → {question,
// choices, answer (0-based), hint ("" if none), image ("image.png" | null), task, grade, subject,
// topic, category, skill, lecture, solution, split}; pid_splits.json maps "train", "val",
// "test", "minival", … to lists of pids. Images live at images/{split}/{pid}/{image}. The IMG
// subset is the problems with an image; the others are left out (counted as omitted).
import { join } from "node:path";
import type { ScienceQaItem } from "./index.js";
import { DataFormatError, MalformedRecord, attempt, counterFor, type ReadOptions, type RecordSource } from "./errors.js";
import { asObject, int, optStr, str, strList, letter, type Json } from "./fields.js";
import { readJsonFile } from "./stream.js";

export interface ScienceQaOptions {
  /** data/scienceqa/problems.json */
  readonly problems: string;
  /** data/scienceqa/pid_splits.json */
  readonly pidSplits: string;
  /** The image folder holding {split}/{pid}/image.png */
  readonly images: string;
  /** A key of pid_splits.json: "test" for evaluation, "train" for fine-tuning, "val", "minival", … */
  readonly split: string;
}

/**
 * The problems of one split that have an image, in pid_splits order (the order LLaVA's converters
 * and the official evaluation use). Both files are a few tens of MB and are parsed whole.
 * ```ts
 * for await (const p of readScienceQa({ problems, pidSplits, images: "images", split: "test" })) p.answer; // "A".."E"
 * ```
 */
export async function* readScienceQa(options: ScienceQaOptions, read?: ReadOptions): AsyncGenerator<ScienceQaItem> {
  const errors = counterFor("scienceqa", read);
  const splits = await readJsonFile(options.pidSplits, 'ScienceQA pid_splits.json: {"train": [pid], "val": [...], "test": [...]}');
  if (splits === null || typeof splits !== "object" || Array.isArray(splits)) throw new DataFormatError(`${options.pidSplits}: expected a JSON object of split name → list of pids`);
  const pids = (splits as Json)[options.split];
  if (!Array.isArray(pids)) {
    throw new DataFormatError(`${options.pidSplits} has no list "${options.split}"; its splits are ${Object.keys(splits).join(", ")}`);
  }
  const problems = await readJsonFile(options.problems, "ScienceQA problems.json: {pid: {question, choices, answer, image, …}}");
  if (problems === null || typeof problems !== "object" || Array.isArray(problems)) throw new DataFormatError(`${options.problems}: expected a JSON object of pid → problem`);

  for (let i = 0; i < pids.length; i++) {
    const item = await attempt(errors, () => {
      const pid = pids[i] as unknown;
      if (typeof pid !== "string" && typeof pid !== "number") throw new MalformedRecord({ file: options.pidSplits, record: `${options.split}[${i}]` }, `a pid must be a string, got ${JSON.stringify(pid)}`);
      const source = { file: options.problems, record: `pid ${pid}` };
      const problem = (problems as Json)[String(pid)];
      if (problem === undefined) throw new MalformedRecord({ file: options.pidSplits, record: `${options.split}[${i}]` }, `pid ${pid} is not in ${options.problems}`);
      return toItem(String(pid), problem, options.images, source, errors);
    });
    if (item !== null) yield item;
  }
}

function toItem(pid: string, value: unknown, images: string, source: RecordSource, errors: { omit(why: string): void }): ScienceQaItem | null {
  const o = asObject(value, source);
  const question = str(o, "question", source);
  const choices = strList(o, "choices", source);
  const answerIndex = int(o, "answer", source);
  if (answerIndex < 0 || answerIndex >= choices.length) throw new MalformedRecord(source, `"answer" ${answerIndex} is not an index into its ${choices.length} choices`);
  const image = optStr(o, "image", source);
  const split = str(o, "split", source);
  if (image === null) {
    errors.omit("without an image (not in the IMG subset)");
    return null;
  }
  return {
    dataset: "scienceqa",
    id: pid,
    question,
    images: [{ kind: "file", path: join(images, split, pid, image) }],
    answer: letter(answerIndex),
    source,
    choices,
    answerIndex,
    hint: str(o, "hint", source),
    lecture: str(o, "lecture", source),
    solution: str(o, "solution", source),
    task: str(o, "task", source),
    grade: str(o, "grade", source),
    subject: str(o, "subject", source),
    topic: str(o, "topic", source),
    category: str(o, "category", source),
    skill: str(o, "skill", source),
    split,
  };
}
