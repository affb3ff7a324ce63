// WebDataset tar shards, as img2dataset --output_format webdataset writes them (00000.tar with
// {key}.jpg, {key}.txt, {key}.json per sample) and as webdataset reads them
// (webdataset/webdataset src/webdataset/tariterators.py at e0953f9b):
// - a member's key is its path up to the first "." of the last component, the extension is
//   everything after it, lower-cased (`a/b.seg.png` → key `a/b`, ext `seg.png`);
// - a sample is a run of adjacent members with the same key; the same extension twice in one
//   sample is an error; only regular files count; top-level `__name__` members are metadata.
// The tar is streamed (tar-stream): one sample is held in memory at a time.
import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import type { ImageTextPair } from "./index.js";
import { DataFormatError, MalformedRecord, attempt, counterFor, messageOf, type ReadOptions, type RecordSource, type SkipCounter } from "./errors.js";
import { asObject } from "./fields.js";

export interface WebDatasetOptions {
  /** Shard paths; each may use brace notation: "cc3m/{00000..00331}.tar". */
  readonly shards: string | readonly string[];
}

/** The members of one sample by extension ("jpg", "txt", "json", "seg.png", …). */
export interface WebDatasetSample {
  readonly key: string;
  readonly members: ReadonlyMap<string, Buffer>;
  readonly source: RecordSource;
}

/** Expands WebDataset's brace notation: "a-{000..002}.tar" → a-000.tar, a-001.tar, a-002.tar; "{x,y}" lists. */
export function expandBraces(pattern: string): string[] {
  const m = /\{([^{}]*)\}/.exec(pattern);
  if (m === null) return [pattern];
  const head = pattern.slice(0, m.index);
  const tail = pattern.slice(m.index + m[0].length);
  const range = /^(\d+)\.\.(\d+)$/.exec(m[1]!);
  let items: string[];
  if (range !== null) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    if (b < a) throw new DataFormatError(`brace range {${m[1]}} in ${pattern} runs backwards`);
    const width = range[1]!.length;
    items = Array.from({ length: b - a + 1 }, (_, i) => String(a + i).padStart(width, "0"));
  } else {
    items = m[1]!.split(",");
  }
  return items.flatMap((item) => expandBraces(head + item + tail));
}

/** webdataset's base_plus_ext: [key, extension] or null for a name with no "." in its last component. */
export function splitKey(name: string): [string, string] | null {
  const m = /^((?:.*\/|)[^.]+)[.]([^/]*)$/.exec(name);
  return m === null ? null : [m[1]!, m[2]!];
}

/**
 * The samples of one tar stream, as WebDataset groups them. A malformed sample (same extension
 * twice, a key that reappears after other keys) is skipped and counted; so is a member with no
 * extension, and the rest of a shard that is truncated or corrupt past its first member. A
 * stream that is not a tar at all is a DataFormatError.
 */
export async function* tarSamples(input: Readable, name: string, errors: SkipCounter): AsyncGenerator<WebDatasetSample> {
  const extract = tar.extract();
  input.on("error", (e) => extract.destroy(e));
  input.pipe(extract);
  const done = new Set<string>(); // keys of this shard already yielded or skipped
  let current: { key: string; members: Map<string, Buffer>; bad: string | null; member: number } | null = null;
  let members = 0;
  let lastName = "";

  // Closes the current sample: a finished good one is returned, a bad one counted.
  const close = (): WebDatasetSample | null => {
    const s = current;
    current = null;
    if (s === null) return null;
    done.add(s.key);
    const source = { file: name, record: `key ${s.key}` };
    if (s.bad !== null) {
      errors.skip(source, s.bad);
      return null;
    }
    return { key: s.key, members: s.members, source };
  };

  try {
    for await (const entry of extract) {
      const header = entry.header;
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      members++;
      lastName = header.name;
      if (header.type !== "file" && header.type !== "contiguous-file") continue;
      if (!header.name.includes("/") && header.name.startsWith("__") && header.name.endsWith("__")) continue;
      const split = splitKey(header.name);
      if (split === null) {
        errors.skip({ file: name, record: `member ${members} (${header.name})` }, "no extension, so it belongs to no sample (WebDataset names are key.ext)");
        continue;
      }
      const [key, rawExt] = split;
      const ext = rawExt.toLowerCase();
      if (current === null || current.key !== key) {
        const finished = close();
        if (finished !== null) yield finished;
        current = { key, members: new Map(), bad: null, member: members };
        if (done.has(key)) current.bad = `members of key ${key} are not adjacent (it appears again at member ${members}, ${header.name}); a sample's files must be consecutive in the tar`;
      }
      if (current.members.has(ext)) current.bad ??= `duplicate file name: two "${ext}" members (${header.name})`;
      current.members.set(ext, Buffer.concat(chunks));
    }
  } catch (e) {
    if (e instanceof DataFormatError) throw e; // ErrorRateExceeded from a skip above
    if (members === 0) throw new DataFormatError(`${name} is not a readable tar file: ${messageOf(e)} (expected WebDataset shards)`);
    current = null; // its members may be cut short
    errors.skip({ file: name, record: `after member ${members} (${lastName})` }, `the rest of the shard is unreadable (truncated or corrupt): ${messageOf(e)}`);
    return;
  } finally {
    input.destroy();
    extract.destroy();
  }
  const last = close();
  if (last !== null) yield last;
}

/**
 * The samples of every shard in order (generic access to all members, for formats other than
 * image–caption pairs).
 */
export async function* webDatasetSamples(options: WebDatasetOptions, errors: SkipCounter): AsyncGenerator<WebDatasetSample> {
  const patterns = typeof options.shards === "string" ? [options.shards] : options.shards;
  for (const shard of patterns.flatMap(expandBraces)) {
    const input = createReadStream(shard);
    const opened = await new Promise<Error | null>((resolve) => {
      input.once("open", () => resolve(null));
      input.once("error", (e) => resolve(e));
    });
    if (opened !== null) throw new DataFormatError(`cannot open shard ${shard}: ${opened.message}`);
    yield* tarSamples(input, shard, errors);
  }
}

const IMAGE_EXTS = ["jpg", "jpeg", "png", "webp"];
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Image–caption pairs from WebDataset shards: each sample needs one image (jpg, jpeg, png or
 * webp), a UTF-8 `txt` caption and, optionally, a `json` object (img2dataset's metadata: url,
 * key, status, width, height, …), which becomes `meta`. Samples that lack these are skipped
 * and counted; other members are ignored.
 * ```ts
 * for await (const p of readWebDataset({ shards: "cc3m/{00000..00331}.tar" })) p.image;
 * ```
 */
export async function* readWebDataset(options: WebDatasetOptions, read?: ReadOptions): AsyncGenerator<ImageTextPair> {
  const errors = counterFor("webdataset", read);
  for await (const sample of webDatasetSamples(options, errors)) {
    const pair = await attempt(errors, () => toPair(sample));
    if (pair !== null) yield pair;
  }
}

function toPair({ key, members, source }: WebDatasetSample): ImageTextPair {
  const images = IMAGE_EXTS.filter((e) => members.has(e));
  if (images.length !== 1) throw new MalformedRecord(source, images.length === 0 ? `no image member (.jpg, .jpeg, .png or .webp); has ${[...members.keys()].join(", ")}` : `several images (${images.join(", ")})`);
  const txt = members.get("txt");
  if (txt === undefined) throw new MalformedRecord(source, `no caption member (.txt); has ${[...members.keys()].join(", ")}`);
  let caption: string;
  try {
    caption = utf8.decode(txt).trim();
  } catch {
    throw new MalformedRecord(source, "the .txt caption is not valid UTF-8");
  }
  if (caption === "") throw new MalformedRecord(source, "empty caption (.txt)");
  let meta: Record<string, unknown> = {};
  const json = members.get("json");
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(utf8.decode(json));
    } catch (e) {
      throw new MalformedRecord(source, `the .json member is not valid JSON: ${messageOf(e)}`);
    }
    meta = asObject(parsed, source, "the .json member");
  }
  const ext = images[0]!;
  return { id: key, image: { kind: "bytes", bytes: members.get(ext)!, name: `${key}.${ext}` }, captions: [caption], meta, source };
}
