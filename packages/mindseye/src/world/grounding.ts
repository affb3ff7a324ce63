// Grounding questions, the world's counterpart of the region data (Visual Genome, RefCOCO) that
// standard VLM recipes such as LLaVA-1.5 mix into their base training: "What is in the top left
// corner?" → "a large red metal circle" (a place read out) and "Where is the large red metal
// circle?" → "in the top left corner" (a description found). They teach a base VLM to look up a
// cell by place and by content — skills every task family builds on — without any of the
// task families' questions. Built from scenes.json, so they are right by construction.
import type { Rng } from "./rng.js";
import { ATTRIBUTE_KINDS, ATTRIBUTE_VALUES, GRID, RELATIONS, matching, related, uniqueDesc, type Desc, type Scene, type SceneObject } from "./scene.js";
import { POSITION_PHRASES, RELATION_PHRASES, adjective, article, descPhrase, fill } from "./language.js";

export const GROUNDING_TEMPLATES = {
  at: { q: "What is {pos}?", nothing: "nothing" },
  where: { q: "Where is the {np}?" },
  rel: { q: "What is {rel} the {np}?" },
  what: { q: "What is the {np}?" },
} as const;

export interface GroundingPair { kind: keyof typeof GROUNDING_TEMPLATES; question: string; answer: string }

/**
 * How a "where" question names its object: "full" (all four attributes: "the large red metal
 * circle") or "minimal" (the fewest attributes that single it out in its scene, as referring
 * expressions such as RefCOCO's and the world's GQA questions do: "the red object").
 */
export type GroundingDescriptions = "full" | "minimal";

/**
 * Each object that a description can single out (not a twin: "the …" would name two), with its
 * noun phrase: all four attributes ("full") or the fewest that do ("minimal", drawn from `rng`
 * among equally short ones), in scene order.
 */
function singledOut(scene: Scene, rng: Rng, descriptions: GroundingDescriptions): [SceneObject, string][] {
  return scene.objects.filter((o) => matching(scene, o).length === 1)
    .map((o) => [o, descPhrase(descriptions === "full" ? o : uniqueDesc(scene.objects, o, ATTRIBUTE_KINDS, rng)!)]);
}

/**
 * Every object's "where" question (when its full description is unique in the scene) and
 * `atPerScene` "what is at" questions about random cells, empty ones included. The "what is at"
 * questions are the same whichever `descriptions` the "where" questions use.
 * ```ts
 * groundingPairs(scene, new Rng(0, "grounding", scene.id)); // [{kind: "where", question: "Where is the small red metal circle?", answer: "in the top left corner"}, ...]
 * ```
 */
export function groundingPairs(scene: Scene, rng: Rng, atPerScene = 2, descriptions: GroundingDescriptions = "full"): GroundingPair[] {
  const out: GroundingPair[] = [];
  const place = (row: number, col: number) => POSITION_PHRASES[row]![col]!;
  const cells = rng.sample(Array.from({ length: GRID * GRID }, (_, i) => i), atPerScene); // drawn first: "minimal" draws from rng too
  for (const [o, np] of singledOut(scene, rng, descriptions)) out.push({ kind: "where", question: fill(GROUNDING_TEMPLATES.where.q, { np }), answer: place(o.row, o.col) });
  for (const cell of cells) {
    const row = Math.floor(cell / GRID), col = cell % GRID;
    const o = scene.objects.find((x) => x.row === row && x.col === col);
    const pos = place(row, col);
    out.push({ kind: "at", question: fill(GROUNDING_TEMPLATES.at.q, { pos }), answer: o ? article(descPhrase(o)) : GROUNDING_TEMPLATES.at.nothing });
  }
  return out;
}

/**
 * Relation lookups, the world's counterpart of Visual Genome's relationships: "What is to the left
 * of the red object?" → "a small blue metal circle", for every object with a unique description
 * and every relation that exactly one other object stands in to it (the world's GQA relations:
 * "to the left of" is any column further left, as world/questions.ts asks them). They compose a
 * lookup by content with a step across the grid, which world_gqa's relational questions need.
 * Drawn from `rng` only for "minimal" descriptions; `groundingPairs` is unchanged by them.
 * ```ts
 * relationPairs(scene, new Rng(0, "relations", scene.id)); // [{kind: "rel", question: "What is above the small red metal circle?", answer: "a large blue glass square"}, ...]
 * ```
 */
export function relationPairs(scene: Scene, rng: Rng, descriptions: GroundingDescriptions = "full"): GroundingPair[] {
  const out: GroundingPair[] = [];
  for (const [o, np] of singledOut(scene, rng, descriptions)) {
    for (const rel of RELATIONS) {
      const others = scene.objects.filter((x) => x !== o && related(x, rel, o));
      if (others.length !== 1) continue;
      out.push({ kind: "rel", question: fill(GROUNDING_TEMPLATES.rel.q, { rel: RELATION_PHRASES[rel], np }), answer: article(descPhrase(others[0]!)) });
    }
  }
  return out;
}

/**
 * Read-outs, the world's counterpart of RefCOCO's referring expressions read back as region
 * descriptions: "What is the red object?" → "a small red metal circle", for every object with a
 * unique description. They compose a lookup by part of a description with reading the whole
 * object, which world_gqa's attribute questions (queryAttr, chooseAttr, verifyAttr, compare) ask
 * of one attribute at a time. Drawn from `rng` only for "minimal" descriptions. With `absent`, also
 * that many read-outs of descriptions no object fits, answered "nothing" (drawn after the others,
 * which they leave unchanged): finding that nothing fits is what world_gqa's exist questions ask.
 * ```ts
 * readoutPairs(scene, new Rng(0, "readouts", scene.id), "minimal"); // [{kind: "what", question: "What is the red object?", answer: "a small red metal circle"}, ...]
 * ```
 */
export function readoutPairs(scene: Scene, rng: Rng, descriptions: GroundingDescriptions = "full", absent = 0): GroundingPair[] {
  const out: GroundingPair[] = singledOut(scene, rng, descriptions).map(([o, np]) => ({ kind: "what", question: fill(GROUNDING_TEMPLATES.what.q, { np }), answer: article(descPhrase(o)) }));
  for (let i = 0; i < absent; i++) {
    const d = absentDesc(scene, rng, descriptions);
    if (d) out.push({ kind: "what", question: fill(GROUNDING_TEMPLATES.what.q, { np: descPhrase(d) }), answer: GROUNDING_TEMPLATES.at.nothing });
  }
  return out;
}

/**
 * A description that no object of `scene` fits, as generalised referring expressions (gRefCOCO's
 * no-target ones) have: one or two attributes ("minimal") or all four ("full"), drawn at random;
 * null after 20 draws that all fit some object.
 */
function absentDesc(scene: Scene, rng: Rng, descriptions: GroundingDescriptions): Desc | null {
  for (let tries = 0; tries < 20; tries++) {
    const kinds = descriptions === "full" ? ATTRIBUTE_KINDS : rng.sample(ATTRIBUTE_KINDS, rng.pick([1, 2]));
    const d: Desc = {};
    for (const k of kinds) (d as Record<string, string>)[k] = rng.pick(ATTRIBUTE_VALUES[k]);
    if (matching(scene, d).length === 0) return d;
  }
  return null;
}

/**
 * The words that describe each cell of a scene, in the row-major order of the encoder's grid
 * tokens: an object's colour, shape, size and material as captions name them, or "nothing" four
 * times for an empty cell (the base VLM's image-word objective, objectives/image_words.ts).
 * ```ts
 * cellWords(scene)[0]; // ["red", "circle", "small", "metal"]
 * ```
 */
export function cellWords(scene: Scene): string[][] {
  return Array.from({ length: GRID * GRID }, (_, cell) => {
    const o = scene.objects.find((x) => x.row * GRID + x.col === cell);
    const nothing = GROUNDING_TEMPLATES.at.nothing;
    return o ? [o.color, o.shape, adjective("size", o.size), adjective("material", o.material)] : [nothing, nothing, nothing, nothing];
  });
}
