// `mindseye analyze STUDY`: alignment, collapse, structure and probes of a study's models, and
// how alignment relates to accuracy (analysis/study.ts); then the study's report.html.
import type { Command } from "commander";
import { ConfigError } from "../config/errors.js";
import { analyzeStudy, formatAnalysis } from "../analysis/study.js";
import { writeHtmlReport } from "../experiment/report_html.js";
import { positiveInt } from "./options.js";


export function registerAnalyzeCommand(program: Command): void {
  program
    .command("analyze")
    .description("analyse a study folder: alignment of imagined latents, collapse, k-means and linear probes of scene attributes before/after latent pretraining, projections, alignment↔accuracy correlations; writes analysis.json and report.html")
    .argument("<study>", "the study folder `mindseye experiment` wrote")
    .option("--captions <n>", "test images (first caption each) to analyse", "300")
    .option("--train-captions <n>", "training images the probes and readouts are fitted on", "1000")
    .option("--seed <n>", "seed of the caption subsets, k-means and UMAP", "0")
    .option("--no-report", "do not write report.html")
    .action(async (study: string, o: { captions: string; trainCaptions: string; seed: string; report: boolean }) => {
      if (!/^\d+$/.test(o.seed)) throw new ConfigError(`--seed must be a non-negative integer, got "${o.seed}"`);
      const a = await analyzeStudy({
        study, captions: positiveInt("--captions", o.captions), trainCaptions: positiveInt("--train-captions", o.trainCaptions), seed: Number(o.seed),
        log: (l) => console.log(l),
      });
      console.log(`\n${formatAnalysis(a)}`);
      if (o.report) console.log(`report: ${await writeHtmlReport(study)}`);
    });
}
