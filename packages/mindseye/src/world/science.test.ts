import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import { MATERIALS, SPLITS, matches, sampleScene, type Scene } from "./scene.js";
import { ScienceGenerator, type ScienceProblem } from "./science.js";
import { parsePhrase } from "./readback.js";

// The facts, written down again here: which materials have the property a question asks about.
const FACTS: [RegExp, string[]][] = [
  [/attracted to a magnet/, ["metal"]],
  [/float in water/, ["wood", "rubber"]],
  [/sink in water/, ["metal", "glass"]],
  [/conducts? electricity/, ["metal"]],
  [/break if/, ["glass"]],
];
const POSITIONS = ["in the top left corner", "at the top", "in the top right corner", "on the left", "in the center", "on the right",
  "in the bottom left corner", "at the bottom", "in the bottom right corner"];

/** The object a choice or question names ("the small red circle", "the red circle on the left"). */
function named(scene: Scene, name: string) {
  const pos = POSITIONS.findIndex((p) => name.endsWith(` ${p}`));
  const text = pos >= 0 ? name.slice(0, -POSITIONS[pos]!.length - 1) : name;
  const p = parsePhrase(text);
  assert.ok(p && p.det === "the", `"${name}" is not a definite phrase`);
  assert.equal(p.desc.material, undefined, `"${name}" gives the material away`);
  const found = scene.objects.filter((o) => matches(o, p.desc) && (pos < 0 || o.row * 3 + o.col === pos));
  assert.equal(found.length, 1, `"${name}" names ${found.length} objects`);
  return found[0]!;
}

const problems: { p: ScienceProblem; scene: Scene }[] = [];
for (const split of SPLITS) {
  const gen = new ScienceGenerator(split);
  for (let i = 1; i <= (split === "train" ? 800 : 150); i++) {
    const scene = sampleScene(new Rng(5, split, i), i, split, 64);
    const p = gen.forScene(scene, new Rng(5, "science", split, i));
    if (p) problems.push({ p, scene });
  }
}

test("most scenes get a problem, of every category and form", () => {
  assert.ok(problems.length > 0.5 * 1250, `${problems.length} problems`);
  assert.deepEqual([...new Set(problems.map(({ p }) => p.category))].sort(), ["Density", "Electricity", "Magnets", "Materials"]);
  for (const form of [/^Which/, /^(Is|Would|Does)/, /^How many/]) assert.ok(problems.some(({ p }) => form.test(p.question)), String(form));
});

test("each answer is right, from the facts and the scene JSON", () => {
  for (const { p, scene } of problems) {
    const fact = FACTS.find(([re]) => re.test(p.question));
    assert.ok(fact, `no fact for "${p.question}"`);
    const has = (o: { material: string }) => fact[1].includes(o.material);
    let right: number[];
    if (p.question.startsWith("Which")) {
      right = p.choices.map((c, i) => (has(named(scene, c)) ? i : -1)).filter((i) => i >= 0);
    } else if (p.question.startsWith("How many")) {
      assert.deepEqual(p.choices, ["0", "1", "2", "3"]);
      right = [p.choices.indexOf(String(scene.objects.filter(has).length))];
    } else {
      const m = p.question.match(/^(?:Is|Would|Does) (the .+?) (?:attracted|float|sink|conduct|break)/);
      assert.ok(m, p.question);
      assert.deepEqual(p.choices, ["yes", "no"]);
      right = [has(named(scene, m[1]!)) ? 0 : 1];
    }
    assert.deepEqual(right, [p.answer], `"${p.question}" ${JSON.stringify(p.choices)} answer ${p.answer}`);
  }
});

test("the fact is stated in the hint and lecture text, and the choices never name a material", () => {
  for (const { p } of problems) {
    const fact = FACTS.find(([re]) => re.test(p.question))!;
    for (const m of MATERIALS) assert.ok(p.hint.toLowerCase().includes(m), `hint does not say how ${m} behaves: ${p.hint}`);
    for (const m of fact[1]) assert.ok(p.solution.includes(m) || p.solution.includes(m[0]!.toUpperCase() + m.slice(1)));
    assert.ok(p.lecture.length > 50);
    for (const c of p.choices) for (const m of [...MATERIALS, "wooden", "metallic"]) assert.ok(!c.split(" ").includes(m), `choice "${c}"`);
  }
});

test("problems have ScienceQA's fields", () => {
  const FIELDS = ["question", "choices", "answer", "hint", "image", "task", "grade", "subject", "topic", "category", "skill", "lecture", "solution", "split"];
  for (const { p, scene } of problems) {
    assert.deepEqual(Object.keys(p), FIELDS);
    assert.ok(Number.isInteger(p.answer) && p.answer >= 0 && p.answer < p.choices.length);
    assert.ok(p.choices.length >= 2 && p.choices.length <= 4);
    assert.equal(new Set(p.choices).size, p.choices.length);
    assert.equal(p.image, "image.png");
    assert.equal(p.split, scene.split);
    assert.match(p.grade, /^grade\d+$/);
    assert.equal(p.subject, "natural science");
  }
});

test("answers are balanced: positions of the right choice, yes/no, counts", () => {
  const train = problems.filter(({ scene }) => scene.split === "train").map(({ p }) => p);
  const groups = new Map<string, number[]>();
  for (const p of train) {
    const key = `${p.question.split(" ")[0]}:${p.choices.length}`;
    groups.set(key, [...(groups.get(key) ?? []), p.answer]);
  }
  for (const [key, answers] of groups) {
    if (answers.length < 20) continue;
    const k = Number(key.split(":")[1]);
    for (let i = 0; i < k; i++) {
      const share = answers.filter((a) => a === i).length / answers.length;
      assert.ok(Math.abs(share - 1 / k) < 0.08, `${key}: choice ${i} right ${(100 * share).toFixed(1)}% of ${answers.length}`);
    }
  }
});
