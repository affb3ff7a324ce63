import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { VitVisionModel } from "../../models/vit.js";
import { linearProbe } from "../../analysis/probes.js";
import { readBlinkJsonl, type BlinkItem } from "../../data/formats/index.js";
import { ImageBank, readPreprocessor, readScenes } from "./common.js";
import { placeTargets, runWorldEncoder, WorldEncoderRecipe } from "./world_encoder.js";

/** A 2-layer encoder of `world` trained for 250 steps; its 16 px patches are one token per cell of 48 px scenes. */
function tinyEncoder(world: string, out: string, options: { read_position?: boolean; read_views?: boolean }) {
  return runWorldEncoder(WorldEncoderRecipe.parse({
    stage: "world-encoder", world, out, ...options,
    encoder: { hidden_size: 64, intermediate_size: 128, layers: 2, heads: 4, patch_size: 16 },
    train: { steps: 250, batch_size: 32, lr: 3e-3, warmup_steps: 10, log_every: 50 },
  }), { quiet: true });
}

test("placeTargets: each cell's row and column, one-hot, row-major", () => {
  const t = placeTargets();
  assert.equal(t.length, 9 * 6);
  assert.deepEqual(t.slice(0, 6), [1, 0, 0, 1, 0, 0], "top left: row 0, column 0");
  assert.deepEqual(t.slice(5 * 6, 6 * 6), [0, 1, 0, 0, 0, 1], "cell 5: row 1, column 2");
  assert.deepEqual(t.slice(8 * 6), [0, 0, 1, 0, 0, 1], "bottom right");
});

test("read_position: the encoder's cell tokens say which cell they are, and still read the attributes", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-encoder-place-"));
  try {
    // 48 px scenes and 16 px patches: one token per cell of the 3×3 layout.
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 120, seed: 5, size: 48, latents: 9, workers: 0, log: () => {} }));
    const scenes = readScenes(world);
    const fit = scenes.filter((s) => s.split === "train"), held = scenes.filter((s) => s.split !== "train");
    /** The encoder's train F1, and a linear probe's held-out accuracy at naming a token's cell (fitted on the training scenes). */
    const trained = async (readPosition: boolean) => {
      const enc = await tinyEncoder(world, join(root, `enc-${readPosition}`), { read_position: readPosition });
      const encoder = VitVisionModel.fromPretrained(enc.encoderDir);
      const bank = await ImageBank.load(scenes.map((s) => join(world, "images", s.file_name)), readPreprocessor(enc.encoderDir));
      try {
        const cellAccuracy = torch.noGrad(() => torch.scope(() => {
          const tokens = (split: typeof scenes) => encoder.features(bank.get(split.map((s) => join(world, "images", s.file_name))), -1).reshape(-1, 64); // [n × 9, D]
          const cells = (split: typeof scenes) => split.flatMap(() => Array.from({ length: 9 }, (_, c) => String(c)));
          return linearProbe(tokens(fit), cells(fit), tokens(held), cells(held)).accuracy;
        }));
        return { f1: enc.trainF1, cellAccuracy };
      } finally {
        bank.dispose();
        encoder.parameters().forEach((p) => p.dispose());
      }
    };
    const shared = await trained(false), placed = await trained(true);
    assert.ok(placed.f1 >= 0.9, `the attributes are still read: train F1 ${placed.f1.toFixed(3)}`);
    // One read-out shared by every cell leaves the tokens nearly position-free (25% here, chance 11%).
    assert.ok(placed.cellAccuracy >= 0.85 && placed.cellAccuracy > shared.cellAccuracy + 0.4,
      `a held-out token's cell is read linearly: ${(100 * placed.cellAccuracy).toFixed(1)}% with read_position, ${(100 * shared.cellAccuracy).toFixed(1)}% without`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("read_views: the encoder reads the jigsaw views, and the piece nearer the first image is the missing one", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-encoder-views-"));
  try {
    const world = join(root, "world");
    await generateWorld(resolveWorldOptions({ out: world, scenes: 300, seed: 6, size: 48, latents: 9, workers: 0, log: () => {} }));
    const items: BlinkItem[] = [];
    for (const split of ["val", "test", "test_novel"]) {
      for await (const item of readBlinkJsonl({ file: join(world, "blink", "Jigsaw", `${split}.jsonl`) })) items.push(item);
    }
    const paths = items.flatMap((it) => it.images.slice(0, 3).map((im) => {
      if (im.kind !== "file") throw new Error(`jigsaw item ${it.id}: the world writes image files`);
      return im.path;
    }));
    /** The share of held-out jigsaw items whose true piece is the one nearer (L2 over all cells) to the first image. */
    const nearestRight = async (readViews: boolean) => {
      const enc = await tinyEncoder(world, join(root, `enc-${readViews}`), { read_views: readViews });
      const done = JSON.parse(readFileSync(join(enc.encoderDir, "DONE"), "utf8")) as { valViewF1?: Record<string, number> };
      assert.equal(done.valViewF1 !== undefined, readViews, "the views' F1 is recorded with read_views");
      const encoder = VitVisionModel.fromPretrained(enc.encoderDir);
      const bank = await ImageBank.load(paths, readPreprocessor(enc.encoderDir));
      try {
        const nearerSecond = torch.noGrad(() => torch.scope(() => {
          const f = encoder.features(bank.get(paths), -1).reshape(items.length, 3, -1); // [n, 3, 9 × D]
          const first = f.select(1, 0);
          return Array.from(first.sub(f.select(1, 1)).square().sum(1).lt(first.sub(f.select(1, 2)).square().sum(1)).toTypedArray(), Boolean);
        }));
        return { f1: enc.trainF1, nearest: nearerSecond.filter((second, i) => second === (items[i]!.answerIndex === 0)).length / items.length };
      } finally {
        bank.dispose();
        encoder.parameters().forEach((p) => p.dispose());
      }
    };
    const scenesOnly = await nearestRight(false), views = await nearestRight(true);
    t.diagnostic(`nearer piece right: ${(100 * views.nearest).toFixed(1)}% with read_views, ${(100 * scenesOnly.nearest).toFixed(1)}% without; train F1 ${views.f1.toFixed(3)} / ${scenesOnly.f1.toFixed(3)}`);
    assert.ok(items.length >= 40, `enough held-out items: ${items.length}`);
    assert.ok(views.f1 >= 0.8, `whole scenes are still read: train F1 ${views.f1.toFixed(3)} (${scenesOnly.f1.toFixed(3)} without read_views)`);
    assert.ok(views.nearest >= 0.85 && views.nearest > scenesOnly.nearest + 0.1,
      `the nearer piece is the missing one: ${(100 * views.nearest).toFixed(1)}% of ${items.length} with read_views, ${(100 * scenesOnly.nearest).toFixed(1)}% without`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
