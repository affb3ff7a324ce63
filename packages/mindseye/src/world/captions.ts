// Captions: several per scene. The first describes the whole scene — every object with all four
// attributes and its place, in reading order ("In the picture, a large red metal circle in the
// top left corner and ...") — so one caption determines its image up to position jitter, as a
// detailed COCO caption nearly does; without it no caption could single out one image among
// many, and latent prediction from captions would be ill-posed. The others are drawn from a
// small grammar of styles (exhaustive lists, partial lists, left-to-right order, counts, groups
// by an attribute, relations, positions, a focus object, shared attributes), each with its own
// phrasings and varied noun phrases. Every caption
// is true of its scene (readback.ts checks); they are written as COCO captions JSON, so the
// pretraining reader is the one used for COCO.
import { type Rng } from "./rng.js";
import {
  ATTRIBUTE_KINDS, RELATIONS, related, type Desc, type Scene, type SceneObject, type Split,
} from "./scene.js";
import {
  GENERIC_NOUNS, NUMBER_WORDS, POSITION_PHRASES, RELATION_FROM_OBJECT, RELATION_PHRASES,
  adjective, article, capitalize, descPhrase, fill, listPhrase, plural, variedWording,
} from "./language.js";
import { WORLD_VERSION } from "./version.js";

export const CAPTIONS_PER_SCENE = 5;

/** Every caption style with its phrasings; `{slot}`s are noun phrases, numbers and places. */
export const CAPTION_TEMPLATES = {
  layout: ["In the picture, {list}."],
  listAll: ["The {n} objects are {list}.", "The {n} shapes in the picture are {list}."],
  listOne: ["The only object is {np}.", "The only shape in the picture is {np}."],
  listSome: ["An image with {list}.", "A picture of {list}.", "A scene with {list}.", "{list} on a gray background."],
  leftToRight: ["From left to right, {list}."],
  total: ["{n} objects on a gray background.", "There are {n} objects in the picture.", "{n} shapes in total."],
  totalOne: ["One object on a gray background.", "There is one object in the picture.", "One shape in total."],
  groups: ["There are {groups}.", "{groups}."],
  groupsFirstOne: ["There is {groups}.", "{groups}."],
  relation: ["{a} is {rel} {b}.", "There is {a} {rel} {b}.", "{b} with {a} {relIt}."],
  position: ["{np} {pos}.", "{pos}, there is {np}."],
  positionTwo: ["{np1} {pos1} and {np2} {pos2}."],
  focus: ["{np} and {k} other {noun}."],
  alone: ["{np} alone on a gray background.", "Just {np}, nothing else."],
  shared: ["All {n} objects are {adj}.", "Every object in the picture is {adj}."],
  sharedTwo: ["Both objects are {adj}."],
  sharedMaterial: ["All {n} objects are made of {material}.", "Every object in the picture is made of {material}."],
  sharedMaterialTwo: ["Both objects are made of {material}."],
} as const;

type Style = "list" | "listSome" | "leftToRight" | "total" | "groups" | "relation" | "position" | "focus" | "alone" | "shared";

/** Which attributes a caption mentions for one object: the shape usually, colour often. */
function captionPhrase(o: SceneObject, rng: Rng): string {
  const d: Desc = {};
  if (rng.chance(0.5)) d.size = o.size;
  if (rng.chance(0.75)) d.color = o.color;
  if (rng.chance(0.5)) d.material = o.material;
  if (rng.chance(0.85)) d.shape = o.shape;
  if (d.shape === undefined && d.color === undefined) d.color = o.color;
  return article(descPhrase(d, { wording: variedWording(rng) }));
}

function applicable(scene: Scene): Style[] {
  const n = scene.objects.length;
  const styles: Style[] = ["list", "listSome", "total", "groups", "position"];
  if (n >= 2) styles.push("focus", "relation");
  if (n === 1) styles.push("alone");
  if (new Set(scene.objects.map((o) => o.col)).size >= 2) styles.push("leftToRight");
  if (n >= 2 && sharedKinds(scene).length > 0) styles.push("shared");
  return styles;
}

/** Attributes (other than shape) that every object of the scene shares. */
function sharedKinds(scene: Scene): ("size" | "color" | "material")[] {
  return (["size", "color", "material"] as const).filter((k) => scene.objects.every((o) => o[k] === scene.objects[0]![k]));
}

function caption(scene: Scene, style: Style, rng: Rng): string {
  const T = CAPTION_TEMPLATES;
  const objs = scene.objects;
  const n = objs.length;
  switch (style) {
    case "list": {
      const list = rng.shuffle([...objs]).map((o) => captionPhrase(o, rng));
      return n === 1 ? fill(rng.pick(T.listOne), { np: list[0]! }) : fill(rng.pick(T.listAll), { n: NUMBER_WORDS[n]!, list: listPhrase(list) });
    }
    case "listSome": {
      const some = rng.sample(objs, 1 + rng.int(Math.min(n, 3)));
      return fill(rng.pick(T.listSome), { list: listPhrase(some.map((o) => captionPhrase(o, rng))) });
    }
    case "leftToRight": {
      const byCol = [0, 1, 2].map((c) => objs.filter((o) => o.col === c)).filter((g) => g.length > 0);
      return fill(T.leftToRight[0], { list: listPhrase(byCol.map((g) => captionPhrase(rng.pick(g), rng))) });
    }
    case "total":
      return n === 1 ? rng.pick(T.totalOne) : fill(rng.pick(T.total), { n: NUMBER_WORDS[n]! });
    case "groups": {
      const kind = rng.pick(ATTRIBUTE_KINDS);
      const counts = new Map<string, number>();
      for (const o of objs) counts.set(o[kind], (counts.get(o[kind]) ?? 0) + 1);
      let values = rng.shuffle([...counts.keys()].sort());
      if (values.length > 1 && rng.chance(0.4)) values = values.slice(0, 1 + rng.int(values.length - 1));
      const wording = variedWording(rng);
      const items = values.map((v) => {
        const c = counts.get(v)!;
        const count = NUMBER_WORDS[c]!;
        if (kind === "shape") return `${count} ${c === 1 ? v : plural(v)}`;
        return `${count} ${adjective(kind, v, wording)} ${c === 1 ? wording.generic : plural(wording.generic)}`;
      });
      const first = counts.get(values[0]!)!;
      return fill(rng.pick(first === 1 ? T.groupsFirstOne : T.groups), { groups: listPhrase(items) });
    }
    case "relation": {
      const facts: [SceneObject, (typeof RELATIONS)[number], SceneObject][] = [];
      for (const a of objs) for (const b of objs) for (const rel of RELATIONS) if (a !== b && related(a, rel, b)) facts.push([a, rel, b]);
      const [a, rel, b] = rng.pick(facts);
      return fill(rng.pick(T.relation), {
        a: captionPhrase(a, rng), b: captionPhrase(b, rng), rel: RELATION_PHRASES[rel], relIt: RELATION_FROM_OBJECT[rel],
      });
    }
    case "position": {
      const pos = (o: SceneObject) => POSITION_PHRASES[o.row]![o.col]!;
      if (n >= 2 && rng.chance(0.4)) {
        const [a, b] = rng.sample(objs, 2) as [SceneObject, SceneObject];
        return fill(T.positionTwo[0], { np1: captionPhrase(a, rng), pos1: pos(a), np2: captionPhrase(b, rng), pos2: pos(b) });
      }
      const o = rng.pick(objs);
      return fill(rng.pick(T.position), { np: captionPhrase(o, rng), pos: pos(o) });
    }
    case "focus": {
      const generic = rng.pick(GENERIC_NOUNS);
      return fill(T.focus[0], {
        np: captionPhrase(rng.pick(objs), rng), k: NUMBER_WORDS[n - 1]!, noun: n === 2 ? generic : plural(generic),
      });
    }
    case "alone":
      return fill(rng.pick(T.alone), { np: captionPhrase(objs[0]!, rng) });
    case "shared": {
      const kind = rng.pick(sharedKinds(scene));
      const v = objs[0]![kind];
      if (kind === "material") {
        return fill(rng.pick(n === 2 ? T.sharedMaterialTwo : T.sharedMaterial), { n: NUMBER_WORDS[n]!, material: v });
      }
      return fill(rng.pick(n === 2 ? T.sharedTwo : T.shared), { n: NUMBER_WORDS[n]!, adj: adjective(kind, v, variedWording(rng)) });
    }
  }
}

/** Every object with all its attributes and its place, in reading order (row by row). */
export function layoutCaption(scene: Scene, rng: Rng): string {
  const ordered = [...scene.objects].sort((a, b) => a.row - b.row || a.col - b.col);
  const items = ordered.map((o) => `${article(descPhrase(o, { wording: variedWording(rng) }))} ${POSITION_PHRASES[o.row]![o.col]!}`);
  return fill(CAPTION_TEMPLATES.layout[0], { list: listPhrase(items) });
}

/**
 * `count` distinct captions of `scene` (the layout caption first), each from a different style while styles last.
 * ```ts
 * sceneCaptions(scene, new Rng(seed, "captions", scene.id)); // ["The three objects are ...", ...]
 * ```
 */
export function sceneCaptions(scene: Scene, rng: Rng, count = CAPTIONS_PER_SCENE): string[] {
  const styles = applicable(scene);
  const unused = rng.shuffle([...styles]);
  const out = new Set<string>([layoutCaption(scene, rng)]);
  for (let tries = 0; out.size < count && tries < 100; tries++) {
    const style = unused.length > 0 ? unused.pop()! : rng.pick(styles);
    out.add(capitalize(caption(scene, style, rng)));
  }
  return [...out];
}

export interface CocoCaptions {
  info: { year: number; version: string; description: string; contributor: string; url: string; date_created: string };
  licenses: { id: number; name: string; url: string }[];
  images: { id: number; file_name: string; width: number; height: number; license: number; coco_url: string; flickr_url: string; date_captured: string }[];
  annotations: { id: number; image_id: number; caption: string }[];
}

/** COCO captions JSON for one split (annotation ids are global, so they are passed in order). */
export function cocoCaptions(split: Split, scenes: readonly Scene[], captions: ReadonlyMap<number, readonly string[]>, firstAnnotationId: number): CocoCaptions {
  let next = firstAnnotationId;
  return {
    info: {
      year: 2025, version: WORLD_VERSION, description: `MindsEye synthetic world, ${split} captions`,
      contributor: "MindsEye", url: "", date_created: "",
    },
    licenses: [{ id: 1, name: "Apache-2.0", url: "https://www.apache.org/licenses/LICENSE-2.0" }],
    images: scenes.map((s) => ({
      id: s.id, file_name: s.file_name, width: s.width, height: s.height, license: 1, coco_url: "", flickr_url: "", date_captured: "",
    })),
    annotations: scenes.flatMap((s) => captions.get(s.id)!.map((caption) => ({ id: next++, image_id: s.id, caption }))),
  };
}
