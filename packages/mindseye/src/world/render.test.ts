import { test } from "node:test";
import assert from "node:assert/strict";
import { COLORS, MATERIALS, SHAPES, type Color, type Material, type Scene, type Shape } from "./scene.js";
import { BACKGROUND, COLOR_RGB, drawScene, renderScene } from "./render.js";
import { insideShape } from "./shapes.js";

const SIZE = 64;
function one(shape: Shape, color: Color, material: Material): Scene {
  return {
    id: 1, imageId: "000000000001", file_name: "000000000001.png", split: "train", width: SIZE, height: SIZE,
    objects: [{ id: 0, shape, color, material, size: "large", x: 0.5, y: 0.5, r: 0.14, row: 1, col: 1 }],
  };
}
/** RGB pixels of a rendered scene. */
function rgb(scene: Scene): (x: number, y: number) => [number, number, number] {
  const d = drawScene(scene, SIZE).getContext("2d").getImageData(0, 0, SIZE, SIZE).data;
  return (x, y) => [d[(y * SIZE + x) * 4]!, d[(y * SIZE + x) * 4 + 1]!, d[(y * SIZE + x) * 4 + 2]!];
}
const dist = (a: readonly number[], b: readonly number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);
const bg = [0x8c, 0x8c, 0x8c];

test("PNG output depends only on the scene", () => {
  const s = one("star", "red", "metal");
  assert.deepEqual(renderScene(s, SIZE), renderScene(s, SIZE));
  assert.notDeepEqual(renderScene(s, SIZE), renderScene(one("star", "blue", "metal"), SIZE));
  assert.equal(BACKGROUND, "#8c8c8c");
  assert.deepEqual(rgb(s)(1, 1), bg);
});

test("materials look different: flat rubber, graded metal, striped wood, see-through glass", () => {
  const c = 32; // the object's centre
  const px = Object.fromEntries(MATERIALS.map((m) => [m, rgb(one("square", "blue", m))])) as Record<Material, ReturnType<typeof rgb>>;
  // Rubber: the inside is one colour.
  assert.ok(dist(px.rubber(c - 4, c - 4), px.rubber(c + 4, c + 4)) < 2);
  // Metal: lighter towards the top left than the bottom right.
  const sum = (p: number[]) => p[0]! + p[1]! + p[2]!;
  assert.ok(sum(px.metal(c - 5, c - 3)) > sum(px.metal(c + 5, c + 5)) + 60);
  // Wood: a column through the middle crosses dark and light grain.
  const column = Array.from({ length: 14 }, (_, i) => sum(px.wood(c, c - 7 + i)));
  assert.ok(Math.max(...column) - Math.min(...column) > 100);
  // Glass: the centre is a mix of the colour and the background.
  const g = px.glass(c + 3, c + 3), blue = COLOR_RGB.blue;
  assert.ok(dist(g, blue) > 40 && dist(g, bg) > 40, `glass centre ${g}`);
  // Any two materials differ clearly somewhere inside the object.
  for (const a of MATERIALS) for (const b of MATERIALS) {
    if (a >= b) continue;
    let most = 0;
    for (let y = c - 6; y <= c + 6; y++) for (let x = c - 6; x <= c + 6; x++) most = Math.max(most, dist(px[a](x, y), px[b](x, y)));
    assert.ok(most > 60, `${a} and ${b} differ by at most ${most.toFixed(0)}`);
  }
});

test("each colour stays nearest to itself; edges are anti-aliased", () => {
  for (const color of COLORS) {
    const p = rgb(one("square", color, "rubber"))(32, 32);
    const nearest = COLORS.reduce((best, c) => (dist(p, COLOR_RGB[c]) < dist(p, COLOR_RGB[best]) ? c : best), COLORS[0]);
    assert.equal(nearest, color);
  }
  for (const shape of SHAPES) {
    const px = rgb(one(shape, "yellow", "rubber"));
    let partial = 0;
    for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
      const p = px(x, y);
      if (dist(p, bg) > 8 && dist(p, COLOR_RGB.yellow) > 40 && p[0]! > bg[0]! + 4) partial++;
    }
    assert.ok(partial > 4, `${shape}: only ${partial} blended edge pixels`);
  }
});

test("shapes are told apart by their pixels", () => {
  const masks = SHAPES.map((s) => {
    const px = rgb(one(s, "red", "rubber"));
    return Array.from({ length: SIZE * SIZE }, (_, i): number => (dist(px(i % SIZE, Math.floor(i / SIZE)), bg) > 30 ? 1 : 0));
  });
  for (let i = 0; i < SHAPES.length; i++) for (let j = i + 1; j < SHAPES.length; j++) {
    const differ = masks[i]!.reduce((n, v, k) => n + (v !== masks[j]![k] ? 1 : 0), 0);
    assert.ok(differ > 20, `${SHAPES[i]} and ${SHAPES[j]} differ in ${differ} pixels`);
  }
});

test("the outlines that geometry uses are the shapes drawn", () => {
  for (const shape of SHAPES) {
    const scene = one(shape, "red", "rubber");
    const o = scene.objects[0]!, px = rgb(scene);
    const inside = (x: number, y: number) => insideShape(o, x / SIZE, y / SIZE);
    // A pixel whose square, widened by one pixel for the outline's stroke, lies wholly inside
    // (outside) the outline is drawn (background).
    const grid = [-1, -0.5, 0, 0.5, 1, 1.5, 2];
    for (let y = 1; y < SIZE - 1; y++) for (let x = 1; x < SIZE - 1; x++) {
      const around = grid.flatMap((dy) => grid.map((dx) => inside(x + dx, y + dy)));
      if (around.every(Boolean)) assert.ok(dist(px(x, y), bg) > 30, `${shape}: pixel ${x},${y} inside but not drawn`);
      if (!around.some(Boolean)) assert.deepEqual(px(x, y), bg, `${shape}: pixel ${x},${y} outside but drawn`);
    }
  }
});
