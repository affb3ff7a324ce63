import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import { SPLITS, sampleScene, type Scene } from "./scene.js";
import { CAPTIONS_PER_SCENE, cocoCaptions, sceneCaptions } from "./captions.js";
import { checkCaption, parsePhrase } from "./readback.js";

const scenes: Scene[] = Array.from({ length: 400 }, (_, i) => sampleScene(new Rng(11, "scene", i + 1), i + 1, SPLITS[i % 4]!, 64));
const captions = new Map(scenes.map((s) => [s.id, sceneCaptions(s, new Rng(11, "captions", s.id))]));

test("every scene gets several distinct captions", () => {
  for (const s of scenes) {
    const cs = captions.get(s.id)!;
    assert.equal(cs.length, CAPTIONS_PER_SCENE, `scene ${s.id}: ${cs.join(" | ")}`);
    assert.equal(new Set(cs).size, cs.length);
    for (const c of cs) assert.match(c, /^[A-Z][a-z ,]*[a-z]\.$/, `odd characters in "${c}"`);
  }
});

test("every caption is true of its scene (read back independently)", () => {
  let checked = 0;
  for (const s of scenes) {
    for (const c of captions.get(s.id)!) {
      assert.equal(checkCaption(s, c), null);
      checked++;
    }
  }
  assert.equal(checked, scenes.length * CAPTIONS_PER_SCENE);
});

test("the checker rejects false captions (it can fail)", () => {
  const s: Scene = {
    id: 1, imageId: "000000000001", file_name: "000000000001.png", split: "train", width: 64, height: 64,
    objects: [
      { id: 0, shape: "circle", color: "red", size: "small", material: "metal", x: 0.15, y: 0.5, r: 0.085, row: 1, col: 0 },
      { id: 1, shape: "star", color: "blue", size: "large", material: "glass", x: 0.83, y: 0.5, r: 0.14, row: 1, col: 2 },
    ],
  };
  for (const good of [
    "A red circle is to the left of a big blue star.", "The two objects are a blue star and a little red metallic circle.",
    "Two objects on a gray background.", "One red object and one blue object.", "A blue star with a red circle to its left.",
    "A red circle on the left and a star made of glass on the right.", "From left to right, a circle and a star.",
    "A red circle and one other object.", "A picture of a glass star.",
    "In the picture, a small red metal circle on the left and a large blue glass star on the right.",
  ]) assert.equal(checkCaption(s, good), null, good);
  for (const bad of [
    "A red circle is to the right of a big blue star.", "The two objects are a blue star and a green circle.",
    "Three objects on a gray background.", "Two red objects.", "A blue star with a red circle above it.",
    "A red circle on the right.", "From left to right, a star and a circle.", "A red circle and two other objects.",
    "A picture of a wooden star.", "Both objects are red.", "A red circle alone on a gray background.", "A red circle is happy.",
    "In the picture, a large blue glass star on the right and a small red metal circle on the left.", // not in reading order
    "In the picture, a small red metal circle on the left and a large blue star on the right.", // an attribute missing
    "In the picture, a small red metal circle on the left.", // an object missing
    "In the picture, a small red metal circle in the center and a large blue glass star on the right.", // wrong place
  ]) assert.notEqual(checkCaption(s, bad), null, bad);
});

test("captions vary in style, detail and wording", () => {
  const all = [...captions.values()].flat();
  const openings = new Set(all.map((c) => c.split(" ").slice(0, 2).join(" ")));
  assert.ok(openings.size >= 20, `only ${openings.size} distinct openings`);
  for (const w of ["little", "big", "metallic", "wooden", "made of", "thing", "to its", "From left to right", "other", "corner"]) {
    assert.ok(all.some((c) => c.includes(w)), `no caption uses "${w}"`);
  }
  // Detail varies: phrases name from one to four attributes.
  const detail = new Set<number>();
  for (const c of all) {
    const m = c.match(/^The \w+ objects are (.+)\.$/);
    if (m) for (const p of m[1]!.split(/, | and /)) detail.add(Object.keys(parsePhrase(p)!.desc).length);
  }
  assert.deepEqual([...detail].sort(), [1, 2, 3, 4]);
  // Captions of a scene are not one template: at least 4 different openings in most scenes.
  const varied = scenes.filter((s) => new Set(captions.get(s.id)!.map((c) => c.split(" ").slice(0, 2).join(" "))).size >= 4).length;
  assert.ok(varied >= scenes.length * 0.8, `${varied} of ${scenes.length} scenes have varied captions`);
});

test("COCO captions JSON has COCO's fields and joins annotations to images", () => {
  const train = scenes.filter((s) => s.split === "train");
  const coco = cocoCaptions("train", train, captions, 41);
  assert.deepEqual(Object.keys(coco), ["info", "licenses", "images", "annotations"]);
  assert.deepEqual(Object.keys(coco.info), ["year", "version", "description", "contributor", "url", "date_created"]);
  assert.deepEqual(Object.keys(coco.images[0]!), ["id", "file_name", "width", "height", "license", "coco_url", "flickr_url", "date_captured"]);
  assert.deepEqual(Object.keys(coco.annotations[0]!), ["id", "image_id", "caption"]);
  assert.equal(coco.images.length, train.length);
  assert.equal(coco.annotations.length, train.length * CAPTIONS_PER_SCENE);
  assert.deepEqual(coco.annotations.map((a) => a.id), coco.annotations.map((_, i) => 41 + i));
  const ids = new Set(coco.images.map((i) => i.id));
  for (const a of coco.annotations) assert.ok(ids.has(a.image_id));
  assert.equal(coco.images[0]!.file_name, `${String(train[0]!.id).padStart(12, "0")}.png`);
});
