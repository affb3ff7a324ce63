// Blind baselines per task and split, to show that the image is needed: chance (1 / number of
// allowed answers, averaged), the split's own majority answer, and for val/test splits two
// text-only predictors fitted on train — the majority answer of the question's type, and the
// majority answer of the exact same question text in train (falling back to the type's).

/** What a baseline needs of one item. */
export interface StatItem {
  type: string;
  text: string;
  answer: string;
  chance: number;
}

export interface Baselines {
  n: number;
  chance: number;
  majority: number;
  majorityAnswer: string;
  /** Text-only predictors fitted on train; absent for train itself. */
  trainTypeMajority?: number;
  trainQuestionPrior?: number;
  answers: Record<string, number>;
}

export interface SplitStats {
  overall: Baselines;
  byType: Record<string, Baselines>;
}

function tally(items: readonly StatItem[], key: (i: StatItem) => string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const i of items) {
    const k = key(i);
    let m = out.get(k);
    if (!m) out.set(k, (m = new Map()));
    m.set(i.answer, (m.get(i.answer) ?? 0) + 1);
  }
  return out;
}

/** The most frequent answer; ties go to the first in code-point order, so the result is fixed. */
function argmax(m: ReadonlyMap<string, number>): [string, number] {
  let best: [string, number] = ["", 0];
  for (const [a, c] of [...m].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) if (c > best[1]) best = [a, c];
  return best;
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;

function baselines(items: readonly StatItem[], train: readonly StatItem[] | null): Baselines {
  const counts = tally(items, () => "").get("") ?? new Map<string, number>();
  const [majorityAnswer, top] = argmax(counts);
  const b: Baselines = {
    n: items.length,
    chance: round(items.reduce((s, i) => s + i.chance, 0) / Math.max(1, items.length)),
    majority: round(top / Math.max(1, items.length)),
    majorityAnswer,
    answers: Object.fromEntries([...counts].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))),
  };
  if (train) {
    const byType = new Map([...tally(train, (i) => i.type)].map(([t, m]) => [t, argmax(m)[0]]));
    const byText = new Map([...tally(train, (i) => `${i.type}\u0000${i.text}`)].map(([t, m]) => [t, argmax(m)[0]]));
    let typeHits = 0, textHits = 0;
    for (const i of items) {
      const typeGuess = byType.get(i.type);
      if (typeGuess === i.answer) typeHits++;
      if ((byText.get(`${i.type}\u0000${i.text}`) ?? typeGuess) === i.answer) textHits++;
    }
    b.trainTypeMajority = round(typeHits / Math.max(1, items.length));
    b.trainQuestionPrior = round(textHits / Math.max(1, items.length));
  }
  return b;
}

/**
 * Baselines of one split, overall and per type; `train` (the train split's items) adds the
 * text-only predictors.
 * ```ts
 * splitStats(valItems, trainItems).overall.majority; // e.g. 0.21
 * ```
 */
export function splitStats(items: readonly StatItem[], train: readonly StatItem[] | null): SplitStats {
  const types = [...new Set(items.map((i) => i.type))].sort();
  return {
    overall: baselines(items, train),
    byType: Object.fromEntries(types.map((t) => [t, baselines(items.filter((i) => i.type === t), train)])),
  };
}

/** One line per split for the console. */
export function formatStats(task: string, split: string, s: SplitStats): string {
  const o = s.overall;
  const pct = (v: number | undefined) => (v === undefined ? "     -" : `${(100 * v).toFixed(1).padStart(5)}%`);
  return `${task.padEnd(10)} ${split.padEnd(10)} ${String(o.n).padStart(7)}  chance ${pct(o.chance)}  majority ${pct(o.majority)}`
    + `  train-type-majority ${pct(o.trainTypeMajority)}  train-question-prior ${pct(o.trainQuestionPrior)}`;
}
