import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { ErrorRateExceeded, SkipCounter } from "./formats/errors.js";
import { readBlink, readWebDataset } from "./formats/index.js";
import { ImageDecodeError, decodeBatch, decodeImage, decodeOrSkip, type RgbImage } from "./images.js";

const X = fileURLToPath(new URL("../../test-fixtures/formats/", import.meta.url));

// 8×8 pixels with distinct values, so a flipped or shifted decode shows
const W = 8, H = 8;
const rgb = Buffer.alloc(W * H * 3);
for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + 11) % 256;
const raw = (channels: 1 | 3 | 4, data: Buffer) => sharp(data, { raw: { width: W, height: H, channels } });

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function shape(img: RgbImage): [number, number, number] {
  return [img.height, img.width, img.data.length / (img.width * img.height)];
}

test("PNG and lossless WebP decode to the exact RGB bytes; JPEG to close ones", async () => {
  for (const [name, bytes] of [["png", await raw(3, rgb).png().toBuffer()], ["webp", await raw(3, rgb).webp({ lossless: true }).toBuffer()]] as const) {
    const img = await decodeImage(bytes);
    assert.deepEqual(shape(img), [8, 8, 3], name);
    assert.equal(maxDiff(img.data, rgb), 0, name);
  }
  const smooth = Buffer.alloc(W * H * 3, 0);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) smooth.set([x * 30, y * 30, 100], (y * W + x) * 3);
  const jpg = await decodeImage(await raw(3, smooth).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer());
  assert.deepEqual(shape(jpg), [8, 8, 3]);
  let sum = 0;
  for (let i = 0; i < smooth.length; i++) sum += Math.abs(jpg.data[i]! - smooth[i]!);
  assert.ok(sum / smooth.length < 3, `jpeg mean abs difference ${sum / smooth.length}`);
});

test("greyscale (8- and 16-bit) becomes three equal channels", async () => {
  const grey = Buffer.from(Array.from({ length: W * H }, (_, i) => i * 4));
  const png = await raw(1, grey).toColourspace("b-w").png().toBuffer();
  assert.equal((await sharp(png).metadata()).channels, 1, "the test image really is single-channel");
  const img = await decodeImage(png);
  assert.deepEqual(shape(img), [8, 8, 3]);
  for (let i = 0; i < W * H; i++) assert.deepEqual([...img.data.subarray(i * 3, i * 3 + 3)], [grey[i], grey[i], grey[i]]);
  const png16 = await raw(1, grey).toColourspace("grey16").png().toBuffer();
  assert.equal((await sharp(png16).metadata()).depth, "ushort");
  assert.equal(maxDiff((await decodeImage(png16)).data, img.data), 0);
});

test("alpha is flattened onto white: transparent → white, opaque → colour, half → blend", async () => {
  const rgba = Buffer.alloc(W * H * 4);
  const alphas = [0, 255, 128, 64];
  for (let i = 0; i < W * H; i++) rgba.set([200, 100, 50, alphas[i % 4]!], i * 4);
  const png = await raw(4, rgba).png().toBuffer();
  assert.equal((await sharp(png).metadata()).hasAlpha, true);
  const img = await decodeImage(png);
  assert.deepEqual(shape(img), [8, 8, 3]);
  const blend = (c: number, a: number) => (c * a + 255 * (255 - a)) / 255;
  for (let i = 0; i < 4; i++) {
    const got = [...img.data.subarray(i * 3, i * 3 + 3)];
    const want = [200, 100, 50].map((c) => blend(c, alphas[i]!));
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c]! - want[c]!) <= 1, `alpha ${alphas[i]}: got ${got}, want ${want}`);
  }
  // greyscale + alpha as well
  const ga = Buffer.alloc(W * H * 2);
  for (let i = 0; i < W * H; i++) ga.set([40, i % 2 === 0 ? 0 : 255], i * 2);
  const gaPng = await sharp(ga, { raw: { width: W, height: H, channels: 2 } }).png().toBuffer();
  const gaImg = await decodeImage(gaPng);
  assert.deepEqual([...gaImg.data.subarray(0, 6)], [255, 255, 255, 40, 40, 40]);
});

test("a CMYK JPEG is converted to sRGB", async () => {
  const cmyk = await raw(3, rgb).toColourspace("cmyk").jpeg({ quality: 100 }).toBuffer();
  const meta = await sharp(cmyk).metadata();
  assert.equal(meta.space, "cmyk");
  assert.equal(meta.channels, 4);
  const img = await decodeImage(cmyk);
  assert.deepEqual(shape(img), [8, 8, 3]);
  // a colour-managed round trip through CMYK is not exact, but the picture is the same
  let sum = 0;
  for (let i = 0; i < rgb.length; i++) sum += Math.abs(img.data[i]! - rgb[i]!);
  assert.ok(sum / rgb.length < 40, `mean abs difference ${sum / rgb.length}`);
});

test("corrupt images: a truncated JPEG, random bytes and a missing file are ImageDecodeErrors, or counted skips", async () => {
  const jpg = await raw(3, rgb).jpeg().toBuffer();
  const truncated = jpg.subarray(0, Math.floor(jpg.length * 0.6));
  const random = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7919 + 13) % 251));
  await assert.rejects(decodeImage(truncated), (e: unknown) => e instanceof ImageDecodeError && /cannot decode image bytes \(\d+ bytes\)/.test(e.message));
  await assert.rejects(decodeImage({ kind: "bytes", bytes: random, name: "000000007.jpg" }), (e: unknown) => e instanceof ImageDecodeError && /000000007\.jpg \(300 bytes\)/.test(e.message));
  await assert.rejects(decodeImage({ kind: "file", path: "/no/such/image.png" }), /cannot decode \/no\/such\/image\.png/);

  const errors = new SkipCounter("images");
  assert.equal(await decodeOrSkip({ image: truncated, source: { file: "00000.tar", record: "key 000000001" } }, errors), null);
  assert.ok((await decodeOrSkip({ image: jpg, source: { file: "00000.tar", record: "key 000000002" } }, errors)) !== null);
  const r = errors.report();
  assert.equal(r.seen, 2);
  assert.equal(r.skipped, 1);
  assert.deepEqual(r.examples[0]!.source, { file: "00000.tar", record: "key 000000001" });
  assert.match(r.examples[0]!.reason, /premature end of JPEG/);
});

test("decodeBatch keeps input order, nulls the bad ones, and stops past the error rate", async () => {
  const good = await raw(3, rgb).png().toBuffer();
  const bad = Buffer.from("not an image");
  const items = [good, bad, good, good, bad, good].map((image, i) => ({ image, source: { file: "batch", record: `item ${i}` } }));
  const errors = new SkipCounter("images");
  const out = await decodeBatch(items, { errors, concurrency: 2 });
  assert.deepEqual(out.map((o) => o !== null), [true, false, true, true, false, true]);
  assert.equal(maxDiff(out[5]!.data, rgb), 0);
  assert.deepEqual(errors.report().examples.map((e) => e.source.record), ["item 1", "item 4"]);
  const strict = new SkipCounter("images", { maxErrorRate: 0.2 });
  strict.expectTotal(items.length);
  await assert.rejects(decodeBatch(items, { errors: strict, concurrency: 1 }), (e: unknown) => e instanceof ErrorRateExceeded && /stopped reading images: 2 of its 6 records are malformed \(33\.33% even if the 1 not yet read are all good\)/.test(e.message));
  await assert.rejects(decodeBatch(items, { errors, concurrency: 0 }), /concurrency must be a positive integer/);
});

test("every fixture image decodes to 8×8 RGB: files, tar members and parquet cells", async () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const n of readdirSync(dir)) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(jpg|png|webp)$/.test(n)) files.push(p);
    }
  };
  walk(X);
  const refs = files.map((path) => ({ image: { kind: "file" as const, path }, source: { file: path, record: "" } }));
  for await (const p of readWebDataset({ shards: join(X, "webdataset/{00000..00001}.tar") })) refs.push({ image: p.image as never, source: p.source });
  for await (const item of readBlink({ files: join(X, "blink/Jigsaw") })) for (const image of item.images) refs.push({ image: image as never, source: item.source });
  assert.equal(refs.length, 24 + 6 + 9, "24 files (9 of them the BLINK JSONL fixture's), 6 tar members, 3 BLINK parquet items × 3 images");
  const errors = new SkipCounter("images");
  const out = await decodeBatch(refs, { errors });
  assert.equal(errors.skipped, 0, errors.summary());
  for (const img of out) assert.deepEqual(shape(img!), [8, 8, 3]);
});
