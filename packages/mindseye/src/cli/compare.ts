// `mindseye compare A B`: each arm's accuracy and the latent arm's gains, B − A, between two
// studies of the same world (experiment/compare.ts).
import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { ConfigError } from "../config/errors.js";
import { checkSameQuestions, compareStudies, comparisonMarkdown, readStudyEvaluations } from "../experiment/compare.js";

export function registerCompareCommand(program: Command): void {
  program
    .command("compare")
    .description("compare two studies of the same world (e.g. two fine-tuning lengths): each arm's accuracy B − A and the change of the latent arm's gains, paired by seed and question, with hierarchical-bootstrap intervals")
    .argument("<a>", "the first study folder (`mindseye experiment` wrote it)")
    .argument("<b>", "the second study folder")
    .option("--json <file>", "also write the comparison as JSON ({arms[], gains[]})")
    .action((a: string, b: string, o: { json?: string }) => {
      const study = (dir: string) => ({ dir, runs: readStudyEvaluations(dir) });
      const sa = study(a), sb = study(b);
      checkSameQuestions(sa, sb);
      const c = compareStudies(sa.runs, sb.runs);
      if (c.arms.length === 0) throw new ConfigError(`${a} and ${b} have no arm, fraction and task evaluated in both (with the same seeds); run both studies' evaluations first`);
      console.log(comparisonMarkdown(c, { a, b }));
      if (o.json) writeFileSync(o.json, JSON.stringify({ a, b, ...c }, null, 2) + "\n");
    });
}
