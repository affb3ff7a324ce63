// Multiple-choice questions in ScienceQA's problems.json format whose answer needs a fact that
// is only ever stated in text: which materials magnets attract, which float, which conduct
// electricity, which are brittle. The picture shows each object's material; the `hint` (shown
// to the model as the context) states the fact and the `lecture` explains it. Choices name
// objects without their material, so neither the text nor the picture alone answers the
// question. The correct choice's position is balanced; yes/no answers are balanced.
import { Balancer } from "./balance.js";
import type { Rng } from "./rng.js";
import { descOf, uniqueDesc, type Material, type Scene, type SceneObject, type Split } from "./scene.js";
import { POSITION_PHRASES, descPhrase, fill } from "./language.js";

/** One problem, field for field as in ScienceQA's problems.json. */
export interface ScienceProblem {
  question: string;
  choices: string[];
  answer: number;
  hint: string;
  image: string | null;
  task: string;
  grade: string;
  subject: string;
  topic: string;
  category: string;
  skill: string;
  lecture: string;
  solution: string;
  split: string;
}

interface Property {
  has: readonly Material[];
  topic: string;
  category: string;
  skill: string;
  lecture: string;
  hint: string;
  which: string;
  verify: string;
  count: string;
}

const FLOAT_LECTURE = "An object floats in water if it is less dense than water. It sinks if it is denser than water. How dense an object is depends on what it is made of.";
const FLOAT_HINT = "Wood and rubber are less dense than water, so objects made of wood or rubber float. Metal and glass are denser than water, so objects made of metal or glass sink.";

/** The facts. `{name}` is an object's name ("the small red circle"). */
export const PROPERTIES: { readonly [P in "magnetic" | "floats" | "sinks" | "conducts" | "brittle"]: Property } = {
  magnetic: {
    has: ["metal"], topic: "magnets", category: "Magnets", skill: "Identify objects that magnets attract",
    lecture: "Magnets can pull on some objects without touching them. This pull is called magnetic attraction. Whether a magnet attracts an object depends on what the object is made of.",
    hint: "Magnets attract objects made of metal. Magnets do not attract objects made of rubber, wood or glass.",
    which: "Which object is attracted to a magnet?",
    verify: "Is {name} attracted to a magnet?",
    count: "How many objects in the picture are attracted to a magnet?",
  },
  floats: {
    has: ["wood", "rubber"], topic: "physics", category: "Density", skill: "Predict whether an object floats or sinks",
    lecture: FLOAT_LECTURE, hint: FLOAT_HINT,
    which: "Which object would float in water?",
    verify: "Would {name} float in water?",
    count: "How many objects in the picture would float in water?",
  },
  sinks: {
    has: ["metal", "glass"], topic: "physics", category: "Density", skill: "Predict whether an object floats or sinks",
    lecture: FLOAT_LECTURE, hint: FLOAT_HINT,
    which: "Which object would sink in water?",
    verify: "Would {name} sink in water?",
    count: "How many objects in the picture would sink in water?",
  },
  conducts: {
    has: ["metal"], topic: "physics", category: "Electricity", skill: "Identify conductors and insulators",
    lecture: "Electricity can flow through some materials but not through others. A material that lets electricity flow is called a conductor. A material that does not is called an insulator.",
    hint: "Metal is a conductor. Rubber, wood and glass are insulators.",
    which: "Which object conducts electricity?",
    verify: "Does {name} conduct electricity?",
    count: "How many objects in the picture conduct electricity?",
  },
  brittle: {
    has: ["glass"], topic: "physics", category: "Materials", skill: "Identify brittle materials",
    lecture: "Some materials are brittle. An object made of a brittle material breaks into pieces when it falls on a hard floor. Other objects may bounce or get dented, but they do not break.",
    hint: "Glass is brittle. Metal, rubber and wood are not brittle.",
    which: "Which object would break if it fell on a hard floor?",
    verify: "Would {name} break if it fell on a hard floor?",
    count: "How many objects in the picture would break if they fell on a hard floor?",
  },
};
export type PropertyName = keyof typeof PROPERTIES;

/**
 * A problem's form, told from its question: "count", "verify", or "which-N" with its N choices
 * (the forms differ in what the picture must give: one object's material, every object's, or
 * each choice's object compared); null for a question no property's template makes.
 * ```ts
 * scienceForm("Which object would float in water?", ["the red circle", "the blue square"]); // "which-2"
 * ```
 */
export function scienceForm(question: string, choices: readonly string[]): string | null {
  for (const prop of Object.values(PROPERTIES)) {
    if (question === prop.which) return `which-${choices.length}`;
    if (question === prop.count) return "count";
    const [before, after] = prop.verify.split("{name}") as [string, string];
    if (question.length > before.length + after.length && question.startsWith(before) && question.endsWith(after)) return "verify";
  }
  return null;
}

/** The remaining fixed texts (for the vocabulary and the solution). */
export const SCIENCE_TEMPLATES = {
  solution: "Look at what each object is made of. {hint} So, the answer is {choice}.",
  yesNo: ["yes", "no"],
} as const;

const COUNT_CHOICES = ["0", "1", "2", "3"];

/** An object's name without its material: "the small red circle", or by position if needed. */
function objectName(scene: Scene, o: SceneObject, rng: Rng): string {
  const d = uniqueDesc(scene.objects, o, ["size", "color", "shape"], rng, { required: ["shape"] });
  return d ? `the ${descPhrase(d)}` : `the ${descPhrase(descOf(o, ["color", "shape"]))} ${POSITION_PHRASES[o.row]![o.col]}`;
}

/**
 * ScienceQA problems for one split's scenes, at most one per scene (a property and a form that
 * the scene supports, taken in random order). Call in scene order.
 * ```ts
 * const gen = new ScienceGenerator("train");
 * const p = gen.forScene(scene, new Rng(seed, "science", scene.id)); // ScienceProblem | null
 * ```
 */
export class ScienceGenerator {
  private readonly bal = new Balancer();
  constructor(private readonly split: Split) {}

  forScene(scene: Scene, rng: Rng): ScienceProblem | null {
    for (const name of rng.shuffle(Object.keys(PROPERTIES) as PropertyName[])) {
      for (const form of rng.shuffle(["which", "verify", "count"] as const)) {
        const made = this.make(scene, rng, name, form);
        if (made) return made;
      }
    }
    return null;
  }

  private make(scene: Scene, rng: Rng, name: PropertyName, form: "which" | "verify" | "count"): ScienceProblem | null {
    const prop = PROPERTIES[name];
    const has = scene.objects.filter((o) => prop.has.includes(o.material));
    const hasNot = scene.objects.filter((o) => !prop.has.includes(o.material));
    let question: string, choices: string[], answer: number;
    if (form === "which") {
      // One object has the property, one to three do not; the right one's position is balanced.
      if (has.length === 0 || hasNot.length === 0) return null;
      const right = rng.pick(has);
      const wrong = rng.sample(hasNot, Math.min(hasNot.length, 1 + rng.int(3)));
      const names = [right, ...wrong].map((o) => objectName(scene, o, rng));
      answer = Number(this.bal.choose(`which:${name}:${names.length}`, names.map((_, i) => String(i)), rng));
      const others = rng.shuffle(names.slice(1));
      choices = [...others.slice(0, answer), names[0]!, ...others.slice(answer)];
      question = prop.which;
    } else if (form === "verify") {
      if (has.length === 0 || hasNot.length === 0) return null;
      const yes = this.bal.choose(`verify:${name}`, ["yes", "no"], rng) === "yes";
      question = fill(prop.verify, { name: objectName(scene, rng.pick(yes ? has : hasNot), rng) });
      choices = [...SCIENCE_TEMPLATES.yesNo];
      answer = yes ? 0 : 1;
    } else {
      // Choices are always 0–3 in order, and the true count is balanced over them.
      const truth = this.bal.chooseStrict(`count:${name}`, COUNT_CHOICES.filter((c) => c === String(has.length)), COUNT_CHOICES, rng);
      if (truth === null) return null;
      choices = [...COUNT_CHOICES];
      answer = Number(truth);
      question = prop.count;
    }
    return {
      question, choices, answer, hint: prop.hint, image: "image.png",
      task: "closed choice", grade: "grade3", subject: "natural science", topic: prop.topic,
      category: prop.category, skill: prop.skill, lecture: prop.lecture,
      solution: fill(SCIENCE_TEMPLATES.solution, { hint: prop.hint, choice: choices[answer]! }),
      split: this.split,
    };
  }
}
