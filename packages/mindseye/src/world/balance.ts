// Answer balancing: for each question form (a key such as "verifyAttr:color"), each new question
// takes the answer given least often so far among those this scene can support, so every form's
// answers end up near uniform and a model that ignores the image scores near chance.
import type { Rng } from "./rng.js";

export class Balancer {
  private readonly counts = new Map<string, Map<string, number>>();

  /**
   * The least-used answer of `key` among `available` (ties broken at random), counted as used.
   * ```ts
   * const answer = balancer.choose("exist", ["yes", "no"], rng);
   * ```
   */
  choose(key: string, available: readonly string[], rng: Rng): string {
    if (available.length === 0) throw new Error(`Balancer.choose("${key}") with no available answer`);
    let counts = this.counts.get(key);
    if (!counts) this.counts.set(key, (counts = new Map()));
    let least = Infinity;
    for (const a of available) least = Math.min(least, counts.get(a) ?? 0);
    const answer = rng.pick(available.filter((a) => (counts.get(a) ?? 0) === least));
    counts.set(answer, least + 1);
    return answer;
  }

  /**
   * Like `choose`, but only among answers used at most a little more than the least-used
   * answer of the whole `answerSet` (available here or not); null if every available answer
   * is ahead. For forms whose answers a scene rarely supports (counts of 3): the question is
   * then skipped rather than skewing the distribution.
   */
  chooseStrict(key: string, available: readonly string[], answerSet: readonly string[], rng: Rng): string | null {
    const counts = this.counts.get(key);
    const count = (a: string) => counts?.get(a) ?? 0;
    const floor = Math.min(...answerSet.map(count));
    const open = available.filter((a) => count(a) <= floor + 1 + Math.floor(floor * 0.03));
    return open.length === 0 ? null : this.choose(key, open, rng);
  }
}
