import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { torch } from "@mindseye/torch";
import { ErrorRateExceeded } from "../../data/formats/index.js";
import { processorConfigFromHf } from "../../models/processors.js";
import { ImageBank, pixelCache, worldPreprocessorJson } from "./common.js";

test("ImageBank skips and counts an undecodable image (once), loads the rest, and drops the examples that use it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bank-"));
  try {
    const paths = await Promise.all([0, 1, 2].map(async (i) => {
      const p = join(dir, `${i}.png`);
      await sharp(Buffer.alloc(8 * 8 * 3, 40 * (i + 1)), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(p);
      return p;
    }));
    const broken = join(dir, "broken.png");
    writeFileSync(broken, "not a png");
    const pre = processorConfigFromHf(worldPreprocessorJson(8));
    const examples = [{ q: "a", image: paths[0]! }, { q: "b", image: broken }, { q: "c", image: paths[1]! }, { q: "d", image: broken }, { q: "e", image: paths[2]! }];

    const bank = await ImageBank.load(examples.map((e) => e.image), pre, { maxErrorRate: 0.3 });
    assert.deepEqual([bank.has(paths[0]!), bank.has(broken), bank.has(paths[2]!)], [true, false, true]);
    assert.equal(bank.skipped.length, 1, "one image, used twice, is one skip");
    assert.equal(bank.skipped[0]!.source.file, broken);
    assert.match(bank.skipped[0]!.reason, /cannot decode .*broken\.png/);
    assert.deepEqual([...bank.skippedPaths()], [broken]);
    assert.match(bank.summary(), /images: 1 of 4 records skipped \(25%\)/);
    assert.deepEqual(bank.keep(examples, (e) => [e.image]).map((e) => e.q), ["a", "c", "e"]);
    const px = bank.get([paths[2]!, paths[0]!]);
    assert.deepEqual(px.shape, [2, 3, 8, 8]);
    assert.ok(torch.scope(() => px.select(0, 0).mean().item()) > torch.scope(() => px.select(0, 1).mean().item()), "rows follow the paths asked for");
    px.dispose();
    assert.throws(() => bank.get([broken]), /image .*broken\.png was skipped \(it could not be decoded\); drop the examples that use it \(ImageBank\.keep\)/);
    bank.dispose();

    // past the rate over the distinct images the load stops, naming the image and the recipe key
    await assert.rejects(ImageBank.load(examples.map((e) => e.image), pre), (e: unknown) => e instanceof ErrorRateExceeded
      && /1 of its 4 records are malformed \(25%/.test(e.message) && /broken\.png/.test(e.message) && /max_error_rate in the stage's recipe/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ImageBank reuses the pixels of images already loaded in the process, and decodes a rewritten file or another preprocessing afresh", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bank-cache-"));
  const png = (p: string, value: number) => sharp(Buffer.alloc(8 * 8 * 3, value), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(p);
  try {
    const [a, b] = [join(dir, "a.png"), join(dir, "b.png")];
    await png(a, 40);
    await png(b, 200);
    const pre8 = processorConfigFromHf(worldPreprocessorJson(8)), pre4 = processorConfigFromHf(worldPreprocessorJson(4));
    const cache = pixelCache();
    cache.clear();
    const mean = (bank: ImageBank, p: string) => torch.scope(() => bank.get([p]).mean().item());

    const first = await ImageBank.load([a, b], pre8);
    assert.equal(cache.size, 2);
    const second = await ImageBank.load([b, a, a], pre8);
    assert.equal(cache.size, 2, "the second load decodes nothing new");
    assert.deepEqual(second.get([a, b]).toFloat32Array(), first.get([a, b]).toFloat32Array(), "cached pixels equal freshly decoded ones");
    assert.ok(mean(second, b) > mean(second, a), "rows follow the paths, not the cache's order");

    const small = await ImageBank.load([a], pre4);
    assert.deepEqual(small.get([a]).shape, [1, 3, 4, 4], "another preprocessing is its own entry");
    assert.equal(cache.size, 3);

    await new Promise((r) => setTimeout(r, 20)); // a later modification time
    await png(a, 250);
    const rewritten = await ImageBank.load([a], pre8);
    assert.ok(mean(rewritten, a) > mean(first, a), "a rewritten file is decoded again");
    [first, second, small, rewritten].forEach((x) => x.dispose());
  } finally {
    pixelCache().clear();
    rmSync(dir, { recursive: true, force: true });
  }
});
