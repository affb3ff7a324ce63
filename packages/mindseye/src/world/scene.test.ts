import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import {
  COLORS, HELD_OUT, SHAPES, SPLITS, isHeldOut, matching, related, sampleScene, uniqueDesc, type Scene, type SceneObject, type Split,
} from "./scene.js";
import { assignSplits, MIN_SCENES } from "./splits.js";

function scenes(split: Split, n: number, seed = 3): Scene[] {
  return Array.from({ length: n }, (_, i) => sampleScene(new Rng(seed, "scene", i + 1), i + 1, split, 64));
}

const overlap = (a: SceneObject, b: SceneObject) => Math.abs(a.x - b.x) < a.r + b.r && Math.abs(a.y - b.y) < a.r + b.r;

test("scenes have 1–6 objects, inside the image, one per grid cell, never overlapping", () => {
  const counts = new Set<number>();
  for (const split of SPLITS) {
    for (const s of scenes(split, 300)) {
      const n = s.objects.length;
      counts.add(n);
      assert.ok(n >= 1 && n <= 6, `scene ${s.id} has ${n} objects`);
      assert.equal(new Set(s.objects.map((o) => `${o.row},${o.col}`)).size, n, "two objects share a cell");
      for (const o of s.objects) {
        assert.ok(o.x - o.r >= 0 && o.x + o.r <= 1 && o.y - o.r >= 0 && o.y + o.r <= 1, `object ${o.id} of scene ${s.id} leaves the image`);
        assert.equal(Math.floor(o.x * 3), o.col);
        assert.equal(Math.floor(o.y * 3), o.row);
      }
      for (const a of s.objects) for (const b of s.objects) if (a !== b) assert.ok(!overlap(a, b), `objects ${a.id} and ${b.id} of scene ${s.id} overlap`);
      assert.equal(s.imageId, String(s.id).padStart(12, "0"));
      assert.equal(s.file_name, `${s.imageId}.png`);
    }
  }
  assert.deepEqual([...counts].sort(), [1, 2, 3, 4, 5, 6]);
});

test("held-out colour×shape pairs never occur outside test_novel; every test_novel scene has one", () => {
  for (const split of ["train", "val", "test"] as const) {
    for (const s of scenes(split, 500)) for (const o of s.objects) assert.ok(!isHeldOut(o.color, o.shape), `${o.color} ${o.shape} in ${split}`);
  }
  const seen = new Set<string>();
  for (const s of scenes("test_novel", 300)) {
    const novel = s.objects.filter((o) => isHeldOut(o.color, o.shape));
    assert.ok(novel.length >= 1, `test_novel scene ${s.id} has no held-out pair`);
    for (const o of novel) seen.add(`${o.color} ${o.shape}`);
  }
  assert.equal(seen.size, HELD_OUT.length, "every held-out pair appears in test_novel");
  // Each colour and each shape still appears in training, just not in those pairs.
  const train = scenes("train", 500).flatMap((s) => s.objects);
  for (const c of COLORS) assert.ok(train.some((o) => o.color === c));
  for (const sh of SHAPES) assert.ok(train.some((o) => o.shape === sh));
});

test("relations compare grid cells, with a visible margin", () => {
  for (const s of scenes("train", 300)) {
    for (const a of s.objects) for (const b of s.objects) {
      if (related(a, "left", b)) assert.ok(b.x - a.x >= a.r + b.r, "left-of pair too close");
      if (related(a, "above", b)) assert.ok(b.y - a.y >= a.r + b.r, "above pair too close");
      assert.equal(related(a, "left", b), related(b, "right", a));
      assert.equal(related(a, "above", b), related(b, "below", a));
    }
  }
});

test("uniqueDesc names exactly one object, from the allowed kinds", () => {
  const rng = new Rng(5);
  let found = 0;
  for (const s of scenes("train", 200)) {
    for (const o of s.objects) {
      const d = uniqueDesc(s.objects, o, ["size", "color", "material"], rng);
      if (!d) {
        // Only when another object has the same size, colour and material.
        assert.ok(s.objects.some((p) => p !== o && p.size === o.size && p.color === o.color && p.material === o.material));
        continue;
      }
      found++;
      assert.equal(d.shape, undefined);
      assert.deepEqual(matching(s, d), [o]);
      const withShape = uniqueDesc(s.objects, o, ["color", "shape"], rng, { required: ["shape"] });
      if (withShape) assert.equal(withShape.shape, o.shape);
    }
  }
  assert.ok(found > 500);
});

test("splits have the planned sizes and depend on the seed", () => {
  const a = assignSplits(1000, 1);
  assert.equal(a.length, 1000);
  assert.deepEqual(SPLITS.map((s) => a.filter((x) => x === s).length), [700, 100, 100, 100]);
  assert.notDeepEqual(a, assignSplits(1000, 2));
  assert.deepEqual(a, assignSplits(1000, 1));
  const small = assignSplits(MIN_SCENES, 0);
  for (const s of SPLITS) assert.ok(small.includes(s), `${s} empty with ${MIN_SCENES} scenes`);
  assert.throws(() => assignSplits(MIN_SCENES - 1, 0), /at least/);
});
