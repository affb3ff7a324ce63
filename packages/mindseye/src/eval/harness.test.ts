// Cases follow the harness rules quoted in reference/formats.md §2, including their quirks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gqaPrompt, scoreGqa, scienceqaPrompt, scoreScienceqaLmms, vlmevalkitExtractOption, blinkPrompt, scoreBlinkLmms, score } from "./harness.js";
import { bootstrapMean, accuracyReport } from "./stats.js";

test("GQA: lmms-eval ignores case and punctuation; VLMEvalKit only case and outer whitespace", () => {
  assert.equal(gqaPrompt({ question: "Is the cat black?" }), "Is the cat black?\nAnswer the question using a single word or phrase.");
  assert.ok(scoreGqa("  Yes. ", "yes", "lmms-eval"));
  assert.ok(scoreGqa("t-shirt", "tshirt", "lmms-eval"), "punctuation is deleted from both sides");
  assert.ok(!scoreGqa("the table", "table", "lmms-eval"), "articles are not normalised");
  assert.ok(!scoreGqa("2", "two", "lmms-eval"), "numbers are not normalised");
  assert.ok(scoreGqa(" YES ", "yes", "vlmevalkit"));
  assert.ok(!scoreGqa("yes.", "yes", "vlmevalkit"), "VLMEvalKit keeps punctuation");
});

test("ScienceQA: lmms-eval prompt and letter rule", () => {
  const q = { question: "Which is magnetic?", choices: ["iron nail", "wooden spoon"], hint: "Magnets attract iron." };
  assert.equal(scienceqaPrompt(q, "lmms-eval"),
    "Context: Magnets attract iron.\nWhich is magnetic?\nA. iron nail\nB. wooden spoon\nAnswer with the option's letter from the given choices directly.");
  assert.equal(scienceqaPrompt({ ...q, hint: "" }, "lmms-eval").startsWith("Which is magnetic?"), true);
  assert.ok(scoreScienceqaLmms("A", 0));
  assert.ok(scoreScienceqaLmms(" a ", 0));
  assert.ok(scoreScienceqaLmms("A. iron nail", 0));
  assert.ok(!scoreScienceqaLmms("a. iron nail", 0), "the letter before the dot must be upper case");
  assert.ok(!scoreScienceqaLmms("The answer is A.", 0), "no search inside longer text");
  assert.ok(!scoreScienceqaLmms("B", 0));
});

test("VLMEvalKit MCQ prompt and exact-matching extraction", () => {
  assert.equal(scienceqaPrompt({ question: "Q?", choices: ["x", "y"], hint: "h" }, "vlmevalkit"),
    "Hint: h\nQuestion: Q?\nOptions:\nA. x\nB. y\nPlease select the correct answer from the options above. \n");
  const choices = ["iron nail", "wooden spoon"];
  assert.equal(vlmevalkitExtractOption("B", choices), "B");
  assert.equal(vlmevalkitExtractOption("(A) iron nail", choices), "A");
  assert.equal(vlmevalkitExtractOption("I think the answer is B.", choices), "B");
  assert.equal(vlmevalkitExtractOption("A or B", choices), "Z", "two letters: not inferable as an option, nor as text");
  assert.equal(vlmevalkitExtractOption("it is the wooden spoon", choices), "B", "can_infer_text");
  assert.equal(vlmevalkitExtractOption("Cannot determine the answer", choices), "Z");
  assert.equal(vlmevalkitExtractOption("A is what I would choose among all of these options here", choices), "Z", "a letter early in a long reply is not taken");
});

test("BLINK: lmms-eval prompt note and the start-anchored letter", () => {
  assert.equal(blinkPrompt({ prompt: "P", choices: ["the second image", "the third image"] }, "lmms-eval"),
    "Note: You only need to respond with A, B without providing any additional information.\nP");
  assert.ok(scoreBlinkLmms("(B)", "(B)"));
  assert.ok(scoreBlinkLmms(" b. ", "(B)"));
  assert.ok(scoreBlinkLmms("B) the third image", "(B)"));
  assert.ok(!scoreBlinkLmms("The answer is B", "(B)"), "anchored at the start: reads T");
  assert.ok(score("blink", "vlmevalkit", "The answer is B", { answer: "(B)", choices: ["the second image", "the third image"] }));
});

test("bootstrap intervals: exact for constant outcomes, bracketing the mean otherwise, seeded", () => {
  assert.deepEqual(bootstrapMean([1, 1, 1]), { mean: 1, low: 1, high: 1, n: 3 });
  const v = Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? 0 : 1)); // 75%
  const ci = bootstrapMean(v, { seed: 1 });
  assert.equal(ci.mean, 0.75);
  assert.ok(ci.low < 0.75 && ci.high > 0.75 && ci.low > 0.6 && ci.high < 0.9, JSON.stringify(ci));
  assert.deepEqual(bootstrapMean(v, { seed: 1 }), ci);
  const r = accuracyReport([{ correct: true, type: "count" }, { correct: false, type: "count" }, { correct: true, type: "exist" }]);
  assert.equal(r.byType.count!.mean, 0.5);
  assert.equal(r.byType.exist!.mean, 1);
  assert.ok(Math.abs(r.overall.mean - 2 / 3) < 1e-12);
});
