import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "./rng.js";
import { SPLITS, isHeldOut, matches, sampleScene, type Scene, type Split } from "./scene.js";
import { COUNT_ANSWERS, FAMILIES, QUESTION_TYPES, QuestionGenerator, gqaChance, type GqaQuestion } from "./questions.js";
import { parsePhrase, readQuestion } from "./readback.js";

const SEED = 21;
const world = new Map<Split, { scenes: Map<string, Scene>; questions: [string, GqaQuestion][] }>();
for (const split of SPLITS) {
  const gen = new QuestionGenerator(split);
  const scenes = new Map<string, Scene>();
  const questions: [string, GqaQuestion][] = [];
  for (let i = 1; i <= (split === "train" ? 600 : 200); i++) {
    const s = sampleScene(new Rng(SEED, split, i), i, split, 64);
    scenes.set(s.imageId, s);
    questions.push(...gen.forScene(s, new Rng(SEED, "gqa", split, i), questions.length + 1));
  }
  world.set(split, { scenes, questions });
}
const everything = [...world.values()].flatMap((w) => w.questions.map(([id, q]) => ({ id, q, scene: w.scenes.get(q.imageId)! })));

test("every question type occurs, one question per family per scene at most", () => {
  const types = new Set(everything.map(({ q }) => q.types.detailed));
  assert.deepEqual([...types].sort(), Object.keys(QUESTION_TYPES).sort());
  const perScene = new Map<string, string[]>();
  for (const { q } of everything.filter((e) => e.scene.split === "train")) {
    perScene.set(q.imageId, [...(perScene.get(q.imageId) ?? []), QUESTION_TYPES[q.types.detailed as keyof typeof QUESTION_TYPES].family]);
  }
  for (const fams of perScene.values()) assert.equal(new Set(fams).size, fams.length);
  const mean = [...perScene.values()].reduce((n, f) => n + f.length, 0) / perScene.size;
  assert.ok(mean > FAMILIES.length - 1.5, `only ${mean.toFixed(2)} questions per scene`);
});

test("each answer is right: worked out again from the question text and the scene JSON", () => {
  for (const { id, q, scene } of everything) {
    let answer: string;
    try {
      answer = readQuestion(scene, q.question, q.types.detailed).answer;
    } catch (e) {
      assert.fail(`question ${id} (${q.types.detailed}) "${q.question}": ${(e as Error).message}`);
    }
    assert.equal(answer, q.answer, `question ${id} (${q.types.detailed}) "${q.question}" on scene ${scene.id}`);
  }
});

test("full answers agree with answers; annotations point at the objects named", () => {
  for (const { q, scene } of everything) {
    if (q.answer === "yes") assert.match(q.fullAnswer, /^Yes, /);
    if (q.answer === "no") assert.match(q.fullAnswer, /^No, /);
    if (!["yes", "no"].includes(q.answer)) assert.ok(q.fullAnswer.includes(q.answer) || q.types.detailed === "count", q.fullAnswer);
    for (const [text, ann] of [[q.question, q.annotations.question], [q.fullAnswer, q.annotations.fullAnswer]] as const) {
      const words = text.replace(/[?.,]/g, "").split(" ");
      for (const [span, objectId] of Object.entries(ann)) {
        const [a, b] = span.includes(":") ? span.split(":").map(Number) : [Number(span), Number(span) + 1];
        const p = parsePhrase(words.slice(a, b).join(" "));
        assert.ok(p, `span ${span} of "${text}" is not a phrase`);
        const o = scene.objects[Number(objectId)]!;
        assert.ok(matches(o, p.desc), `span ${span} of "${text}" does not name object ${objectId}`);
      }
    }
  }
});

test("questions have GQA's fields, types and a consistent semantic program", () => {
  const FIELDS = ["imageId", "question", "answer", "fullAnswer", "isBalanced", "groups", "entailed", "equivalent", "types", "annotations", "semantic", "semanticStr"];
  for (const { id, q } of everything) {
    assert.deepEqual(Object.keys(q), FIELDS);
    assert.deepEqual(Object.keys(q.types), ["structural", "semantic", "detailed"]);
    assert.deepEqual(Object.keys(q.groups), ["global", "local"]);
    assert.deepEqual(Object.keys(q.annotations), ["question", "answer", "fullAnswer"]);
    const t = QUESTION_TYPES[q.types.detailed as keyof typeof QUESTION_TYPES];
    assert.equal(q.types.structural, t.structural);
    assert.equal(q.types.semantic, t.semantic);
    assert.ok(["verify", "query", "choose", "logical", "compare"].includes(q.types.structural));
    assert.ok(["obj", "attr", "rel"].includes(q.types.semantic));
    assert.deepEqual(q.equivalent, [id]);
    assert.match(id, /^\d+$/);
    assert.ok(q.semantic.length >= 2);
    q.semantic.forEach((op, i) => {
      assert.deepEqual(Object.keys(op), ["operation", "argument", "dependencies"]);
      for (const d of op.dependencies) assert.ok(d < i, "a step depends on a later one");
    });
    assert.equal(q.semanticStr.split("->").length, q.semantic.length);
    assert.ok(q.answer.length > 0 && !q.answer.includes(" "), "answers are one word");
  }
});

test("no phrase outside test_novel names a held-out colour×shape pair", () => {
  let novelNamed = 0;
  for (const { q, scene } of everything) {
    const named = readQuestion(scene, q.question, q.types.detailed).phrases.some((d) => isHeldOut(d.color, d.shape));
    if (scene.split !== "test_novel") assert.ok(!named, `"${q.question}" in ${scene.split}`);
    else if (named) novelNamed++;
  }
  assert.ok(novelNamed > 20, `test_novel questions name held-out pairs only ${novelNamed} times`);
});

test("answers are balanced per question type, so a blind model scores near chance", () => {
  const train = world.get("train")!.questions.map(([, q]) => q);
  const byType = new Map<string, GqaQuestion[]>();
  for (const q of train) byType.set(q.types.detailed, [...(byType.get(q.types.detailed) ?? []), q]);
  const share = (qs: GqaQuestion[], pred: (q: GqaQuestion) => boolean) => qs.filter(pred).length / qs.length;
  for (const [type, qs] of byType) {
    if (gqaChance(qs[0]!) === 0.5 && !["chooseAttr", "compare"].includes(type)) {
      // yes/no: the balancer keeps them within one of each other per form.
      const yes = share(qs, (q) => q.answer === "yes");
      assert.ok(Math.abs(yes - 0.5) < 0.03, `${type}: ${(100 * yes).toFixed(1)}% yes of ${qs.length}`);
    }
  }
  const counts = byType.get("count")!;
  for (const a of COUNT_ANSWERS) {
    const s = share(counts, (q) => q.answer === a);
    assert.ok(Math.abs(s - 1 / COUNT_ANSWERS.length) < 0.05, `count answer ${a}: ${(100 * s).toFixed(1)}% of ${counts.length}`);
  }
  // Two-option questions: the right option is first about half the time.
  for (const type of ["chooseAttr", "compare"]) {
    const qs = byType.get(type)!;
    const first = share(qs, (q) => {
      const m = q.question.match(/(?:, the (.+) or the (.+)|(?:an? )?(\w+) or (?:an? )?(\w+))\?$/)!;
      return type === "compare" ? m[1]!.endsWith(q.answer) : m[3] === q.answer;
    });
    assert.ok(Math.abs(first - 0.5) < 0.12, `${type}: right option first ${(100 * first).toFixed(1)}% of ${qs.length}`);
  }
  // Open attribute questions: no value dominates its attribute.
  for (const type of ["queryAttr", "queryRel"]) {
    const qs = byType.get(type)!;
    for (const kind of ["color", "shape", "material", "size"]) {
      const ofKind = qs.filter((q) => q.groups.global === kind);
      const tally = new Map<string, number>();
      for (const q of ofKind) tally.set(q.answer, (tally.get(q.answer) ?? 0) + 1);
      const max = Math.max(...tally.values()), min = Math.min(...tally.values());
      assert.ok(max - min <= Math.max(2, (0.05 * ofKind.length) / tally.size), `${type} ${kind}: answers ${JSON.stringify(Object.fromEntries(tally))}`);
    }
  }
});

test("the same seed gives the same questions; another seed does not", () => {
  const make = (seed: number) => {
    const gen = new QuestionGenerator("val");
    return Array.from({ length: 30 }, (_, i) => gen.forScene(sampleScene(new Rng(seed, "s", i), i, "val", 64), new Rng(seed, "q", i), i * 10));
  };
  assert.equal(JSON.stringify(make(1)), JSON.stringify(make(1)));
  assert.notEqual(JSON.stringify(make(1)), JSON.stringify(make(2)));
});
