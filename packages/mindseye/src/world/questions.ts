// Compositional questions in GQA's questions-JSON format: exist, count, attribute (query,
// verify, choose), relation (exist, verify, query), compare (same attribute, which is larger)
// and logical (and, or). Each question is built from its scene's JSON, so its answer is right
// by construction; its `semantic` program says how (GQA's select/filter/relate/... operations,
// object ids being indices into the scene's objects). Answers are balanced per question form
// (balance.ts); noun phrases naming a held-out colour×shape pair are never asked outside
// test_novel, where no object has one (the text alone would give the answer away).
import { Balancer } from "./balance.js";
import type { Rng } from "./rng.js";
import {
  ATTRIBUTE_KINDS, ATTRIBUTE_VALUES, RELATIONS, descOf, isHeldOut, matches, matching, related, sameDesc, uniqueDesc,
  type AttributeKind, type Desc, type Relation, type Scene, type SceneObject, type Split,
} from "./scene.js";
import { NUMBER_WORDS, RELATION_PHRASES, article, descPhrase } from "./language.js";

export interface GqaOperation { operation: string; argument: string; dependencies: number[] }

/** One question, field for field as in GQA's `{split}_balanced_questions.json`. */
export interface GqaQuestion {
  imageId: string;
  question: string;
  answer: string;
  fullAnswer: string;
  isBalanced: boolean;
  groups: { global: string | null; local: string };
  entailed: string[];
  equivalent: string[];
  types: { structural: string; semantic: string; detailed: string };
  annotations: { question: Record<string, string>; answer: Record<string, string>; fullAnswer: Record<string, string> };
  semantic: GqaOperation[];
  semanticStr: string;
}

/** Counting questions are asked only where the answer is 0..COUNT_MAX. */
export const COUNT_MAX = 3;
export const COUNT_ANSWERS = Array.from({ length: COUNT_MAX + 1 }, (_, i) => String(i));
export const YES_NO = ["yes", "no"] as const;

/** Every detailed type: its family (one question per family per scene), GQA structural and semantic types. */
export const QUESTION_TYPES = {
  exist: { family: "exist", structural: "verify", semantic: "obj" },
  count: { family: "count", structural: "query", semantic: "obj" },
  queryAttr: { family: "attribute", structural: "query", semantic: "attr" },
  verifyAttr: { family: "attribute", structural: "verify", semantic: "attr" },
  chooseAttr: { family: "attribute", structural: "choose", semantic: "attr" },
  existRel: { family: "relation", structural: "verify", semantic: "rel" },
  verifyRel: { family: "relation", structural: "verify", semantic: "rel" },
  queryRel: { family: "relation", structural: "query", semantic: "rel" },
  twoSame: { family: "compare", structural: "compare", semantic: "attr" },
  compare: { family: "compare", structural: "compare", semantic: "attr" },
  existAnd: { family: "logical", structural: "logical", semantic: "obj" },
  existOr: { family: "logical", structural: "logical", semantic: "obj" },
} as const;
export type QuestionType = keyof typeof QUESTION_TYPES;
export const FAMILIES = ["exist", "count", "attribute", "relation", "compare", "logical"] as const;

/** Question and full-answer phrasings; `{np}`s are noun phrases ("the" is in the template). */
export const QUESTION_TEMPLATES = {
  exist: { q: "Is there {np}?", yes: "Yes, there is {np}.", no: "No, there is no {bare}." },
  count: { q: "How many {pl} are there?", zero: "There are no {pl}.", one: "There is one {sg}.", many: "There are {k} {pl}." },
  queryAttr: {
    color: { q: "What color is the {np}?", a: "The {np} is {v}." },
    shape: { q: "What shape is the {np}?", a: "The {np} is {v}." },
    material: { q: "What material is the {np} made of?", a: "The {np} is made of {v}." },
    size: { q: "What size is the {np}?", a: "The {np} is {v}." },
  },
  verifyAttr: {
    color: { q: "Is the {np} {v}?", yes: "Yes, the {np} is {v}.", no: "No, the {np} is {actual}." },
    shape: { q: "Is the {np} {v}?", yes: "Yes, the {np} is {v}.", no: "No, the {np} is {actual}." },
    material: { q: "Is the {np} made of {v}?", yes: "Yes, the {np} is made of {v}.", no: "No, the {np} is made of {actual}." },
    size: { q: "Is the {np} {v}?", yes: "Yes, the {np} is {v}.", no: "No, the {np} is {actual}." },
  },
  chooseAttr: {
    color: { q: "Is the {np} {v1} or {v2}?", a: "The {np} is {v}." },
    shape: { q: "Is the {np} {v1} or {v2}?", a: "The {np} is {v}." },
    material: { q: "Is the {np} made of {v1} or {v2}?", a: "The {np} is made of {v}." },
    size: { q: "Is the {np} {v1} or {v2}?", a: "The {np} is {v}." },
  },
  existRel: { q: "Is there {np1} {rel} the {np2}?", yes: "Yes, there is {np1} {rel} the {np2}.", no: "No, there is no {bare1} {rel} the {np2}." },
  verifyRel: { q: "Is the {np1} {rel} the {np2}?", yes: "Yes, the {np1} is {rel} the {np2}.", no: "No, the {np1} is not {rel} the {np2}." },
  queryRel: {
    color: { q: "What color is the {np1} {rel} the {np2}?", a: "The {np1} {rel} the {np2} is {v}." },
    shape: { q: "What shape is the {np1} {rel} the {np2}?", a: "The {np1} {rel} the {np2} is {v}." },
    material: { q: "What material is the {np1} {rel} the {np2} made of?", a: "The {np1} {rel} the {np2} is made of {v}." },
    size: { q: "What size is the {np1} {rel} the {np2}?", a: "The {np1} {rel} the {np2} is {v}." },
  },
  twoSame: {
    q: "Is the {np1} the same {kind} as the {np2}?",
    yes: "Yes, the {np1} and the {np2} are the same {kind}.",
    no: "No, the {np1} and the {np2} are not the same {kind}.",
  },
  compare: {
    larger: { q: "Which is larger, the {np1} or the {np2}?", a: "The {np} is larger." },
    smaller: { q: "Which is smaller, the {np1} or the {np2}?", a: "The {np} is smaller." },
  },
  existAnd: { q: "Are there both {pl1} and {pl2}?", yes: "Yes, there are both {pl1} and {pl2}.", no: "No, there are no {missing}." },
  existOr: { q: "Are there either {pl1} or {pl2}?", yes: "Yes, there are {present}.", no: "No, there are no {pl1} or {pl2}." },
} as const;

/** Chance accuracy of a question: 1 / the number of answers its form allows. */
export function gqaChance(q: GqaQuestion): number {
  const t = q.types.detailed as QuestionType;
  if (t === "chooseAttr" || t === "compare") return 1 / 2;
  if (t === "count") return 1 / COUNT_ANSWERS.length;
  if (t === "queryAttr" || t === "queryRel") return 1 / ATTRIBUTE_VALUES[q.groups.global as AttributeKind].length;
  return 1 / 2;
}

/** A filled template with GQA annotations: word span ("3:5", or "3" for one word) → object id. */
interface Annotated { text: string; ann: Record<string, string> }
type SlotValue = string | { text: string; ref: number };

function annotate(template: string, slots: Readonly<Record<string, SlotValue>>): Annotated {
  let text = "";
  const ann: Record<string, string> = {};
  let last = 0;
  for (const m of template.matchAll(/\{(\w+)\}/g)) {
    text += template.slice(last, m.index);
    last = m.index + m[0].length;
    const v = slots[m[1]!];
    if (v === undefined) throw new Error(`template "${template}" needs slot {${m[1]}}`);
    const s = typeof v === "string" ? v : v.text;
    if (typeof v !== "string") {
      const start = text.trim() === "" ? 0 : text.trim().split(/ +/).length;
      const n = s.split(" ").length;
      ann[n === 1 ? String(start) : `${start}:${start + n}`] = String(v.ref);
    }
    text += s;
  }
  return { text: text + template.slice(last), ann };
}

/** Builds a GQA operation list: select the noun, filter by each named attribute. */
class Program {
  readonly ops: GqaOperation[] = [];

  /** Appends one operation; returns its index. */
  step(operation: string, argument: string, dependencies: number[]): number {
    this.ops.push({ operation, argument, dependencies });
    return this.ops.length - 1;
  }

  /** select (the noun) + a filter per other attribute of `d`; returns the last step. */
  find(scene: Scene, d: Desc): number {
    const ids = matching(scene, d).map((o) => o.id).join(",");
    return this.filters(d, this.step("select", `${d.shape ?? "object"} (${ids})`, []));
  }

  /** The objects matching `d` that are `rel` the object found at step `anchor`. */
  relate(scene: Scene, d: Desc, rel: Relation, anchor: number, b: SceneObject): number {
    const ids = scene.objects.filter((a) => a !== b && matches(a, d) && related(a, rel, b)).map((o) => o.id).join(",");
    return this.filters(d, this.step("relate", `${d.shape ?? "object"},${RELATION_PHRASES[rel]},s (${ids})`, [anchor]));
  }

  private filters(d: Desc, from: number): number {
    let i = from;
    for (const k of ["size", "color", "material"] as const) if (d[k] !== undefined) i = this.step(`filter ${k}`, d[k], [i]);
    return i;
  }

  toString(): string {
    return this.ops.map((o) => `${o.operation}: ${o.argument}${o.dependencies.length ? ` [${o.dependencies.join(", ")}]` : ""}`).join("->");
  }
}

interface Built {
  type: QuestionType;
  global: string | null;
  local: string;
  question: Annotated;
  fullAnswer: Annotated;
  answer: string;
  program: Program;
}

interface Ctx { scene: Scene; split: Split; rng: Rng; bal: Balancer }

/** Whether a phrase may be asked in this split (no held-out colour×shape outside test_novel). */
function allowed(ctx: Ctx, d: Desc): boolean {
  return ctx.split === "test_novel" || !isHeldOut(d.color, d.shape);
}

/** How many and which attributes an open noun phrase names (1–3 of the 4). */
function randomKinds(rng: Rng): AttributeKind[] {
  const n = rng.pick([1, 1, 2, 2, 2, 3, 3]);
  const picked = rng.sample(ATTRIBUTE_KINDS, n);
  return ATTRIBUTE_KINDS.filter((k) => picked.includes(k));
}

/** A description over `kinds` that no object of `pool` matches, or null. */
function absentDesc(ctx: Ctx, kinds: readonly AttributeKind[], pool: readonly SceneObject[] = ctx.scene.objects): Desc | null {
  for (let t = 0; t < 30; t++) {
    const d: Desc = {};
    for (const k of kinds) (d as Record<string, string>)[k] = ctx.rng.pick(ATTRIBUTE_VALUES[k]);
    if (allowed(ctx, d) && !pool.some((o) => matches(o, d))) return d;
  }
  return null;
}

function presentDescs(ctx: Ctx, kinds: readonly AttributeKind[], pool: readonly SceneObject[] = ctx.scene.objects): Desc[] {
  const out: Desc[] = [];
  for (const o of pool) {
    const d = descOf(o, kinds);
    if (allowed(ctx, d) && !out.some((e) => sameDesc(e, d))) out.push(d);
  }
  return out;
}

const np = (d: Desc) => descPhrase(d);
const pl = (d: Desc) => descPhrase(d, { plural: true });
const ref = (text: string, o: SceneObject) => ({ text, ref: o.id });
/** The value of `kind` as words ("a circle" for shapes, "red", "metal"). */
const valueText = (kind: AttributeKind, v: string) => (kind === "shape" ? article(v) : v);

/** Objects with a unique description not naming `without` (and allowed here), with that description. */
function referable(ctx: Ctx, without: readonly AttributeKind[] = []): [SceneObject, Desc][] {
  const kinds = ATTRIBUTE_KINDS.filter((k) => !without.includes(k));
  const out: [SceneObject, Desc][] = [];
  for (const o of ctx.scene.objects) {
    const d = uniqueDesc(ctx.scene.objects, o, kinds, ctx.rng);
    if (d && allowed(ctx, d)) out.push([o, d]);
  }
  return out;
}

function withValue(d: Desc, kind: AttributeKind, v: string): Desc {
  return { ...d, [kind]: v } as Desc;
}

const unique = (xs: readonly string[]) => [...new Set(xs)];

// ---- builders: each returns null when the scene cannot support its form ----

function exist(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  for (let t = 0; t < 8; t++) {
    const kinds = randomKinds(rng);
    const present = presentDescs(ctx, kinds), absent = absentDesc(ctx, kinds);
    if (present.length === 0 || !absent) continue;
    const answer = bal.choose(`exist:${kinds.join("+")}`, YES_NO, rng);
    const d = answer === "yes" ? rng.pick(present) : absent;
    const T = QUESTION_TEMPLATES.exist;
    const p = new Program();
    p.step("exist", "?", [p.find(scene, d)]);
    return {
      type: "exist", global: null, local: `exist-${kinds.join("+")}`, answer, program: p,
      question: annotate(T.q, { np: article(np(d)) }),
      fullAnswer: annotate(answer === "yes" ? T.yes : T.no, { np: article(np(d)), bare: np(d) }),
    };
  }
  return null;
}

/** The noun-phrase forms counting questions use: one or two attributes. */
const COUNT_FORMS = [...ATTRIBUTE_KINDS.map((k) => [k]), ...ATTRIBUTE_KINDS.flatMap((k, i) => ATTRIBUTE_KINDS.slice(i + 1).map((l) => [k, l]))];

function count(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  // Answers are balanced within each form ("How many red objects", "How many small circles"),
  // so the wording says nothing about the count; a form whose rare answers lag is skipped.
  for (const kinds of rng.shuffle([...COUNT_FORMS])) {
    const byCount = new Map<string, Desc[]>();
    const add = (c: number, d: Desc) => byCount.set(String(c), [...(byCount.get(String(c)) ?? []), d]);
    for (const d of presentDescs(ctx, kinds)) {
      const c = matching(scene, d).length;
      if (c <= COUNT_MAX) add(c, d);
    }
    const absent = absentDesc(ctx, kinds);
    if (absent) add(0, absent);
    const answer = bal.chooseStrict(`count:${kinds.join("+")}`, COUNT_ANSWERS.filter((a) => byCount.has(a)), COUNT_ANSWERS, rng);
    if (answer === null) continue;
    const d = rng.pick(byCount.get(answer)!);
    const k = Number(answer);
    const T = QUESTION_TEMPLATES.count;
    const p = new Program();
    p.step("count", "", [p.find(scene, d)]);
    return {
      type: "count", global: "count", local: `count-${kinds.join("+")}`, answer, program: p,
      question: annotate(T.q, { pl: pl(d) }),
      fullAnswer: annotate(k === 0 ? T.zero : k === 1 ? T.one : T.many, { pl: pl(d), sg: np(d), k: NUMBER_WORDS[k]! }),
    };
  }
  return null;
}

function queryAttr(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  for (const kind of rng.shuffle([...ATTRIBUTE_KINDS])) {
    const objs = referable(ctx, [kind]);
    const answer = bal.chooseStrict(`queryAttr:${kind}`, unique(objs.map(([o]) => o[kind])), ATTRIBUTE_VALUES[kind], rng);
    if (answer === null) continue;
    const [o, d] = rng.pick(objs.filter(([o]) => o[kind] === answer));
    const T = QUESTION_TEMPLATES.queryAttr[kind];
    const p = new Program();
    p.step("query", kind, [p.find(scene, d)]);
    return {
      type: "queryAttr", global: kind, local: `queryAttr-${kind}`, answer, program: p,
      question: annotate(T.q, { np: ref(np(d), o) }),
      fullAnswer: annotate(T.a, { np: ref(np(d), o), v: valueText(kind, answer) }),
    };
  }
  return null;
}

function verifyAttr(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const kind = rng.pick(ATTRIBUTE_KINDS);
  const objs = referable(ctx, [kind]);
  if (objs.length === 0) return null;
  const [o, d] = rng.pick(objs);
  const wrong = ATTRIBUTE_VALUES[kind].filter((v) => v !== o[kind] && allowed(ctx, withValue(d, kind, v)));
  const answer = bal.choose(`verifyAttr:${kind}`, wrong.length > 0 ? YES_NO : ["yes"], rng);
  const asked = answer === "yes" ? o[kind] : rng.pick(wrong);
  const T = QUESTION_TEMPLATES.verifyAttr[kind];
  const p = new Program();
  p.step(`verify ${kind}`, asked, [p.find(scene, d)]);
  return {
    type: "verifyAttr", global: null, local: `verifyAttr-${kind}`, answer, program: p,
    question: annotate(T.q, { np: ref(np(d), o), v: valueText(kind, asked) }),
    fullAnswer: annotate(answer === "yes" ? T.yes : T.no, { np: ref(np(d), o), v: valueText(kind, asked), actual: valueText(kind, o[kind]) }),
  };
}

function chooseAttr(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  for (const kind of rng.shuffle([...ATTRIBUTE_KINDS])) {
    const objs = referable(ctx, [kind]).filter(([o, d]) =>
      ATTRIBUTE_VALUES[kind].some((v) => v !== o[kind] && allowed(ctx, withValue(d, kind, v))));
    const answer = bal.chooseStrict(`chooseAttr:${kind}`, unique(objs.map(([o]) => o[kind])), ATTRIBUTE_VALUES[kind], rng);
    if (answer === null) continue;
    const [o, d] = rng.pick(objs.filter(([o]) => o[kind] === answer));
    const other = rng.pick(ATTRIBUTE_VALUES[kind].filter((v) => v !== answer && allowed(ctx, withValue(d, kind, v))));
    const [v1, v2] = rng.chance(0.5) ? [answer, other] : [other, answer];
    const T = QUESTION_TEMPLATES.chooseAttr[kind];
    const p = new Program();
    p.step(`choose ${kind}`, `${v1}|${v2}`, [p.find(scene, d)]);
    return {
      type: "chooseAttr", global: kind, local: `chooseAttr-${kind}`, answer, program: p,
      question: annotate(T.q, { np: ref(np(d), o), v1: valueText(kind, v1), v2: valueText(kind, v2) }),
      fullAnswer: annotate(T.a, { np: ref(np(d), o), v: valueText(kind, answer) }),
    };
  }
  return null;
}

function existRel(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const rel = rng.pick(RELATIONS);
  const anchors = referable(ctx);
  if (scene.objects.length < 2 || anchors.length === 0) return null;
  for (let t = 0; t < 8; t++) {
    const [b, db] = rng.pick(anchors);
    const kinds = randomKinds(rng);
    const inRel = scene.objects.filter((a) => a !== b && related(a, rel, b));
    const present = presentDescs(ctx, kinds, inRel);
    // A "no" phrase that names an object elsewhere in the scene when possible, so that
    // the relation, not the mere presence, decides the answer.
    const elsewhere = presentDescs(ctx, kinds, scene.objects.filter((a) => a !== b && !related(a, rel, b)))
      .filter((d) => !inRel.some((a) => matches(a, d)));
    const absent = elsewhere.length > 0 && rng.chance(0.6) ? rng.pick(elsewhere) : absentDesc(ctx, kinds, inRel);
    if (present.length === 0 || !absent) continue;
    const answer = bal.choose(`existRel:${rel}`, YES_NO, rng);
    const d = answer === "yes" ? rng.pick(present) : absent;
    const T = QUESTION_TEMPLATES.existRel;
    const p = new Program();
    p.step("exist", "?", [p.relate(scene, d, rel, p.find(scene, db), b)]);
    const slots = { np1: article(np(d)), bare1: np(d), rel: RELATION_PHRASES[rel], np2: ref(np(db), b) };
    return {
      type: "existRel", global: null, local: `existRel-${rel}`, answer, program: p,
      question: annotate(T.q, slots), fullAnswer: annotate(answer === "yes" ? T.yes : T.no, slots),
    };
  }
  return null;
}

function verifyRel(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const rel = rng.pick(RELATIONS);
  const objs = referable(ctx);
  const pairs = objs.flatMap((a) => objs.filter((b) => b[0] !== a[0]).map((b) => [a, b] as const));
  const yes = pairs.filter(([a, b]) => related(a[0], rel, b[0])), no = pairs.filter(([a, b]) => !related(a[0], rel, b[0]));
  if (yes.length === 0 || no.length === 0) return null;
  const answer = bal.choose(`verifyRel:${rel}`, YES_NO, rng);
  const [[a, da], [b, db]] = rng.pick(answer === "yes" ? yes : no);
  const T = QUESTION_TEMPLATES.verifyRel;
  const p = new Program();
  const ia = p.find(scene, da), ib = p.find(scene, db);
  p.step(`verify rel`, `${RELATION_PHRASES[rel]}`, [ia, ib]);
  const slots = { np1: ref(np(da), a), rel: RELATION_PHRASES[rel], np2: ref(np(db), b) };
  return {
    type: "verifyRel", global: null, local: `verifyRel-${rel}`, answer, program: p,
    question: annotate(T.q, slots), fullAnswer: annotate(answer === "yes" ? T.yes : T.no, slots),
  };
}

function queryRel(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const rel = rng.pick(RELATIONS);
  const anchors = referable(ctx);
  for (const kind of rng.shuffle([...ATTRIBUTE_KINDS])) {
    const others = ATTRIBUTE_KINDS.filter((k) => k !== kind);
    const cands: { a: SceneObject; da: Desc; b: SceneObject; db: Desc }[] = [];
    for (const [b, db] of anchors) {
      const inRel = scene.objects.filter((a) => a !== b && related(a, rel, b));
      for (const a of inRel) {
        const da = uniqueDesc(inRel, a, others, rng, { allowEmpty: true });
        if (da && allowed(ctx, da)) cands.push({ a, da, b, db });
      }
    }
    const answer = bal.chooseStrict(`queryRel:${kind}`, unique(cands.map((c) => c.a[kind])), ATTRIBUTE_VALUES[kind], rng);
    if (answer === null) continue;
    const { a, da, b, db } = rng.pick(cands.filter((c) => c.a[kind] === answer));
    const T = QUESTION_TEMPLATES.queryRel[kind];
    const p = new Program();
    p.step("query", kind, [p.relate(scene, da, rel, p.find(scene, db), b)]);
    const slots = { np1: ref(np(da), a), rel: RELATION_PHRASES[rel], np2: ref(np(db), b), v: valueText(kind, answer) };
    return {
      type: "queryRel", global: kind, local: `queryRel-${kind}`, answer, program: p,
      question: annotate(T.q, slots), fullAnswer: annotate(T.a, slots),
    };
  }
  return null;
}

function twoSame(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const kind = rng.pick(ATTRIBUTE_KINDS);
  const objs = referable(ctx, [kind]);
  const pairs = objs.flatMap((a, i) => objs.slice(i + 1).map((b) => [a, b] as const));
  const same = pairs.filter(([a, b]) => a[0][kind] === b[0][kind]), diff = pairs.filter(([a, b]) => a[0][kind] !== b[0][kind]);
  if (same.length === 0 || diff.length === 0) return null;
  const answer = bal.choose(`twoSame:${kind}`, YES_NO, rng);
  const pair = rng.pick(answer === "yes" ? same : diff);
  const [[a, da], [b, db]] = rng.chance(0.5) ? pair : [pair[1], pair[0]];
  const T = QUESTION_TEMPLATES.twoSame;
  const p = new Program();
  p.step(`same ${kind}`, "", [p.find(scene, da), p.find(scene, db)]);
  const slots = { np1: ref(np(da), a), np2: ref(np(db), b), kind };
  return {
    type: "twoSame", global: null, local: `twoSame-${kind}`, answer, program: p,
    question: annotate(T.q, slots), fullAnswer: annotate(answer === "yes" ? T.yes : T.no, slots),
  };
}

function compare(ctx: Ctx): Built | null {
  const { rng, bal, scene } = ctx;
  const which = rng.pick(["larger", "smaller"] as const);
  const objs: [SceneObject, Desc][] = [];
  for (const o of scene.objects) {
    const d = uniqueDesc(scene.objects, o, ["color", "material", "shape"], rng, { required: ["shape"] });
    if (d && allowed(ctx, d)) objs.push([o, d]);
  }
  const pairs = objs.flatMap((a) => objs.filter((b) => a[0].size !== b[0].size && a[0].shape !== b[0].shape).map((b) => [a, b] as const));
  if (pairs.length === 0) return null;
  // Balance which of the two named objects is the answer; the answer is its shape.
  const position = bal.choose(`compare:${which}`, ["first", "second"], rng);
  const [x, y] = rng.pick(pairs);
  const [winner, loser] = (x[0].size === "large") === (which === "larger") ? [x, y] : [y, x];
  const [first, second] = position === "first" ? [winner, loser] : [loser, winner];
  const [w, dw] = winner;
  const T = QUESTION_TEMPLATES.compare[which];
  const p = new Program();
  p.step(which === "larger" ? "choose larger" : "choose smaller", "", [p.find(scene, first[1]), p.find(scene, second[1])]);
  return {
    type: "compare", global: null, local: `compare-${which}`, answer: w.shape, program: p,
    question: annotate(T.q, { np1: ref(np(first[1]), first[0]), np2: ref(np(second[1]), second[0]) }),
    fullAnswer: annotate(T.a, { np: ref(np(dw), w) }),
  };
}

function logical(ctx: Ctx, op: "and" | "or"): Built | null {
  const { rng, bal, scene } = ctx;
  for (let t = 0; t < 8; t++) {
    // Different attribute sets, so the two phrases always differ.
    const k1 = randomKinds(rng), k2 = randomKinds(rng);
    if (k1.join() === k2.join()) continue;
    const p1 = presentDescs(ctx, k1), p2 = presentDescs(ctx, k2), a1 = absentDesc(ctx, k1), a2 = absentDesc(ctx, k2);
    if (p1.length === 0 || p2.length === 0 || !a1 || !a2) continue;
    const type = op === "and" ? "existAnd" : "existOr";
    const answer = bal.choose(type, YES_NO, rng);
    // Which phrases name something present: and-yes both; or-no neither; otherwise mostly one.
    const both = (op === "and") === (answer === "yes");
    const [has1, has2] = both ? [op === "and", op === "and"]
      : rng.chance(0.7) ? (rng.chance(0.5) ? [true, false] : [false, true]) : [op === "or", op === "or"];
    const d1 = has1 ? rng.pick(p1) : a1, d2 = has2 ? rng.pick(p2) : a2;
    const T = QUESTION_TEMPLATES[type];
    const p = new Program();
    const e1 = p.step("exist", "?", [p.find(scene, d1)]);
    const e2 = p.step("exist", "?", [p.find(scene, d2)]);
    p.step(op, "", [e1, e2]);
    const slots = {
      pl1: pl(d1), pl2: pl(d2),
      missing: !has1 && !has2 ? `${pl(d1)} or ${pl(d2)}` : pl(has1 ? d2 : d1),
      present: has1 && has2 ? `${pl(d1)} and ${pl(d2)}` : pl(has1 ? d1 : d2),
    };
    return {
      type, global: null, local: `${type}`, answer, program: p,
      question: annotate(T.q, slots), fullAnswer: annotate(answer === "yes" ? T.yes : T.no, slots),
    };
  }
  return null;
}

const BUILDERS: { [T in QuestionType]: (ctx: Ctx) => Built | null } = {
  exist, count, queryAttr, verifyAttr, chooseAttr, existRel, verifyRel, queryRel, twoSame, compare,
  existAnd: (ctx) => logical(ctx, "and"),
  existOr: (ctx) => logical(ctx, "or"),
};

/**
 * GQA questions for the scenes of one split, one per family per scene (fewer where a scene
 * cannot support a family, e.g. relations with one object). Call `forScene` in scene order.
 * ```ts
 * const gen = new QuestionGenerator("train");
 * const qs = gen.forScene(scene, new Rng(seed, "gqa", scene.id), nextId); // [[questionId, question], ...]
 * ```
 */
export class QuestionGenerator {
  private readonly bal = new Balancer();
  constructor(private readonly split: Split) {}

  forScene(scene: Scene, rng: Rng, firstId: number): [string, GqaQuestion][] {
    const ctx: Ctx = { scene, split: this.split, rng, bal: this.bal };
    const out: [string, GqaQuestion][] = [];
    for (const family of FAMILIES) {
      const types = rng.shuffle((Object.keys(QUESTION_TYPES) as QuestionType[]).filter((t) => QUESTION_TYPES[t].family === family));
      for (const type of types) {
        const b = BUILDERS[type](ctx);
        if (!b) continue;
        const id = String(firstId + out.length);
        out.push([id, toGqa(scene, id, b)]);
        break;
      }
    }
    return out;
  }
}

function toGqa(scene: Scene, id: string, b: Built): GqaQuestion {
  const t = QUESTION_TYPES[b.type];
  return {
    imageId: scene.imageId,
    question: b.question.text,
    answer: b.answer,
    fullAnswer: b.fullAnswer.text,
    isBalanced: true,
    groups: { global: b.global, local: b.local },
    entailed: [],
    equivalent: [id],
    types: { structural: t.structural, semantic: t.semantic, detailed: b.type },
    annotations: { question: b.question.ann, answer: {}, fullAnswer: b.fullAnswer.ann },
    semantic: b.program.ops,
    semanticStr: b.program.toString(),
  };
}
