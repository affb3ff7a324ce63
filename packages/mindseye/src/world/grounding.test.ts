import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import { RELATIONS, matches, matching, related, sampleScene, type Scene } from "./scene.js";
import { POSITION_PHRASES, RELATION_PHRASES, article, descPhrase } from "./language.js";
import { cellWords, groundingPairs, readoutPairs, relationPairs } from "./grounding.js";
import { checkCaption, parsePhrase } from "./readback.js";

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

test("relation lookups: the description names one object, exactly one other object stands in the relation to it, and none is left out", () => {
  const relOf = new Map(RELATIONS.map((r) => [RELATION_PHRASES[r], r]));
  const parse = (q: string) => q.match(/^What is (to the left of|to the right of|above|below) the (.+)\?$/)!;
  let asked = 0;
  for (const s of scenes) {
    const full = relationPairs(s, new Rng(4, "r", s.id)), minimal = relationPairs(s, new Rng(4, "r", s.id), "minimal");
    assert.deepEqual(minimal.map((g) => g.answer), full.map((g) => g.answer), "the same lookups whatever the descriptions");
    full.forEach((g, i) => {
      const [, phrase, np] = parse(g.question), rel = relOf.get(phrase!)!;
      const named = s.objects.filter((o) => descPhrase(o) === np);
      assert.equal(named.length, 1, `${g.question}: names one object`);
      const there = s.objects.filter((o) => o !== named[0] && related(o, rel, named[0]!));
      assert.equal(there.length, 1, `${g.question}: one object ${phrase} it`);
      assert.equal(g.answer, article(descPhrase(there[0]!)));
      // The minimal description singles out the same object: "The <np> <its place>." reads back true.
      assert.equal(checkCaption(s, `The ${parse(minimal[i]!.question)[2]} ${POSITION_PHRASES[named[0]!.row]![named[0]!.col]}.`), null, minimal[i]!.question);
      asked++;
    });
    const unique = s.objects.filter((o) => s.objects.filter((x) => matches(x, o)).length === 1);
    const expected = unique.reduce((n, o) => n + RELATIONS.filter((r) => s.objects.filter((x) => x !== o && related(x, r, o)).length === 1).length, 0);
    assert.equal(full.length, expected, `scene ${s.id}: every unique object's relations with one object there`);
  }
  assert.ok(asked > 200, `${asked} relation lookups`);
});

test("read-outs: the description singles out one object, the answer is that object whole, and every \"where\" object is read", () => {
  let shorter = 0, asked = 0;
  for (const s of scenes) {
    const readouts = readoutPairs(s, new Rng(4, "o", s.id), "minimal");
    const where = groundingPairs(s, new Rng(4, "g", s.id), 2, "full").filter((g) => g.kind === "where");
    assert.equal(readouts.length, where.length, `scene ${s.id}: one read-out per object a description singles out`);
    readouts.forEach((g, i) => {
      const np = g.question.match(/^What is the (.+)\?$/)![1]!;
      const whole = where[i]!.question.match(/^Where is the (.+)\?$/)![1]!;
      assert.equal(g.answer, article(whole), `${g.question}: the object read whole`);
      // "The <np> <its place>." reads back true: the short description names the same object.
      assert.equal(checkCaption(s, `The ${np} ${where[i]!.answer}.`), null, `${g.question} → ${g.answer}`);
      if (np.split(" ").length < whole.split(" ").length) shorter++;
      asked++;
    });
  }
  assert.ok(asked > 300 && shorter > asked / 2, `${shorter} of ${asked} read-outs name fewer attributes than they read`);
});

test("read-outs of absent objects: a description no object fits, answered \"nothing\"; the other read-outs unchanged", () => {
  let absent = 0;
  for (const s of scenes) {
    const plain = readoutPairs(s, new Rng(4, "o", s.id), "minimal"), withAbsent = readoutPairs(s, new Rng(4, "o", s.id), "minimal", 1);
    assert.deepEqual(withAbsent.slice(0, plain.length), plain);
    for (const g of withAbsent.slice(plain.length)) {
      assert.equal(g.answer, "nothing");
      // "the blue object" / "the small star": read back into a description (readback.ts); no object fits it.
      const d = parsePhrase(g.question.match(/^What is (.+)\?$/)![1]!)!.desc;
      assert.ok(Object.keys(d).length >= 1 && Object.keys(d).length <= 2, g.question);
      assert.equal(matching(s, d).length, 0, `${g.question}: no object fits`);
      absent++;
    }
  }
  assert.ok(absent > 190, `${absent} absent read-outs of ${scenes.length} scenes`);
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
