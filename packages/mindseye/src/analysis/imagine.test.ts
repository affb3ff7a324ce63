// `mindseye imagine` end to end on a tiny world with a latent model trained for a few steps, and
// the contact sheet's layout and pixel font.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { torch } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { loadStageRecipe, runRecipe } from "../train/stages/index.js";
import { decodeImage } from "../data/images.js";
import { resolveLatentRun, loadImaginer, disposeImaginer, imagineLatents, latentSimilarity, loadGallery, worldGallery, runTargetStats } from "./retrieval.js";
import { imagine, contactSheet, drawText, sheetLabel, SHEET } from "./imagine.js";
import { formatImagine } from "../cli/imagine.js";

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "configs"); // dist/analysis -> repo root
const CAPTION = "a small red circle left of a large blue square";
let root = "", study = "", world = "";

before(async () => {
  root = mkdtempSync(join(tmpdir(), "mindseye-imagine-"));
  study = join(root, "study");
  world = join(study, "world");
  const stages = join(study, "stages");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 240, seed: 5, size: 32, latents: 4, workers: 0, log: () => {} }));
  const run = (name: string, sets: string[]) => runRecipe(loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=4", "train.batch_size=8", ...sets]), { quiet: true });
  const encoder = await run("world-encoder", [`out=${join(stages, "world-encoder")}`]);
  const base = await run("vlm-base", [`encoder=${encoder}`, `out=${join(stages, "vlm-base")}`]);
  await run("latent-pretrain", [`encoder=${encoder}`, `base=${base}`, `targets=${join(stages, "targets-grid4")}`, `out=${join(stages, "pretrain-latent")}`, "pool=grid:4"]);
  writeFileSync(join(study, "study.resolved.json"), "{}\n");
});
after(() => rmSync(root, { recursive: true, force: true }));

/** RGB of pixel (x, y) of a decoded image. */
const pixel = (d: { data: Uint8Array; width: number }, x: number, y: number) => [...d.data.subarray((y * d.width + x) * 3, (y * d.width + x) * 3 + 3)];

test("imagine a caption with a study folder: the top k test images by mean cosine over K, and their contact sheet", async () => {
  const out = join(root, "sheets", "study.png");
  const r = await imagine({ run: study, caption: CAPTION, k: 5, out, cacheRoot: join(root, "cache") });
  assert.equal(r.sheet, out);
  assert.deepEqual(r.top.map((t) => t.rank), [1, 2, 3, 4, 5]);
  for (let i = 1; i < r.top.length; i++) assert.ok(r.top[i - 1]!.similarity >= r.top[i]!.similarity);
  assert.deepEqual([r.latents, r.gallery.name, r.unknownTokens], [{ k: 4, d: 96 }, "world-test", 0]);
  assert.match(formatImagine(r), /rank {2}similarity[\s\S]*contact sheet: /);

  // The best image is the argmax of the similarity matrix computed on its own.
  const s = resolveLatentRun(study);
  const g = await loadGallery({ spec: worldGallery(world, "test"), encoderDir: s.encoderDir, pool: s.pool, targetNorm: s.targetNorm, cacheRoot: join(root, "cache"), ...runTargetStats(s) });
  const im = loadImaginer(s.modelDir);
  const sims = torch.scope(() => Array.from(latentSimilarity(imagineLatents(im, [CAPTION]), g.latents).toFloat64Values()));
  disposeImaginer(im);
  const best = sims.indexOf(Math.max(...sims));
  assert.equal(r.top[0]!.id, g.ids[best]);
  assert.ok(Math.abs(r.top[0]!.similarity - sims[best]!) < 1e-6);
  g.latents.dispose();

  // The sheet: 5 cells of 128 px in a row, label strips under them; cell 1 is image 1 scaled ×4.
  const meta = await sharp(out).metadata();
  const { cell, gap, margin, fontScale } = SHEET;
  assert.deepEqual([meta.format, meta.width, meta.height], ["png", 2 * margin + 5 * cell + 4 * gap, 2 * margin + cell + 5 * fontScale + 2 * gap]);
  const sheet = await decodeImage({ kind: "file", path: out });
  const first = await decodeImage({ kind: "file", path: r.top[0]!.path });
  for (const [x, y] of [[0, 0], [5, 17], [31, 31], [16, 8]] as const) {
    assert.deepEqual(pixel(sheet, margin + 4 * x + 2, margin + 4 * y + 1), pixel(first, x, y), `image pixel (${x}, ${y})`);
  }
  // the label "#1 0.xxx" drawn under cell 1, exactly as drawText draws it
  const labelW = cell, labelH = 5 * fontScale;
  const want = Buffer.alloc(labelW * labelH * 3, SHEET.background);
  drawText(want, labelW, 0, 0, sheetLabel(1, r.top[0]!.similarity), fontScale, SHEET.ink);
  for (let y = 0; y < labelH; y++) {
    for (let x = 0; x < labelW; x++) assert.equal(sheet.data[((margin + cell + gap + y) * sheet.width + margin + x) * 3], want[(y * labelW + x) * 3], `label (${x}, ${y})`);
  }

  // The same model given as its directory finds the same images.
  const m = await imagine({ run: s.modelDir, caption: CAPTION, k: 5, out: join(root, "sheets", "model.png"), cacheRoot: join(root, "cache") });
  assert.deepEqual(m.top.map((t) => t.id), r.top.map((t) => t.id));
});

test("a folder of images as the gallery; unknown words are counted; bad arguments are refused", async () => {
  const folder = join(root, "folder");
  mkdirSync(folder);
  const images = readdirSync(join(world, "images")).sort().slice(0, 6);
  images.forEach((f) => copyFileSync(join(world, "images", f), join(folder, f)));
  writeFileSync(join(folder, "notes.txt"), "not an image");
  const r = await imagine({ run: study, caption: "a zorblax circle", galleryDir: folder, k: 8, out: join(root, "sheets", "folder.png"), cacheRoot: join(root, "cache") });
  assert.equal(r.gallery.images, 6);
  assert.equal(r.top.length, 6, "k larger than the gallery shows the whole gallery");
  assert.deepEqual(r.top.map((t) => t.path).sort(), images.map((f) => join(folder, f)));
  assert.equal(r.unknownTokens, 1);
  assert.ok(existsSync(r.sheet));
  await assert.rejects(imagine({ run: study, caption: CAPTION, k: 0 }), (e: unknown) => e instanceof ConfigError && /--k must be a positive integer/.test(e.message));
  await assert.rejects(imagine({ run: study, caption: CAPTION, galleryDir: join(root, "missing") }), /gallery .*missing: not a directory/);
  await assert.rejects(imagine({ run: join(study, "stages", "vlm-base"), caption: CAPTION }), /"vlm-base" run, not latent-pretrain/);
});

test("contact sheet: rows of at most 8; the pixel font draws its glyphs and refuses other characters", async () => {
  const buf = Buffer.alloc(3 * 5 * 3, 255);
  drawText(buf, 3, 0, 0, "7", 1, 0);
  const ink = [...Array(15).keys()].map((i) => (buf[i * 3] === 0 ? "1" : "0")).join("");
  assert.equal(ink, "111" + "001" + "001" + "001" + "001");
  assert.throws(() => drawText(buf, 3, 0, 0, "a", 1, 0), /no glyph for "a"/);
  assert.equal(sheetLabel(12, -0.0513), "#12 -0.051");
  const img = join(world, "images", readdirSync(join(world, "images"))[0]!);
  const items = Array.from({ length: 10 }, (_, i) => ({ rank: i + 1, path: img, similarity: 0.5 }));
  const size = await contactSheet(items, join(root, "sheets", "ten.png"));
  const { cell, gap, margin, fontScale } = SHEET;
  assert.deepEqual(size, { width: 2 * margin + 8 * cell + 7 * gap, height: 2 * margin + 2 * (cell + 5 * fontScale + 2 * gap) + gap });
  const meta = await sharp(join(root, "sheets", "ten.png")).metadata();
  assert.deepEqual([meta.width, meta.height], [size.width, size.height]);
});
