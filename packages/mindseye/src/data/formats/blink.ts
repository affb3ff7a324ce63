// BLINK (HF BLINK-Benchmark/BLINK): one parquet per config and split, e.g.
// Jigsaw/val-00000-of-00001.parquet, with the columns idx ("val_Jigsaw_1"), question, sub_task,
// image_1 … image_4 (HF Image features: a struct {bytes, path}, null when unused), choices
// (list of strings), answer ("(A)", "(B)", …; "hidden" on the test split), prompt (the full model
// prompt) and explanation. Images come embedded, so items carry their bytes.
import type { BlinkItem, ImageRef } from "./index.js";
import { MalformedRecord, attempt, counterFor, type ReadOptions, type RecordSource } from "./errors.js";
import { asObject, optStr, str, strList, letter } from "./fields.js";
import { openParquet, parquetFiles, parquetRows, requireColumns } from "./parquet.js";

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
  const o = asObject(row, at);
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
  if (images.length === 0) throw new MalformedRecord(source, "no image (image_1 … image_4 are all null)");
  return {
    dataset: "blink",
    id,
    question: str(o, "question", source),
    images,
    answer: answerIndex === null ? null : letter(answerIndex),
    source,
    choices,
    answerIndex,
    subTask: str(o, "sub_task", source),
    prompt: str(o, "prompt", source),
    explanation: optStr(o, "explanation", source),
  };
}
