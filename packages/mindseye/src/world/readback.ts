// Reading the world's English back: a parser for its noun phrases, a checker that a caption is
// true of a scene, and an answerer that works a GQA question out from its text and the scene
// JSON alone. It shares no code with the generators except the scene's definitions (what
// "matches" and "left of" mean), so tests use it to check captions and answers independently.
import {
  ATTRIBUTE_KINDS, matches, related, type AttributeKind, type Desc, type Relation, type Scene, type SceneObject,
} from "./scene.js";

const ADJECTIVES: Readonly<Record<string, readonly [AttributeKind, string]>> = {
  small: ["size", "small"], little: ["size", "small"], large: ["size", "large"], big: ["size", "large"],
  red: ["color", "red"], orange: ["color", "orange"], yellow: ["color", "yellow"], green: ["color", "green"],
  cyan: ["color", "cyan"], blue: ["color", "blue"], purple: ["color", "purple"], pink: ["color", "pink"],
  metal: ["material", "metal"], metallic: ["material", "metal"], rubber: ["material", "rubber"],
  wooden: ["material", "wood"], glass: ["material", "glass"],
};
const MATERIAL_NOUNS = ["metal", "rubber", "wood", "glass"];
const SHAPE_NOUNS = ["circle", "square", "triangle", "diamond", "star", "cross"];
const NOUNS: Readonly<Record<string, { shape?: string; plural: boolean }>> = Object.fromEntries([
  ...SHAPE_NOUNS.flatMap((s) => [[s, { shape: s, plural: false }], [s === "cross" ? "crosses" : `${s}s`, { shape: s, plural: true }]]),
  ...["object", "shape", "thing"].flatMap((g) => [[g, { plural: false }], [`${g}s`, { plural: true }]]),
]);
const DETERMINERS: Readonly<Record<string, number | null>> = {
  a: 1, an: 1, the: null, no: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6,
};
export const NUMBERS: Readonly<Record<string, number>> = { one: 1, two: 2, three: 3, four: 4, five: 5, six: 6 };

export interface ParsedPhrase {
  /** The determiner, lower-cased ("a", "the", "two"), or "" if none. */
  det: string;
  desc: Desc;
  plural: boolean;
}

/** "a small red circle made of metal" → its determiner and description; null if not a phrase. */
export function parsePhrase(text: string): ParsedPhrase | null {
  const t = text.trim().split(" ");
  let i = 0, det = "";
  if (t[0] !== undefined && t[0].toLowerCase() in DETERMINERS) det = t[i++]!.toLowerCase();
  const desc: Record<string, string> = {};
  while (i < t.length && ADJECTIVES[t[i]!]) {
    const [kind, value] = ADJECTIVES[t[i++]!]!;
    if (desc[kind] !== undefined) return null;
    desc[kind] = value;
  }
  const noun = NOUNS[t[i++] ?? ""];
  if (!noun) return null;
  if (noun.shape) desc.shape = noun.shape;
  if (t[i] === "made" && t[i + 1] === "of" && MATERIAL_NOUNS.includes(t[i + 2] ?? "") && desc.material === undefined) {
    desc.material = t[i + 2]!;
    i += 3;
  }
  return i === t.length ? { det, desc: desc as Desc, plural: noun.plural } : null;
}

function parsePhraseOrThrow(text: string): ParsedPhrase {
  const p = parsePhrase(text);
  if (!p) throw new Error(`not a noun phrase: "${text}"`);
  return p;
}

/** "a, b and c" → ["a", "b", "c"] (noun phrases contain neither commas nor "and"). */
export function splitList(text: string): string[] {
  return text.split(/, | and /);
}

const objectsMatching = (scene: Scene, d: Desc) => scene.objects.filter((o) => matches(o, d));

/** Whether distinct objects can be assigned to the descriptions in order, each matching its own. */
function assignable(scene: Scene, descs: readonly Desc[], ok: (chosen: SceneObject[]) => boolean = () => true): boolean {
  const go = (i: number, chosen: SceneObject[]): boolean =>
    i === descs.length ? ok(chosen) : scene.objects.some((o) => !chosen.includes(o) && matches(o, descs[i]!) && go(i + 1, [...chosen, o]));
  return go(0, []);
}

const REL_WORDS = "to the left of|to the right of|above|below";
const REL_OF: Readonly<Record<string, Relation>> = { "to the left of": "left", "to the right of": "right", above: "above", below: "below" };
const REL_IT: Readonly<Record<string, Relation>> = { "to its left": "left", "to its right": "right", "above it": "above", "below it": "below" };
const POSITIONS: Readonly<Record<string, [number, number]>> = {
  "in the top left corner": [0, 0], "at the top": [0, 1], "in the top right corner": [0, 2],
  "on the left": [1, 0], "in the center": [1, 1], "on the right": [1, 2],
  "in the bottom left corner": [2, 0], "at the bottom": [2, 1], "in the bottom right corner": [2, 2],
};
const POS_WORDS = Object.keys(POSITIONS).join("|");

/**
 * Null if `caption` is true of `scene`, else why not (including "not understood").
 * ```ts
 * checkCaption(scene, "A red circle is to the left of a blue star."); // null when true
 * ```
 */
export function checkCaption(scene: Scene, caption: string): string | null {
  if (!caption.endsWith(".")) return "no final period";
  const c = caption.slice(0, -1);
  const n = scene.objects.length;
  const phrase = parsePhraseOrThrow;
  const exists = (t: string) => objectsMatching(scene, phrase(t).desc).length > 0;
  const lc = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
  let m: RegExpMatchArray | null;
  const fail = (why: string) => `${why}: "${caption}"`;

  if ((m = c.match(/^In the picture, (.+)$/))) {
    // Every object, each once, at its place, in reading order.
    const items = splitList(m[1]!).map((t) => t.match(new RegExp(`^(.+) (${POS_WORDS})$`)));
    if (items.some((x) => x === null) || items.length !== n) return fail("not every object with its place");
    const ordered = [...scene.objects].sort((a, b) => a.row - b.row || a.col - b.col);
    return items.every((x, i) => {
      const o = ordered[i]!, [row, col] = POSITIONS[x![2]!]!;
      return o.row === row && o.col === col && matches(o, phrase(x![1]!).desc) && ATTRIBUTE_KINDS.every((k) => phrase(x![1]!).desc[k] !== undefined);
    }) ? null : fail("layout false");
  }
  if ((m = c.match(/^The (\w+) (?:objects|shapes in the picture) are (.+)$/))) {
    const items = splitList(m[2]!).map((t) => phrase(t).desc);
    return NUMBERS[m[1]!] === n && items.length === n && assignable(scene, items) ? null : fail("not the full list");
  }
  if ((m = c.match(/^The only (?:object|shape in the picture) is (.+)$/))) return n === 1 && exists(m[1]!) ? null : fail("not the only object");
  if ((m = c.match(/^(\w+) (?:objects on a gray background|shapes in total)$/)) || (m = c.match(/^There (?:are|is) (\w+) objects? in the picture$/))
    || (m = c.match(/^(One) (?:object on a gray background|shape in total)$/))) {
    return NUMBERS[m[1]!.toLowerCase()] === n ? null : fail("wrong total");
  }
  if ((m = c.match(/^(.+) alone on a gray background$/)) || (m = c.match(/^Just (.+), nothing else$/))) {
    return n === 1 && exists(lc(m[1]!)) ? null : fail("not alone");
  }
  if ((m = c.match(/^(?:All (\w+) objects|Every object in the picture|Both objects) (?:are|is) (made of )?(\w+)$/))) {
    if (m[1] !== undefined && NUMBERS[m[1]] !== n) return fail("wrong total");
    if (c.startsWith("Both") && n !== 2) return fail("not two objects");
    const d = m[2] ? { material: m[3] } : ADJECTIVES[m[3]!] ? { [ADJECTIVES[m[3]!]![0]]: ADJECTIVES[m[3]!]![1] } : null;
    return d && scene.objects.every((o) => matches(o, d as Desc)) ? null : fail("not shared by all");
  }
  if ((m = c.match(/^(.+) and (\w+) other (?:objects?|shapes?|things?)$/))) {
    return exists(lc(m[1]!)) && NUMBERS[m[2]!] === n - 1 ? null : fail("wrong focus");
  }
  if ((m = c.match(/^From left to right, (.+)$/))) {
    const items = splitList(m[1]!).map((t) => phrase(t).desc);
    return assignable(scene, items, (os) => os.every((o, i) => i === 0 || os[i - 1]!.col < o.col)) ? null : fail("not left to right");
  }
  if ((m = c.match(/^(?:An image with|A picture of|A scene with) (.+)$/)) || (m = c.match(/^(.+) on a gray background$/))) {
    return assignable(scene, splitList(lc(m[1]!)).map((t) => phrase(t).desc)) ? null : fail("not all present");
  }
  const rel = (a: string, r: Relation, b: string) =>
    scene.objects.some((x) => matches(x, phrase(a).desc) && scene.objects.some((y) => y !== x && matches(y, phrase(b).desc) && related(x, r, y)));
  if ((m = c.match(new RegExp(`^There is (.+?) (${REL_WORDS}) (.+)$`))) || (m = c.match(new RegExp(`^(.+?) is (${REL_WORDS}) (.+)$`)))) {
    return rel(lc(m[1]!), REL_OF[m[2]!]!, m[3]!) ? null : fail("relation false");
  }
  if ((m = c.match(/^(.+) with (.+) (to its left|to its right|above it|below it)$/))) {
    return rel(m[2]!, REL_IT[m[3]!]!, lc(m[1]!)) ? null : fail("relation false");
  }
  const at = (t: string, pos: string) => scene.objects.some((o) => matches(o, phrase(t).desc) && o.row === POSITIONS[pos]![0] && o.col === POSITIONS[pos]![1]);
  if ((m = c.match(new RegExp(`^(.+) (${POS_WORDS}) and (.+) (${POS_WORDS})$`)))) {
    return at(lc(m[1]!), m[2]!) && at(m[3]!, m[4]!) ? null : fail("position false");
  }
  if ((m = c.match(new RegExp(`^(.+) (${POS_WORDS})$`)))) return at(lc(m[1]!), m[2]!) ? null : fail("position false");
  if ((m = c.match(new RegExp(`^(${POS_WORDS}), there is (.+)$`, "i")))) return at(m[2]!, lc(m[1]!)) ? null : fail("position false");
  if ((m = c.match(/^(?:There (?:are|is) )?(.+)$/))) {
    // Groups: "two red objects and one blue object", each count exact.
    for (const item of splitList(lc(m[1]!))) {
      const p = parsePhrase(item);
      if (!p || !(p.det in NUMBERS)) return fail("not understood");
      if (objectsMatching(scene, p.desc).length !== NUMBERS[p.det]) return fail(`wrong count for "${item}"`);
    }
    return null;
  }
  return fail("not understood");
}

const yesNo = (b: boolean) => (b ? "yes" : "no");
const KIND_WORDS = ATTRIBUTE_KINDS.join("|");

/**
 * The answer to a GQA question of the world, worked out from its text (and detailed type) and
 * the scene; throws if the question is ambiguous or not understood.
 * ```ts
 * answerQuestion(scene, "Is there a red circle?", "exist"); // "yes" | "no"
 * ```
 */
export function answerQuestion(scene: Scene, question: string, detailed: string): string {
  return readQuestion(scene, question, detailed).answer;
}

/**
 * The answer, and every description the question's text puts together (its noun phrases, and
 * for "Is the star red?" the phrase with the asked value: {color: "red", shape: "star"}).
 */
export function readQuestion(scene: Scene, question: string, detailed: string): { answer: string; phrases: Desc[] } {
  const phrases: Desc[] = [];
  const answer = answerOf(scene, question, detailed, phrases);
  return { answer, phrases };
}

function answerOf(scene: Scene, question: string, detailed: string, phrases: Desc[]): string {
  const objs = scene.objects;
  const phrase = (t: string) => {
    const p = parsePhraseOrThrow(t);
    phrases.push(p.desc);
    return p;
  };
  const withValue = (t: string, kind: string, v: string) => phrases.push({ ...parsePhraseOrThrow(t).desc, [kind]: v });
  const theOne = (pool: readonly SceneObject[], text: string) => {
    const found = pool.filter((o) => matches(o, phrase(text).desc));
    if (found.length !== 1) throw new Error(`"the ${text}" names ${found.length} objects`);
    return found[0]!;
  };
  const all = (t: string) => objs.filter((o) => matches(o, phrase(t).desc));
  const value = (o: SceneObject, kind: string) => o[kind as AttributeKind];
  let m: RegExpMatchArray | null = null;
  const need = (re: RegExp) => {
    m = question.match(re);
    if (!m) throw new Error(`${detailed} question not understood: "${question}"`);
    return m;
  };
  switch (detailed) {
    case "exist": {
      const [, np] = need(/^Is there (an? .+)\?$/);
      return yesNo(all(np!).length > 0);
    }
    case "count": {
      const [, np] = need(/^How many (.+) are there\?$/);
      if (!phrase(np!).plural) throw new Error("count of a singular phrase");
      return String(all(np!).length);
    }
    case "queryAttr": {
      const [, kind, np] = need(new RegExp(`^What (${KIND_WORDS}) is the (.+?)(?: made of)?\\?$`));
      if ((phrase(np!).desc as Record<string, string>)[kind!] !== undefined) throw new Error("the phrase names the asked attribute");
      return value(theOne(objs, np!), kind!);
    }
    case "verifyAttr": {
      let mm: RegExpMatchArray | null;
      if ((mm = question.match(/^Is the (.+) made of (\w+)\?$/))) {
        withValue(mm[1]!, "material", mm[2]!);
        return yesNo(theOne(objs, mm[1]!).material === mm[2]);
      }
      if ((mm = question.match(/^Is the (.+) an? (\w+)\?$/)) && SHAPE_NOUNS.includes(mm[2]!)) {
        withValue(mm[1]!, "shape", mm[2]!);
        return yesNo(theOne(objs, mm[1]!).shape === mm[2]);
      }
      const [, np, adj] = need(/^Is the (.+) (\w+)\?$/);
      const [kind, v] = ADJECTIVES[adj!] ?? [];
      if (!kind) throw new Error(`not an attribute: ${adj}`);
      withValue(np!, kind, v!);
      return yesNo(value(theOne(objs, np!), kind) === v);
    }
    case "chooseAttr": {
      const [, np, madeOf, v1, v2] = need(/^Is the (.+?) (made of )?(?:an? )?(\w+) or (?:an? )?(\w+)\?$/);
      const o = theOne(objs, np!);
      const kind = madeOf ? "material" : SHAPE_NOUNS.includes(v1!) ? "shape" : ADJECTIVES[v1!]![0];
      for (const v of [v1!, v2!]) withValue(np!, kind, kind === "shape" || kind === "material" ? v : ADJECTIVES[v]![1]);
      const hits = [v1, v2].filter((v) => value(o, kind) === v);
      if (hits.length !== 1) throw new Error("not exactly one option is right");
      return hits[0]!;
    }
    case "existRel": {
      const [, np1, r, np2] = need(new RegExp(`^Is there (an? .+?) (${REL_WORDS}) the (.+)\\?$`));
      const b = theOne(objs, np2!);
      return yesNo(all(np1!).some((a) => a !== b && related(a, REL_OF[r!]!, b)));
    }
    case "verifyRel": {
      const [, np1, r, np2] = need(new RegExp(`^Is the (.+?) (${REL_WORDS}) the (.+)\\?$`));
      return yesNo(related(theOne(objs, np1!), REL_OF[r!]!, theOne(objs, np2!)));
    }
    case "queryRel": {
      const [, kind, np1, r, np2] = need(new RegExp(`^What (${KIND_WORDS}) is the (.+?) (${REL_WORDS}) the (.+?)(?: made of)?\\?$`));
      const b = theOne(objs, np2!);
      return value(theOne(objs.filter((a) => a !== b && related(a, REL_OF[r!]!, b)), np1!), kind!);
    }
    case "twoSame": {
      const [, np1, kind, np2] = need(new RegExp(`^Is the (.+) the same (${KIND_WORDS}) as the (.+)\\?$`));
      return yesNo(value(theOne(objs, np1!), kind!) === value(theOne(objs, np2!), kind!));
    }
    case "compare": {
      const [, which, np1, np2] = need(/^Which is (larger|smaller), the (.+) or the (.+)\?$/);
      const a = theOne(objs, np1!), b = theOne(objs, np2!);
      if (a.size === b.size || a.shape === b.shape) throw new Error("compare of equal sizes or shapes");
      return ((a.size === "large") === (which === "larger") ? a : b).shape;
    }
    case "existAnd": {
      const [, p1, p2] = need(/^Are there both (.+) and (.+)\?$/);
      return yesNo(all(p1!).length > 0 && all(p2!).length > 0);
    }
    case "existOr": {
      const [, p1, p2] = need(/^Are there either (.+) or (.+)\?$/);
      return yesNo(all(p1!).length > 0 || all(p2!).length > 0);
    }
    default:
      throw new Error(`unknown detailed type ${detailed}`);
  }
}
