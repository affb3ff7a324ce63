// Prompts and scoring exactly as the public harnesses compute them (reference/formats.md §2):
// lmms-eval (the default) and VLMEvalKit with exact matching only (no LLM judge). A score here
// means what it means there. Each rule cites the harness code it reproduces.

export type Harness = "lmms-eval" | "vlmevalkit";
export type TaskKind = "gqa" | "scienceqa" | "blink";

/** Python's string.punctuation. */
const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Python's str.strip() with no argument (whitespace). */
const pyStrip = (s: string) => s.replace(/^\s+|\s+$/gu, "");
const isUpperLetter = (c: string | undefined) => c !== undefined && c !== c.toLowerCase() && c === c.toUpperCase();

export interface OpenQuestion { question: string }
export interface ChoiceQuestion { question: string; choices: string[]; hint?: string }
export interface BlinkQuestion { prompt: string; choices: string[]; question?: string }

// ---------------------------------------------------------------------------------------------
// GQA (open answers)

/** lmms-eval gqa.yaml default and VLMEvalKit ImageVQADataset.build_prompt (the same text). */
export function gqaPrompt(q: OpenQuestion): string {
  return `${q.question}\nAnswer the question using a single word or phrase.`;
}

/**
 * lmms-eval: exact_match with ignore_case and ignore_punctuation after res.strip() — strip the
 * prediction, lower-case both, delete every string.punctuation character from both, compare.
 * VLMEvalKit (method "accuracy"): gt.strip().lower() == pred.strip().lower(), no punctuation removal.
 */
export function scoreGqa(prediction: string, answer: string, harness: Harness): boolean {
  if (harness === "vlmevalkit") return pyStrip(answer).toLowerCase() === pyStrip(prediction).toLowerCase();
  const clean = (s: string) => [...s.toLowerCase()].filter((c) => !PUNCTUATION.has(c)).join("");
  return clean(pyStrip(prediction)) === clean(answer);
}

// ---------------------------------------------------------------------------------------------
// Multiple choice (ScienceQA, and BLINK under VLMEvalKit)

const optionLines = (choices: string[]) => choices.map((c, i) => `${LETTERS[i]}. ${c}`);

/** lmms-eval scienceqa utils: "Context: {hint}\n" if any, question, "A. c0\nB. c1...", the instruction. */
export function scienceqaPrompt(q: ChoiceQuestion, harness: Harness): string {
  if (harness === "vlmevalkit") return vlmevalkitMcqPrompt(q);
  const context = q.hint ? `Context: ${q.hint}\n` : "";
  return `${context}${q.question}\n${optionLines(q.choices).join("\n")}\nAnswer with the option's letter from the given choices directly.`;
}

/** VLMEvalKit ImageMCQDataset.build_prompt: Hint / Question / Options / instruction. */
export function vlmevalkitMcqPrompt(q: ChoiceQuestion): string {
  let prompt = q.hint ? `Hint: ${q.hint}\n` : "";
  prompt += `Question: ${q.question}\n`;
  if (q.choices.length > 0) {
    prompt += "Options:\n" + optionLines(q.choices).map((l) => `${l}\n`).join("");
    prompt += "Please select the correct answer from the options above. \n";
  }
  return prompt;
}

/**
 * lmms-eval sqa_process_results: target = letter(answer).lower(), pred = output.strip(); right
 * if pred.lower() == target, or pred is at least 2 chars, starts with an upper-case letter
 * followed by "." and that letter is the target. Nothing else (no search inside longer text).
 */
export function scoreScienceqaLmms(prediction: string, answerIndex: number): boolean {
  const target = LETTERS[answerIndex]!.toLowerCase();
  const pred = pyStrip(prediction);
  if (pred.toLowerCase() === target) return true;
  return pred.length >= 2 && isUpperLetter(pred[0]) && pred[1] === "." && pred[0]!.toLowerCase() === target;
}

const REFUSALS = ["Sorry, I can't help with images of people yet.", "I can't process this file.", "I'm sorry, but without the image provided", "Cannot determine the answer"];

/**
 * VLMEvalKit extract_answer_from_item with exact matching (no judge): can_infer_option, then
 * can_infer_text; a failure is "Z" (wrong). Returns the chosen letter or "Z".
 */
export function vlmevalkitExtractOption(prediction: string, choices: string[]): string {
  const letters = choices.map((_, i) => LETTERS[i]!);
  // can_infer_option
  if (!prediction.includes("Failed to obtain answer via API")) {
    if (REFUSALS.some((r) => prediction.includes(r))) return "Z";
    let mod = prediction;
    for (const c of ".()[],:;!*#{}") mod = mod.split(c).join(" ");
    const splits = mod.split(/\s+/u).map(pyStrip).filter((s) => s.length > 0);
    const present = letters.filter((l) => splits.includes(l));
    if (present.length === 1) {
      const ch = present[0]!;
      if (splits.indexOf(ch) > splits.length - 5) return ch;
    } else if (present.length === 0 && splits.includes("Z")) {
      return "Z";
    }
    const m = /(?:correct\s+)?answer\s+is\s+\**([ABCD])\**/i.exec(prediction);
    if (m && letters.includes(m[1]!.toUpperCase())) return m[1]!.toUpperCase();
  }
  // can_infer_text
  const lower = prediction.toLowerCase();
  const optionsLength = choices.reduce((a, c) => a + c.length, 0);
  if (lower.length <= 2 * optionsLength) {
    const hits = letters.filter((_, i) => lower.includes(choices[i]!.toLowerCase()));
    if (hits.length === 1) return hits[0]!;
  }
  return "Z";
}

// ---------------------------------------------------------------------------------------------
// BLINK (Jigsaw)

/** lmms-eval blink utils: a note on answering with a letter, then the item's own prompt. */
export function blinkPrompt(q: BlinkQuestion, harness: Harness): string {
  if (harness === "vlmevalkit") return vlmevalkitMcqPrompt({ question: q.question ?? q.prompt, choices: q.choices });
  const letters = q.choices.map((_, i) => LETTERS[i]).join(", ");
  return `Note: You only need to respond with ${letters} without providing any additional information.\n${q.prompt}`;
}

/**
 * lmms-eval: gold = answer.strip("()"); prediction = the letter matched by
 * re.match(r"[\(\s]*([A-Z])[\)\.\s]*", text.strip(), re.IGNORECASE), upper-cased — anchored at
 * the start, so "The answer is B" reads as "T".
 */
export function scoreBlinkLmms(prediction: string, answer: string): boolean {
  const gold = answer.replace(/^[()]+|[()]+$/g, "");
  const m = /^[(\s]*([A-Z])[).\s]*/i.exec(pyStrip(prediction));
  return m !== null && m[1]!.toUpperCase() === gold;
}

/** One prediction's correctness under a harness, for the three task kinds. */
export function score(kind: TaskKind, harness: Harness, prediction: string, item: { answer: string | number; choices?: string[] }): boolean {
  if (kind === "gqa") return scoreGqa(prediction, String(item.answer), harness);
  if (kind === "scienceqa") {
    const index = Number(item.answer);
    if (harness === "lmms-eval") return scoreScienceqaLmms(prediction, index);
    return vlmevalkitExtractOption(prediction, item.choices ?? []) === LETTERS[index];
  }
  if (harness === "lmms-eval") return scoreBlinkLmms(prediction, String(item.answer));
  return `(${vlmevalkitExtractOption(prediction, item.choices ?? [])})` === String(item.answer);
}

/** Generation settings of each harness for these tasks (greedy throughout). */
export const GENERATION: Readonly<Record<TaskKind, { maxNewTokens: number }>> = {
  gqa: { maxNewTokens: 16 },
  scienceqa: { maxNewTokens: 16 },
  blink: { maxNewTokens: 1024 },
};
