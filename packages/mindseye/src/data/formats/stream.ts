// Incremental readers for text sources that can be too large to hold: lines of a TSV, and the
// entries of one big top-level JSON object (GQA's questionId → question dict runs to gigabytes,
// past V8's 512 MB string limit, so JSON.parse on the whole file is not an option).
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { DataFormatError, MalformedRecord, messageOf, type RecordSource } from "./errors.js";

/** The lines of a UTF-8 text file, 1-based numbers, without the line break (\n or \r\n). */
export async function* readLines(file: string): AsyncGenerator<{ line: string; lineNo: number }> {
  const input = createReadStream(file, { encoding: "utf8" });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const line of lines) yield { line, lineNo: ++lineNo };
  } catch (e) {
    throw new DataFormatError(`cannot read ${file}: ${messageOf(e)}`);
  } finally {
    lines.close();
    input.destroy();
  }
}

/** Reads and parses a whole JSON file (for files that fit in memory: COCO captions, pid_splits). */
export async function readJsonFile(file: string, expected: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new DataFormatError(`cannot read ${file}: ${messageOf(e)} (expected ${expected})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DataFormatError(`${file} is not valid JSON: ${messageOf(e)} (expected ${expected})`);
  }
}

/** One entry of a top-level JSON object, its value still as JSON text. */
export interface JsonEntry {
  readonly key: string;
  /** 0-based position of the entry in the object. */
  readonly index: number;
  readonly json: string;
}

const enum S { Start, BeforeKey, Key, AfterKey, BeforeValue, Value, End }
const QUOTE = 0x22, BACKSLASH = 0x5c, COLON = 0x3a, COMMA = 0x2c;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d;
const isSpace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * Streams the entries of a file holding one JSON object `{"k1": v1, "k2": v2, …}`, one value at a
 * time, so memory is bounded by the largest value, not the file. The scan works on bytes: every
 * JSON structural character is ASCII and never occurs inside a UTF-8 multi-byte sequence.
 * ```ts
 * for await (const { key, json } of jsonObjectEntries("val_balanced_questions.json")) JSON.parse(json);
 * ```
 * Throws DataFormatError when the file is not one JSON object (or ends early); a value that is
 * not valid JSON surfaces when the caller parses it (see parseJsonValue).
 */
export async function* jsonObjectEntries(file: string, expected: string): AsyncGenerator<JsonEntry> {
  const input = createReadStream(file, { highWaterMark: 1 << 20 });
  let state = S.Start as S;
  let offset = 0; // file offset of the current chunk's first byte
  let index = 0;
  let key = "";
  let parts: Buffer[] = []; // bytes of the key or value being collected, across chunks
  let depth = 0, inString = false, escaped = false;
  const fail = (what: string, at: number): never => {
    throw new DataFormatError(`${file}: ${what} at byte ${at} (after ${index} entries; expected ${expected}: one JSON object)`);
  };
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = -1; // where the key/value being collected starts in this chunk
      if (state === S.Key || state === S.Value) start = 0;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        switch (state) {
          case S.Start:
            if (b === LBRACE) state = S.BeforeKey;
            else if (!isSpace(b) && !(offset + i < 3 && (b === 0xef || b === 0xbb || b === 0xbf))) fail(`expected '{' but found '${String.fromCharCode(b)}'`, offset + i);
            break;
          case S.BeforeKey:
            if (b === QUOTE) { state = S.Key; start = i; escaped = false; }
            else if (b === RBRACE && index === 0) state = S.End;
            else if (!isSpace(b)) fail(`expected a key but found '${String.fromCharCode(b)}'`, offset + i);
            break;
          case S.Key:
            if (escaped) escaped = false;
            else if (b === BACKSLASH) escaped = true;
            else if (b === QUOTE) {
              parts.push(chunk.subarray(start, i + 1));
              key = JSON.parse(Buffer.concat(parts).toString("utf8")) as string;
              parts = [];
              state = S.AfterKey;
            }
            break;
          case S.AfterKey:
            if (b === COLON) state = S.BeforeValue;
            else if (!isSpace(b)) fail(`expected ':' after key "${key}"`, offset + i);
            break;
          case S.BeforeValue:
            if (isSpace(b)) break;
            state = S.Value; start = i; depth = 0; inString = false; escaped = false;
            i--; // read this byte again as the value's first
            break;
          case S.Value:
            if (inString) {
              if (escaped) escaped = false;
              else if (b === BACKSLASH) escaped = true;
              else if (b === QUOTE) inString = false;
            } else if (b === QUOTE) inString = true;
            else if (b === LBRACE || b === LBRACKET) depth++;
            else if ((b === RBRACE || b === RBRACKET) && depth > 0) depth--;
            else if (depth === 0 && (b === COMMA || b === RBRACE)) {
              parts.push(chunk.subarray(start, i));
              yield { key, index: index++, json: Buffer.concat(parts).toString("utf8").trim() };
              parts = [];
              state = b === COMMA ? S.BeforeKey : S.End;
            }
            break;
          case S.End:
            if (!isSpace(b)) fail(`unexpected '${String.fromCharCode(b)}' after the closing '}'`, offset + i);
            break;
        }
      }
      if (state === S.Key || state === S.Value) parts.push(chunk.subarray(start));
      offset += chunk.length;
    }
  } catch (e) {
    if (e instanceof DataFormatError) throw e;
    throw new DataFormatError(`cannot read ${file}: ${messageOf(e)}`);
  } finally {
    input.destroy();
  }
  if (state !== S.End) fail(state === S.Start ? "no JSON object" : "the file ends inside the object (truncated?)", offset);
}

/** JSON.parse of one record's text; a syntax error becomes a MalformedRecord naming the record. */
export function parseJsonValue(json: string, source: RecordSource): unknown {
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new MalformedRecord(source, `not valid JSON: ${messageOf(e)}`);
  }
}
