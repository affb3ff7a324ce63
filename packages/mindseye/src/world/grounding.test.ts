import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import { sampleScene, type Scene } from "./scene.js";
import { cellWords, groundingPairs } from "./grounding.js";
import { checkCaption } from "./readback.js";

const scenes: Scene[] = Array.from({ length: 200 }, (_, i) => sampleScene(new Rng(4, "scene", i + 1), i + 1, "train", 48));

test("grounding answers are true of their scenes: a place read out, a unique description found", () => {
  let where = 0, at = 0, nothing = 0;
  for (const s of scenes) {
    for (const g of groundingPairs(s, new Rng(4, "g", s.id))) {
      let m: RegExpMatchArray | null;
      if ((m = g.question.match(/^Where is the (.+)\?$/))) {
        where++;
        // "The <np> <place>." read back as a position caption: true, and the np names one object.
        assert.equal(checkCaption(s, `The ${m[1]} ${g.answer}.`), null, `${g.question} → ${g.answer}`);
      } else if ((m = g.question.match(/^What is (.+)\?$/))) {
        at++;
        if (g.answer === "nothing") nothing++;
        else assert.equal(checkCaption(s, `${g.answer.charAt(0).toUpperCase()}${g.answer.slice(1)} ${m[1]}.`), null, `${g.question} → ${g.answer}`);
      } else {
        assert.fail(`unexpected question ${g.question}`);
      }
    }
  }
  assert.ok(where > 300 && at === 400 && nothing > 0 && nothing < at, `${where} where, ${at} at (${nothing} empty)`);
});

test("minimal descriptions: each names fewer attributes than the whole and still one object; the place questions are the same", () => {
  let shorter = 0, where = 0;
  for (const s of scenes) {
    const full = groundingPairs(s, new Rng(4, "g", s.id)), minimal = groundingPairs(s, new Rng(4, "g", s.id), 2, "minimal");
    assert.deepEqual(minimal.filter((g) => g.question.startsWith("What")), full.filter((g) => g.question.startsWith("What")));
    const fullWhere = full.filter((g) => g.question.startsWith("Where")), minimalWhere = minimal.filter((g) => g.question.startsWith("Where"));
    assert.deepEqual(minimalWhere.map((g) => g.answer), fullWhere.map((g) => g.answer), "the same objects, in the same order");
    minimalWhere.forEach((g, i) => {
      where++;
      const np = g.question.match(/^Where is the (.+)\?$/)![1]!;
      assert.equal(checkCaption(s, `The ${np} ${g.answer}.`), null, `${g.question} → ${g.answer} singles its object out`);
      const fullNp = fullWhere[i]!.question.match(/^Where is the (.+)\?$/)![1]!;
      if (np.split(" ").length < fullNp.split(" ").length) shorter++;
    });
  }
  assert.ok(shorter > where / 2, `${shorter} of ${where} descriptions are shorter than the whole`);
});

test("twins (objects alike in every attribute) get no where-question", () => {
  const o = { id: 0, shape: "circle", color: "red", size: "small", material: "metal", x: 0.15, y: 0.15, r: 0.085, row: 0, col: 0 } as const;
  const s: Scene = { id: 1, imageId: "1", file_name: "1.png", split: "train", width: 48, height: 48, objects: [o, { ...o, id: 1, x: 0.83, col: 2 }] };
  assert.ok(groundingPairs(s, new Rng(1)).every((g) => !g.question.startsWith("Where")));
});

test("cellWords names each cell's object in grid order, and nothing for an empty cell", () => {
  const o = { id: 0, shape: "circle", color: "red", size: "small", material: "wood", x: 0.83, y: 0.15, r: 0.085, row: 0, col: 2 } as const;
  const s: Scene = { id: 1, imageId: "1", file_name: "1.png", split: "train", width: 48, height: 48, objects: [o] };
  const words = cellWords(s);
  assert.equal(words.length, 9);
  assert.deepEqual(words[2], ["red", "circle", "small", "wooden"]);
  assert.deepEqual(words[0], ["nothing", "nothing", "nothing", "nothing"]);
});
