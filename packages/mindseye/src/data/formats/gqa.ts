// GQA questions (questions1.2/{train,val,testdev,test,challenge}_{all,balanced}_questions.json):
// one JSON object questionId → {imageId, question, answer, fullAnswer, isBalanced,
// groups {global, local}, types {structural, semantic, detailed}, entailed, equivalent,
// annotations, semantic, semanticStr}. train_all comes as a folder of chunk files, which GQA's
// eval.py loadFile also accepts. Files reach gigabytes, so entries are streamed one by one.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { GqaItem } from "./index.js";
import { DataFormatError, MalformedRecord, attempt, counterFor, messageOf, type ReadOptions, type RecordSource } from "./errors.js";
import { asObject, bool, optStr, str, type Json } from "./fields.js";
import { jsonObjectEntries, parseJsonValue } from "./stream.js";

export interface GqaOptions {
  /** A questions file (testdev_balanced_questions.json) or a folder of chunk files (train_all_questions/). */
  readonly questions: string;
  /** The image folder, holding {imageId}.{imageExtension}. */
  readonly images: string;
  /** The images' extension: "jpg" as GQA publishes them (the synthetic world writes "png"). */
  readonly imageExtension?: string;
}

const EXPECTED = "GQA questions JSON: {questionId: {imageId, question, answer, isBalanced, …}}";

/**
 * One item per question, in file order. Answers are absent on the test and challenge splits
 * (answer null). A question missing imageId, question or isBalanced is skipped and counted.
 * ```ts
 * for await (const q of readGqa({ questions: "questions1.2/testdev_balanced_questions.json", images: "images" })) q.answer;
 * ```
 */
export async function* readGqa(options: GqaOptions, read?: ReadOptions): AsyncGenerator<GqaItem> {
  const errors = counterFor("gqa", read);
  for (const file of await questionFiles(options.questions)) {
    for await (const entry of jsonObjectEntries(file, EXPECTED)) {
      const source = { file, record: `question ${entry.key}` };
      const item = await attempt(errors, () => toItem(entry.key, parseJsonValue(entry.json, source), options.images, options.imageExtension ?? "jpg", source));
      if (item !== null) yield item;
    }
  }
}

function toItem(id: string, value: unknown, images: string, extension: string, source: RecordSource): GqaItem {
  const o = asObject(value, source);
  const imageId = str(o, "imageId", source);
  const question = str(o, "question", source);
  if (question.trim() === "") throw new MalformedRecord(source, `"question" is empty`);
  const types = optObject(o, "types", source);
  const groups = optObject(o, "groups", source);
  return {
    dataset: "gqa",
    id,
    question,
    images: [{ kind: "file", path: join(images, `${imageId}.${extension}`) }],
    answer: optStr(o, "answer", source),
    source,
    imageId,
    fullAnswer: optStr(o, "fullAnswer", source),
    isBalanced: bool(o, "isBalanced", source),
    types: { structural: optStr(types, "structural", source), semantic: optStr(types, "semantic", source), detailed: optStr(types, "detailed", source) },
    groups: { global: optStr(groups, "global", source), local: optStr(groups, "local", source) },
  };
}

function optObject(o: Json, key: string, source: RecordSource): Json {
  const v = o[key];
  return v === undefined || v === null ? {} : asObject(v, source, `"${key}"`);
}

/** The file itself, or the *.json chunks of a folder in numeric order (train_all_questions_0 … _9). */
async function questionFiles(path: string): Promise<string[]> {
  const s = await stat(path).catch((e: unknown) => {
    throw new DataFormatError(`${path}: ${messageOf(e)} (expected ${EXPECTED})`);
  });
  if (!s.isDirectory()) return [path];
  const names = (await readdir(path)).filter((n) => n.endsWith(".json")).sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (names.length === 0) throw new DataFormatError(`${path} holds no *.json question file (expected ${EXPECTED})`);
  return names.map((n) => join(path, n));
}
