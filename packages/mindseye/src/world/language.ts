// The world's English: how attributes, numbers, positions and relations are worded, noun
// phrases, and the template filler every text goes through. Every word the world writes is in
// one of these tables or in a template string a module exports (captions, questions, science,
// jigsaw), which is how the tokenizer's vocabulary is known to be complete (tokenizer_json.ts).
import { GRID, type Desc, type Relation, type Size, type Material } from "./scene.js";
import type { Rng } from "./rng.js";

/** Size words: the first is the canonical one (questions, answers); captions vary. */
export const SIZE_WORDS: { readonly [S in Size]: readonly string[] } = { small: ["small", "little"], large: ["large", "big"] };
/** Material adjectives ("a wooden star"); the noun form ("made of wood") is the material's name. */
export const MATERIAL_ADJECTIVES: { readonly [M in Material]: readonly string[] } = {
  metal: ["metal", "metallic"],
  rubber: ["rubber"],
  wood: ["wooden"],
  glass: ["glass"],
};
/** Nouns for an object whose shape a phrase leaves out. */
export const GENERIC_NOUNS = ["object", "shape", "thing"] as const;
/** Number words 0–6 (0 reads "no"). */
export const NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six"] as const;

/** "to the left of" etc.: "A is {phrase} B". */
export const RELATION_PHRASES: { readonly [R in Relation]: string } = {
  left: "to the left of",
  right: "to the right of",
  above: "above",
  below: "below",
};
/** "B with A {phrase}": the same relation seen from B. */
export const RELATION_FROM_OBJECT: { readonly [R in Relation]: string } = {
  left: "to its left",
  right: "to its right",
  above: "above it",
  below: "below it",
};
/** Where a grid cell is, [row][col]. */
export const POSITION_PHRASES: readonly (readonly string[])[] = [
  ["in the top left corner", "at the top", "in the top right corner"],
  ["on the left", "in the center", "on the right"],
  ["in the bottom left corner", "at the bottom", "in the bottom right corner"],
];
if (POSITION_PHRASES.length !== GRID) throw new Error("POSITION_PHRASES must cover the grid");

/** Words that are only in fixed phrases (articles and the like), for the vocabulary. */
export const FUNCTION_WORDS = ["a", "an", "the", "and", "or", "made", "of", "is", "are"] as const;

export function plural(noun: string): string {
  return /(s|x|ch|sh)$/.test(noun) ? `${noun}es` : `${noun}s`;
}

export function article(phrase: string): string {
  return `${/^[aeiou]/.test(phrase) ? "an" : "a"} ${phrase}`;
}

export function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** "a, b and c". */
export function listPhrase(items: readonly string[]): string {
  if (items.length === 0) throw new Error("listPhrase of nothing");
  if (items.length === 1) return items[0]!;
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** How a noun phrase is worded beyond its attributes (captions vary it; questions do not). */
export interface Wording {
  sizeWord: number; // index into SIZE_WORDS[size]
  materialWord: number; // index into MATERIAL_ADJECTIVES[material]
  materialAfter: boolean; // "a red circle made of metal" instead of "a red metal circle"
  generic: (typeof GENERIC_NOUNS)[number]; // noun when the shape is left out
}

export const CANONICAL: Wording = { sizeWord: 0, materialWord: 0, materialAfter: false, generic: "object" };

export function variedWording(rng: Rng): Wording {
  return { sizeWord: rng.int(2), materialWord: rng.int(2), materialAfter: rng.chance(0.25), generic: rng.pick(GENERIC_NOUNS) };
}

/**
 * The noun phrase of a description, without determiner: "large red metal circle",
 * "red object", "small circles made of glass" (plural).
 */
export function descPhrase(d: Desc, o: { plural?: boolean; wording?: Wording } = {}): string {
  const w = o.wording ?? CANONICAL;
  const words: string[] = [];
  if (d.size) words.push(adjective("size", d.size, w));
  if (d.color) words.push(d.color);
  if (d.material && !w.materialAfter) words.push(adjective("material", d.material, w));
  const noun = d.shape ?? w.generic;
  words.push(o.plural ? plural(noun) : noun);
  if (d.material && w.materialAfter) words.push("made", "of", d.material);
  return words.join(" ");
}

/** The adjective for a size, colour or material value, in the wording's form ("big", "wooden"). */
export function adjective(kind: "size" | "color" | "material", value: string, w: Wording = CANONICAL): string {
  if (kind === "color") return value;
  const forms = kind === "size" ? SIZE_WORDS[value as Size] : MATERIAL_ADJECTIVES[value as Material];
  return forms[(kind === "size" ? w.sizeWord : w.materialWord) % forms.length]!;
}

/** Text slots `{name}` filled in; a missing slot is a programming error. */
export function fill(template: string, slots: Readonly<Record<string, string>>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = slots[k];
    if (v === undefined) throw new Error(`template "${template}" needs slot {${k}}`);
    return v;
  });
}

/** The template's fixed text, slots removed: what the vocabulary must cover. */
export function templateText(template: string): string {
  return template.replace(/\{\w+\}/g, " ");
}

/** Words as the tokenizer's Whitespace pre-tokenizer splits them: \w+ | [^\w\s]+. */
export function words(text: string): string[] {
  return text.match(/\w+|[^\w\s]+/g) ?? [];
}
