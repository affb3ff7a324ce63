// Jigsaw items shaped like BLINK's Jigsaw subtask: the scene with its lower-right quadrant
// missing, and two candidate pieces for that quadrant (each shown in place, the rest black), the true one and the same quadrant of
// a variant scene in which every object reaching into the corner has another colour. Only
// scenes where some object crosses the corner's edge get an item, so the edges decide: the
// visible half of that object continues in the true patch only. The answer's position, (A) or
// (B), is balanced. Records carry BLINK's fields; images are files named in image_1..image_3.
import { Balancer } from "./balance.js";
import type { Rng } from "./rng.js";
import { COLORS, type Scene, type SceneObject, type Split } from "./scene.js";
import { descPhrase, fill } from "./language.js";
import { insideShape } from "./shapes.js";
import { cellWords } from "./grounding.js";

/** One item, field for field as in BLINK (HF `BLINK-Benchmark/BLINK`, config Jigsaw). */
export interface JigsawRecord {
  idx: string;
  question: string;
  sub_task: string;
  image_1: string;
  image_2: string;
  image_3: string;
  image_4: string | null;
  choices: string[];
  answer: string;
  prompt: string;
  explanation: string;
}

export const JIGSAW_TEXT = {
  question: "Which image is the missing part in the first image? Select from the following choices.",
  prompt: "Given the first image with the lower right corner missing, can you tell which one of the second image or the third image is the missing part? Imagine which image would be more appropriate to place in the missing spot. You can also carefully observe and compare the edges of the images.\nSelect from the following choices.\n\n(A) the second image\n(B) the third image",
  choices: ["the second image", "the third image"],
  explanation: "The {np} reaches into the missing corner, and only {image} continues it in {color}.",
} as const;

/**
 * How far (fraction of the image side) an object must extend on both sides of the corner's edge:
 * 0.06 is about 3 px at 48 px, so the deciding object shows clearly in the masked image and in
 * the piece.
 */
export const EDGE_MARGIN = 0.06;

/**
 * Whether `o`'s shape crosses an edge of the lower-right quadrant: some point of the edge has
 * the shape on both sides of it, EDGE_MARGIN deep, so the visible part continues in the corner.
 */
export function crossesCorner(o: SceneObject): boolean {
  for (let t = 0.5; t <= 1; t += 0.005) {
    if (insideShape(o, 0.5 - EDGE_MARGIN, t) && insideShape(o, 0.5 + EDGE_MARGIN, t)) return true; // the left edge
    if (insideShape(o, t, 0.5 - EDGE_MARGIN) && insideShape(o, t, 0.5 + EDGE_MARGIN)) return true; // the top edge
  }
  return false;
}

function reachesCorner(o: SceneObject): boolean {
  return o.x + o.r > 0.5 && o.y + o.r > 0.5;
}

export interface JigsawPlan {
  variant: Scene;
  /** Whether the true patch is the second image, answer (A). */
  trueFirst: boolean;
  record: JigsawRecord;
}

/**
 * Balances (A)/(B) over one split; call `forScene` in scene order.
 * ```ts
 * const plan = new JigsawGenerator("val").forScene(scene, rng, 1); // null if nothing crosses the corner
 * ```
 */
export class JigsawGenerator {
  private readonly bal = new Balancer();
  constructor(private readonly split: Split) {}

  forScene(scene: Scene, rng: Rng, index: number): JigsawPlan | null {
    const crossing = scene.objects.filter(crossesCorner);
    if (crossing.length === 0) return null;
    const variant: Scene = {
      ...scene,
      objects: scene.objects.map((o) => (reachesCorner(o) ? { ...o, color: rng.pick(COLORS.filter((c) => c !== o.color)) } : o)),
    };
    const trueFirst = this.bal.choose("jigsaw", ["A", "B"], rng) === "A";
    const idx = `${this.split}_Jigsaw_${index}`;
    const shown = rng.pick(crossing);
    const record: JigsawRecord = {
      idx,
      question: JIGSAW_TEXT.question,
      sub_task: "Jigsaw",
      image_1: `images/${idx}_1.png`,
      image_2: `images/${idx}_2.png`,
      image_3: `images/${idx}_3.png`,
      image_4: null,
      choices: [...JIGSAW_TEXT.choices],
      answer: trueFirst ? "(A)" : "(B)",
      prompt: JIGSAW_TEXT.prompt,
      explanation: fill(JIGSAW_TEXT.explanation, {
        np: descPhrase(shown), image: trueFirst ? "the second image" : "the third image", color: shown.color,
      }),
    };
    return { variant, trueFirst, record };
  }
}

/**
 * The two partial views of a scene that a jigsaw item shows: the scene with its lower-right
 * quadrant missing ("masked", image_1) and that quadrant alone in its place ("piece", the
 * candidates).
 */
export const JIGSAW_VIEWS = ["masked", "piece"] as const;
export type JigsawView = (typeof JIGSAW_VIEWS)[number];

/** Sampling step (fraction of the side) of showsIn: half a pixel at 48 px. */
const VIEW_STEP = 1 / 96;

/**
 * Whether some of `o` shows in `view`: a point of its shape (on a grid of VIEW_STEP) at least
 * VIEW_STEP inside the view's visible side of the quadrant's edges.
 */
export function showsIn(o: SceneObject, view: JigsawView): boolean {
  for (let x = o.x - o.r; x <= o.x + o.r; x += VIEW_STEP) {
    for (let y = o.y - o.r; y <= o.y + o.r; y += VIEW_STEP) {
      const inPiece = x >= 0.5 + VIEW_STEP && y >= 0.5 + VIEW_STEP;
      const inMasked = x < 0.5 - VIEW_STEP || y < 0.5 - VIEW_STEP;
      if ((view === "piece" ? inPiece : inMasked) && insideShape(o, x, y)) return true;
    }
  }
  return false;
}

/**
 * cellWords of what `view` shows of `scene`: each cell names the object any part of which shows
 * there ("nothing" where none does).
 * ```ts
 * viewCellWords(scene, "piece")[0]; // ["nothing", "nothing", "nothing", "nothing"]: the top left cell is outside the quadrant
 * ```
 */
export function viewCellWords(scene: Scene, view: JigsawView): string[][] {
  return cellWords({ ...scene, objects: scene.objects.filter((o) => showsIn(o, view)) });
}
