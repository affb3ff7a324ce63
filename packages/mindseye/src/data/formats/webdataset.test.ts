import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import tar from "tar-stream";
import { DataFormatError, SkipCounter } from "./errors.js";
import { expandBraces, readWebDataset, splitKey, tarSamples, webDatasetSamples, type WebDatasetSample } from "./webdataset.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/webdataset/", import.meta.url));

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** A tar archive in memory: [name, body] files, or [name, null] for a directory. */
async function tarBytes(members: readonly (readonly [string, string | Buffer | null])[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, body] of members) {
    if (body === null) pack.entry({ name, type: "directory" });
    else pack.entry({ name, mtime: new Date(0) }, body);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const samplesOf = (bytes: Buffer, errors = new SkipCounter("wds")) => all(tarSamples(Readable.from([bytes]), "mem.tar", errors));

test("brace notation and WebDataset's key split", () => {
  assert.deepEqual(expandBraces("cc3m-{0008..0010}.tar"), ["cc3m-0008.tar", "cc3m-0009.tar", "cc3m-0010.tar"]);
  assert.deepEqual(expandBraces("{a,b}/{0..1}.tar"), ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]);
  assert.deepEqual(expandBraces("plain.tar"), ["plain.tar"]);
  assert.deepEqual(splitKey("000000005.jpg"), ["000000005", "jpg"]);
  assert.deepEqual(splitKey("dir.v1/sub/a.seg.png"), ["dir.v1/sub/a", "seg.png"]);
  assert.equal(splitKey("README"), null);
});

test("WebDataset: image–caption pairs from img2dataset shards, malformed samples counted with shard and key", async () => {
  const errors = new SkipCounter("webdataset");
  const pairs = await all(readWebDataset({ shards: join(FIX, "{00000..00001}.tar") }, { errors }));
  assert.deepEqual(pairs.map((p) => p.id), ["000000000", "000000001", "000000002", "000000005", "000010000", "000010001"]);
  assert.deepEqual(pairs.map((p) => (p.image.kind === "bytes" ? p.image.name : "")), ["000000000.jpg", "000000001.png", "000000002.webp", "000000005.jpg", "000010000.jpg", "000010001.jpg"]);
  assert.deepEqual(pairs[1]!.captions, ["two cups of coffee on a table"]);
  assert.equal(pairs[1]!.meta.url, "http://example.com/wds/000000001.png");
  assert.deepEqual(pairs[4]!.source, { file: join(FIX, "00001.tar"), record: "key 000010000" });
  const img = pairs[0]!.image;
  assert.ok(img.kind === "bytes" && img.bytes[0] === 0xff && img.bytes[1] === 0xd8, "jpg member bytes as stored");
  const r = errors.report();
  assert.equal(r.seen, 8);
  assert.deepEqual(r.examples.map((e) => `${e.source.file} ${e.source.record}: ${e.reason}`), [
    `${join(FIX, "00000.tar")} key 000000003: no caption member (.txt); has jpg, json`,
    `${join(FIX, "00000.tar")} key 000000004: the .json member is not valid JSON: Unexpected end of JSON input`,
  ]);
});

test("grouping: adjacent members share a sample; duplicates, scattered keys and extension-less names are counted", async () => {
  const errors = new SkipCounter("wds");
  const samples: WebDatasetSample[] = await samplesOf(await tarBytes([
    ["__meta__", "skipped like WebDataset's metadata"],
    ["shard/", null],
    ["shard/a.jpg", "A"], ["shard/a.TXT", "caption a"], ["shard/a.seg.png", "S"],
    ["shard/b.jpg", "B"], ["shard/b.jpg", "B again"],
    ["shard/c.jpg", "C"],
    ["shard/a.json", "{}"],
    ["NOTES", "no extension"],
  ]), errors);
  assert.deepEqual(samples.map((s) => [s.key, [...s.members.keys()]]), [["shard/a", ["jpg", "txt", "seg.png"]], ["shard/c", ["jpg"]]]);
  assert.equal(samples[0]!.members.get("txt")!.toString(), "caption a");
  const ex = errors.report().examples.map((e) => `${e.source.file} ${e.source.record}: ${e.reason}`);
  assert.equal(ex.length, 3);
  assert.match(ex[0]!, /^mem\.tar key shard\/b: duplicate file name: two "jpg" members/);
  assert.match(ex[1]!, /^mem\.tar member 10 \(NOTES\): no extension/);
  assert.match(ex[2]!, /^mem\.tar key shard\/a: members of key shard\/a are not adjacent/);
});

test("a truncated shard yields its complete samples and counts the rest as one skip; a non-tar is an error", async () => {
  const whole = readFileSync(join(FIX, "00000.tar"));
  const errors = new SkipCounter("wds");
  const cut = whole.subarray(0, 512 * 9 + 100); // inside the 5th member (000000001.txt)
  const samples = await samplesOf(cut, errors);
  assert.deepEqual(samples.map((s) => s.key), ["000000000"]);
  const r = errors.report();
  assert.equal(r.skipped, 1);
  assert.match(r.examples[0]!.source.record, /^after member \d+ \(000000001\.\w+\)$/);
  assert.match(r.examples[0]!.reason, /the rest of the shard is unreadable \(truncated or corrupt\)/);

  const dir = mkdtempSync(join(tmpdir(), "mindseye-wds-"));
  const junk = join(dir, "junk.tar");
  writeFileSync(junk, Buffer.alloc(2048, 7));
  await assert.rejects(all(webDatasetSamples({ shards: junk }, new SkipCounter("wds"))), (e: unknown) => e instanceof DataFormatError && e.message.includes(junk) && /not a readable tar file/.test(e.message));
  await assert.rejects(all(webDatasetSamples({ shards: join(dir, "missing.tar") }, new SkipCounter("wds"))), /cannot open shard .*missing\.tar/);
});

// 1,000 samples = 2,000 members, made at test time
async function bigShard(n: number): Promise<Buffer> {
  const members: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const key = String(i).padStart(9, "0");
    members.push([`${key}.jpg`, `jpeg bytes ${i}`], [`${key}.txt`, `caption ${i}`]);
  }
  return tarBytes(members);
}

test("streaming: the first record arrives while most of a 2,000-member shard is still unwritten", async () => {
  const bytes = await bigShard(1000);
  const input = new PassThrough();
  const gen = tarSamples(input, "stream.tar", new SkipCounter("wds"));
  const head = 50 * 1024; // the first ~25 samples
  input.write(bytes.subarray(0, head));
  // a reader that waited for the whole shard would never get past this await (the rest is not written yet)
  const first = await gen.next();
  assert.equal(first.done, false);
  assert.equal((first.value as WebDatasetSample).key, "000000000");
  input.end(bytes.subarray(head));
  const keys = [(first.value as WebDatasetSample).key];
  for await (const s of gen) keys.push(s.key);
  assert.equal(keys.length, 1000);
  assert.equal(keys[999], "000000999");
});

test("streaming from disk: a 2,000-member shard is read record by record, and stopping early closes it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-wds-"));
  const shard = join(dir, "big-000000.tar");
  writeFileSync(shard, await bigShard(1000));
  let n = 0;
  for await (const p of readWebDataset({ shards: shard })) {
    assert.equal(p.captions[0], `caption ${n}`);
    n++;
  }
  assert.equal(n, 1000);
  let m = 0;
  for await (const _ of readWebDataset({ shards: [shard, shard] })) if (++m === 5) break;
  assert.equal(m, 5);
});
