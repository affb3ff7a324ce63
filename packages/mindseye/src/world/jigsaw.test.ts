import { test } from "node:test";
import assert from "node:assert/strict";
import { createCanvas, loadImage } from "@napi-rs/canvas";
import { Rng } from "./rng.js";
import { sampleScene, type Scene } from "./scene.js";
import { JIGSAW_TEXT, JigsawGenerator, crossesCorner, showsIn, viewCellWords, type JigsawPlan } from "./jigsaw.js";
import { cellWords } from "./grounding.js";
import { renderJigsaw } from "./render.js";

const SIZE = 64, H = SIZE / 2;
const items: { scene: Scene; plan: JigsawPlan }[] = [];
const gen = new JigsawGenerator("val");
for (let i = 1; i <= 300; i++) {
  const scene = sampleScene(new Rng(9, "scene", i), i, "val", SIZE);
  const plan = gen.forScene(scene, new Rng(9, "jigsaw", i), items.length + 1);
  if (plan) items.push({ scene, plan });
  else assert.ok(!scene.objects.some(crossesCorner));
}

async function pixels(png: Buffer): Promise<Uint8ClampedArray> {
  const img = await loadImage(png);
  const c = createCanvas(img.width, img.height);
  c.getContext("2d").drawImage(img, 0, 0);
  return c.getContext("2d").getImageData(0, 0, img.width, img.height).data;
}
const at = (px: Uint8ClampedArray, w: number, x: number, y: number) => [0, 1, 2].map((k) => px[(y * w + x) * 4 + k]!);
const diff = (a: number[], b: number[]) => a.reduce((s, v, k) => s + Math.abs(v - b[k]!), 0);

test("items exist for scenes with an object across the corner's edge, records shaped like BLINK's", () => {
  assert.ok(items.length > 100, `${items.length} items from 300 scenes`);
  items.forEach(({ plan }, k) => {
    const r = plan.record;
    assert.deepEqual(Object.keys(r), ["idx", "question", "sub_task", "image_1", "image_2", "image_3", "image_4", "choices", "answer", "prompt", "explanation"]);
    assert.equal(r.idx, `val_Jigsaw_${k + 1}`);
    assert.equal(r.sub_task, "Jigsaw");
    assert.equal(r.image_4, null);
    assert.deepEqual(r.choices, ["the second image", "the third image"]);
    assert.equal(r.answer, plan.trueFirst ? "(A)" : "(B)");
    assert.equal(r.prompt, JIGSAW_TEXT.prompt);
    assert.ok(r.prompt.endsWith("(A) the second image\n(B) the third image"));
  });
  const a = items.filter(({ plan }) => plan.trueFirst).length;
  assert.ok(Math.abs(a - items.length / 2) <= 1, `(A) ${a} of ${items.length}`);
});

test("crossing the corner's edge is decided by the shape, not its box", () => {
  const obj = (shape: "circle" | "square", x: number, y: number) => ({ id: 0, shape, color: "red" as const, size: "large" as const, material: "rubber" as const, x, y, r: 0.14, row: 1, col: 1 });
  assert.ok(crossesCorner(obj("square", 0.5, 0.7)), "a square on the corner's left edge");
  assert.ok(crossesCorner(obj("circle", 0.7, 0.49)), "a circle on its top edge");
  assert.ok(!crossesCorner(obj("circle", 0.4, 0.4)), "a circle whose box, but not its disc, reaches into the corner");
  assert.ok(!crossesCorner(obj("square", 0.75, 0.75)), "a square inside the corner");
  assert.ok(!crossesCorner(obj("square", 0.2, 0.7)), "a square left of the corner");
});

test("the variant changes only the colours of objects reaching into the corner", () => {
  for (const { scene, plan } of items) {
    plan.variant.objects.forEach((v, i) => {
      const o = scene.objects[i]!;
      const reaches = o.x + o.r > 0.5 && o.y + o.r > 0.5;
      assert.deepEqual({ ...v, color: o.color }, o);
      assert.equal(v.color !== o.color, reaches);
    });
  }
});

test("images: the corner is blacked out, the true piece is the corner in place, and only it continues the edges", async () => {
  for (const { scene, plan } of items) {
    const j = renderJigsaw(scene, plan.variant, SIZE);
    const [full, masked, yes, no] = await Promise.all([j.full, j.masked, j.truePatch, j.falsePatch].map(pixels));
    let seamTrue = 0, seamFalse = 0;
    for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
      const inCorner = x >= H && y >= H;
      assert.deepEqual(at(masked!, SIZE, x, y), inCorner ? [0, 0, 0] : at(full!, SIZE, x, y));
      assert.deepEqual(at(yes!, SIZE, x, y), inCorner ? at(full!, SIZE, x, y) : [0, 0, 0]);
    }
    // Edge continuity: the patch's top row against the row above the corner, its left column
    // against the column left of it.
    for (let i = 0; i < H; i++) {
      seamTrue += diff(at(yes!, SIZE, H + i, H), at(masked!, SIZE, H + i, H - 1)) + diff(at(yes!, SIZE, H, H + i), at(masked!, SIZE, H - 1, H + i));
      seamFalse += diff(at(no!, SIZE, H + i, H), at(masked!, SIZE, H + i, H - 1)) + diff(at(no!, SIZE, H, H + i), at(masked!, SIZE, H - 1, H + i));
    }
    assert.ok(seamTrue < seamFalse, `scene ${scene.id}: true patch seam ${seamTrue} ≥ false patch seam ${seamFalse}`);
    assert.notDeepEqual(yes, no);
  }
});

test("views: each cell names what shows of its object on its side of the quadrant's edges", () => {
  const nothing = ["nothing", "nothing", "nothing", "nothing"];
  let both = 0, crossing = 0;
  for (const { scene } of items) {
    const full = cellWords(scene), masked = viewCellWords(scene, "masked"), piece = viewCellWords(scene, "piece");
    for (let cell = 0; cell < 9; cell++) {
      const row = Math.floor(cell / 3), col = cell % 3;
      if (row === 0 || col === 0) assert.deepEqual(piece[cell], nothing, "a cell outside the quadrant is black in the piece");
      if (row === 2 && col === 2) assert.deepEqual(masked[cell], nothing, "the cell inside the quadrant is black in the masked scene");
      for (const view of [masked, piece]) assert.ok(view[cell]!.join() === full[cell]!.join() || view[cell]!.join() === nothing.join(), "a view names the cell's object or nothing");
      if (full[cell]!.join() !== nothing.join()) assert.ok(masked[cell]!.join() !== nothing.join() || piece[cell]!.join() !== nothing.join(), "every object shows in one view at least");
    }
    for (const o of scene.objects.filter(crossesCorner)) {
      assert.ok(showsIn(o, "masked"), `scene ${scene.id}: an object across the edge shows in the masked scene`);
      crossing++;
      if (showsIn(o, "piece")) both++;
    }
  }
  // crossesCorner also takes an object across the quadrant's corner point, of which the piece
  // may show under a pixel (4 of these items): no words for that.
  assert.ok(both >= 0.97 * crossing, `${both} of ${crossing} objects across the edge show in the piece`);
  const obj = (x: number, y: number) => ({ id: 0, shape: "circle" as const, color: "red" as const, size: "large" as const, material: "rubber" as const, x, y, r: 0.14, row: 1, col: 1 });
  assert.ok(showsIn(obj(0.75, 0.75), "piece") && !showsIn(obj(0.75, 0.75), "masked"), "inside the quadrant");
  assert.ok(!showsIn(obj(0.3, 0.75), "piece") && showsIn(obj(0.3, 0.75), "masked"), "left of it");
  assert.ok(!showsIn(obj(0.4, 0.4), "piece"), "a disc whose box, but not its shape, reaches into the quadrant");
});
