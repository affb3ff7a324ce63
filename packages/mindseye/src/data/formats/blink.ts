// BLINK (HF BLINK-Benchmark/BLINK): one parquet per config and split, e.g.
// Jigsaw/val-00000-of-00001.parquet, with the columns idx ("val_Jigsaw_1"), question, sub_task,
// image_1 … image_4 (HF Image features: a struct {bytes, path}, null when unused), choices
// (list of strings), answer ("(A)", "(B)", …; "hidden" on the test split), prompt (the full model
// prompt) and explanation. Images come embedded, so items carry their bytes.
//
// The same records as JSON lines (readBlinkJsonl), with image_N holding file paths relative to
// the JSONL file's folder: what the synthetic world writes (DIR/blink/Jigsaw/{split}.jsonl).
import { dirname, isAbsolute, join } from "node:path";
import type { BlinkItem, ImageRef } from "./index.js";
import { MalformedRecord, attempt, counterFor, messageOf, type ReadOptions, type RecordSource } from "./errors.js";
import { asObject, optStr, str, strList, letter, type Json } from "./fields.js";
import { openParquet, parquetFiles, parquetRows, requireColumns } from "./parquet.js";
import { readLines } from "./stream.js";

export interface BlinkOptions {
  /** A BLINK parquet file, or a config's folder of them (Jigsaw/). */
  readonly files: string;
}

const IMAGE_COLUMNS = ["image_1", "image_2", "image_3", "image_4"] as const;
const COLUMNS = ["idx", "question", "sub_task", ...IMAGE_COLUMNS, "choices", "answer", "prompt", "explanation"];
const EXPECTED = `BLINK parquet (HF BLINK-Benchmark/BLINK) with columns ${COLUMNS.join(", ")}`;
// What the official eval and lmms-eval compare against: "(A)" → letter A.
const ANSWER = /^\(([A-Z])\)$/;

/**
 * One item per row, one row group at a time. `images` are the non-null image_N in column order
 * (what lmms-eval passes); `answer` is the gold letter ("A"), null on the test split.
 * ```ts
 * for await (const item of readBlink({ files: "BLINK/Jigsaw/val-00000-of-00001.parquet" })) item.images.length; // 3
 * ```
 */
export async function* readBlink(options: BlinkOptions, read?: ReadOptions): AsyncGenerator<BlinkItem> {
  const errors = counterFor("blink", read);
  for (const name of await parquetFiles(options.files, EXPECTED)) {
    const file = await openParquet(name, EXPECTED);
    requireColumns(file, COLUMNS, EXPECTED);
    // utf8: false keeps the image bytes binary; the string columns are UTF8-annotated and still decode
    for await (const { row, index } of parquetRows(file, errors, { columns: COLUMNS, utf8: false })) {
      const item = await attempt(errors, () => toItem(row, { file: name, record: `row ${index}` }));
      if (item !== null) yield item;
    }
  }
}

function toItem(row: Record<string, unknown>, at: RecordSource): BlinkItem {
  return blinkItem(asObject(row, at), at, (o, id, source) => {
    const images: ImageRef[] = [];
    for (const column of IMAGE_COLUMNS) {
      const cell = o[column];
      if (cell === null || cell === undefined) continue;
      const image = asObject(cell, source, `"${column}"`);
      const bytes = image.bytes;
      if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
        throw new MalformedRecord(source, `"${column}" has no embedded bytes (path ${JSON.stringify(image.path ?? null)}); expected an HF Image struct {bytes, path}`);
      }
      images.push({ kind: "bytes", bytes, name: `${id}/${column}` });
    }
    return images;
  });
}

/** The fields both layouts share; `images` reads image_1 … image_4 (non-null ones, in order). */
function blinkItem(o: Json, at: RecordSource, images: (o: Json, id: string, source: RecordSource) => ImageRef[]): BlinkItem {
  const id = str(o, "idx", at);
  const source = { file: at.file, record: `${at.record} (idx ${id})` };
  const choices = strList(o, "choices", source);
  const published = str(o, "answer", source);
  let answerIndex: number | null = null;
  if (published !== "hidden") {
    const m = ANSWER.exec(published);
    if (m === null) throw new MalformedRecord(source, `"answer" must be "(A)", "(B)", … or "hidden", got ${JSON.stringify(published)}`);
    answerIndex = m[1]!.charCodeAt(0) - 65;
    if (answerIndex >= choices.length) throw new MalformedRecord(source, `"answer" ${published} is past its ${choices.length} choices`);
  }
  const refs = images(o, id, source);
  if (refs.length === 0) throw new MalformedRecord(source, "no image (image_1 … image_4 are all null)");
  return {
    dataset: "blink",
    id,
    question: str(o, "question", source),
    images: refs,
    answer: answerIndex === null ? null : letter(answerIndex),
    source,
    choices,
    answerIndex,
    subTask: str(o, "sub_task", source),
    prompt: str(o, "prompt", source),
    explanation: optStr(o, "explanation", source),
  };
}

// ---- JSON lines with image files (the synthetic world's layout) -------------------------------

export interface BlinkJsonlOptions {
  /** A JSONL file of BLINK records whose image_N are image paths, relative to the file's folder. */
  readonly file: string;
}

/**
 * One item per line, as readBlink gives them, with file images (absolute paths are kept). A line
 * that is not a BLINK record is skipped and counted; a file that cannot be read is a DataFormatError.
 * ```ts
 * for await (const item of readBlinkJsonl({ file: "world/blink/Jigsaw/test.jsonl" })) item.images[0]; // {kind: "file", path: ".../images/test_Jigsaw_1_1.png"}
 * ```
 */
export async function* readBlinkJsonl(options: BlinkJsonlOptions, read?: ReadOptions): AsyncGenerator<BlinkItem> {
  const errors = counterFor("blink", read);
  const folder = dirname(options.file);
  for await (const { line, lineNo } of readLines(options.file)) {
    if (line.trim() === "") continue;
    const at = { file: options.file, record: `line ${lineNo}` };
    const item = await attempt(errors, () => {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new MalformedRecord(at, `not JSON (${messageOf(e)}); expected one BLINK record {${COLUMNS.join(", ")}} per line`);
      }
      return blinkItem(asObject(row, at), at, (o, _id, source) => IMAGE_COLUMNS.flatMap((column): ImageRef[] => {
        const path = optStr(o, column, source);
        if (path === null) return [];
        if (path === "") throw new MalformedRecord(source, `"${column}" is an empty path`);
        return [{ kind: "file", path: isAbsolute(path) ? path : join(folder, path) }];
      }));
    });
    if (item !== null) yield item;
  }
}
