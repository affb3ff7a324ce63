// report.html of a tiny study, opened in headless Chromium (Debian's `chromium`, which
// scripts/setup.sh installs for make test; driven by playwright-core, which downloads no browser): the page loads
// with no console errors and no request leaves the file, every plot is there and drawn, the
// contact sheets decode, and a screenshot is not blank. Also `mindseye analyze` on the same study.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import sharp from "sharp";
import { chromium } from "playwright-core";
import { StudyConfig, runStudy } from "./runner.js";
import { analyzeStudy, formatAnalysis, type StudyAnalysis } from "../analysis/study.js";
import { writeHtmlReport } from "./report_html.js";

/** Debian's chromium (scripts/setup.sh installs it under MINDSEYE_WITH_CHROMIUM=1, as make test sets); MINDSEYE_CHROMIUM names another. */
const CHROMIUM = process.env.MINDSEYE_CHROMIUM ?? "/usr/bin/chromium";

let root = "", study = "", analysis: StudyAnalysis;

before(async () => {
  root = mkdtempSync(join(tmpdir(), "mindseye-report-html-"));
  study = join(root, "study");
  await runStudy(StudyConfig.parse({
    name: "tiny", out: study, world: { scenes: 120, size: 32, latents: 4 },
    world_encoder: { encoder: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, patch_size: 16 }, train: { steps: 2, batch_size: 8 } },
    vlm_base: { lm: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, kv_heads: 1 }, train: { steps: 2, batch_size: 8 } },
    latent_pretrain: { pool: "grid:4", train: { steps: 2, batch_size: 8 } },
    finetune: { train: { steps: 2, batch_size: 8 } },
    fractions: [0.5, 1], seeds: [0, 1],
    eval: { tasks: ["world_gqa"], splits: ["test"], limit: 4, batch_size: 4 },
  }), { log: () => {} });
  analysis = await analyzeStudy({ study, trainCaptions: 200, sheets: 2 });
});
after(() => rmSync(root, { recursive: true, force: true }));

test("analyze: every model probed and clustered, the latent head aligned and projected, correlations over the three arms", () => {
  const saved = JSON.parse(readFileSync(join(study, "analysis.json"), "utf8")) as StudyAnalysis;
  assert.deepEqual(saved.models.map((m) => [m.arm, m.stage, m.latentHead]), [["baseline", "base", false], ["control", "pretrained", false], ["latent", "pretrained", true]]);
  for (const arm of ["baseline", "control", "latent"]) {
    assert.ok(saved.alignment[arm]!.readout.n === saved.captions.test, `${arm} readout`);
    for (const at of saved.attributes) assert.ok(saved.probes[arm]![at].accuracy >= 0 && saved.probes[arm]![at].accuracy <= 1);
  }
  assert.ok(saved.alignment.latent!.head && saved.alignment.latent!.meanPrediction && !saved.alignment.control!.head);
  assert.deepEqual(Object.keys(saved.collapse), ["latent"]);
  assert.deepEqual(saved.structure.map((s) => `${s.space}:${s.arm}`), ["real:null", "hidden:baseline", "hidden:control", "hidden:latent", "imagined:latent"]);
  assert.deepEqual(saved.projections.map((p) => p.method), ["pca", "umap"]);
  assert.equal(saved.projections[0]!.points.length, 2 * saved.captions.test);
  assert.ok(saved.efficiency!.length === 6, "3 arms × 2 fractions");
  assert.ok(saved.correlations!.some((c) => c.measure === "readout recall@1" && c.points.length === 3));
  assert.equal(saved.sheets.length, 2);
  assert.match(formatAnalysis(analysis), /probes \(held-out accuracy[\s\S]*alignment ↔ accuracy/);
});

test("report.html opens in headless Chromium with every plot drawn, no console error, no request out, and a non-blank screenshot", async () => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(`Chromium not found at ${CHROMIUM}: run "MINDSEYE_WITH_CHROMIUM=1 bash scripts/setup.sh" (make test does), which installs Debian's chromium for this test (or set MINDSEYE_CHROMIUM to a Chromium binary)`);
  }
  const path = await writeHtmlReport(study);
  assert.equal(path, join(study, "report.html"));
  const html = readFileSync(path, "utf8");
  assert.deepEqual([...html.matchAll(/(?:src|href)="(?!data:|#)([^"]*)"/g)].map((m) => m[1]), [], "self-contained: no external references");
  const changes = [...html.matchAll(/<td>world_gqa\/test<\/td><td>(\w+) − (\w+)<\/td><td>1 − 0\.5<\/td>/g)].map((m) => `${m[1]}−${m[2]}`);
  assert.deepEqual(changes.sort(), ["control−baseline", "latent−baseline", "latent−control"], "each difference's change with data");

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [], outside: string[] = [];
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("request", (r) => { if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) outside.push(r.url()); });
    await page.goto(pathToFileURL(path).href, { waitUntil: "load" });
    assert.deepEqual(errors, [], "no console errors");
    assert.deepEqual(outside, [], "no request leaves the file");

    const plots = await page.$$eval("figure.plot", (figs) => figs.map((f) => {
      const svg = f.querySelector("svg");
      const box = svg?.getBoundingClientRect();
      return { name: f.getAttribute("data-plot"), width: box?.width ?? 0, height: box?.height ?? 0, marks: svg ? svg.querySelectorAll("path, circle, rect, line").length : 0 };
    }));
    const names = plots.map((p) => p.name);
    for (const want of ["efficiency-world_gqa/test", "collapse-std", "alignment-accuracy", "probes", "projection-latent-pca", "projection-latent-umap", "training-vlm-base", "training-pretrain-latent"]) {
      assert.ok(names.includes(want), `plot ${want} is in the report (plots: ${names.join(", ")})`);
    }
    for (const p of plots) assert.ok(p.width > 50 && p.height > 50 && p.marks > 10, `plot ${p.name} is drawn: ${JSON.stringify(p)}`);
    const images = await page.$$eval("img", (imgs) => imgs.map((i) => ({ ok: i.complete, w: i.naturalWidth })));
    assert.equal(images.length, 2);
    for (const im of images) assert.ok(im.ok && im.w > 0, "contact sheet decodes");

    const shot = await page.screenshot({ fullPage: false });
    const { channels } = await sharp(shot).stats();
    const spread = Math.max(...channels.map((c) => c.stdev));
    assert.ok(spread > 10, `the screenshot is not blank (pixel std ${spread.toFixed(1)})`);
  } finally {
    await browser.close();
  }
});
