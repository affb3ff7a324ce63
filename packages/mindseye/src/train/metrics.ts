// Metrics of a run: one JSON object per line in metrics.jsonl and the same scalars in
// TensorBoard event files, both in the run folder. A run that starts at step S (a resume, or 0
// for a fresh start) first drops what was logged after S: those steps are about to be replayed,
// and each step must appear once.
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TensorBoardWriter, truncateEventFiles } from "./tensorboard.js";

export class MetricsLogger {
  private readonly jsonl: string;
  private readonly tb: TensorBoardWriter;
  constructor(readonly runDir: string, startStep: number) {
    mkdirSync(runDir, { recursive: true });
    this.jsonl = join(runDir, "metrics.jsonl");
    if (existsSync(this.jsonl)) {
      const rows = readFileSync(this.jsonl, "utf8").split("\n").filter((l) => l.trim() !== "");
      const kept = rows.filter((l) => (JSON.parse(l) as { step: number }).step <= startStep);
      if (kept.length < rows.length) {
        writeFileSync(`${this.jsonl}.tmp-${process.pid}`, kept.map((l) => l + "\n").join(""));
        renameSync(`${this.jsonl}.tmp-${process.pid}`, this.jsonl);
      }
    }
    truncateEventFiles(runDir, startStep);
    this.tb = new TensorBoardWriter(runDir);
  }
  log(step: number, values: Record<string, number>, split = "train"): void {
    appendFileSync(this.jsonl, JSON.stringify({ step, split, time: new Date().toISOString(), ...values }) + "\n");
    this.tb.scalars(step, Object.fromEntries(Object.entries(values).map(([k, v]) => [`${split}/${k}`, v])));
  }
  close(): void { this.tb.close(); }
}

/** One line of metrics.jsonl: the step, its split ("train", "val"), when, and the logged scalars. */
export interface MetricsRow { step: number; split: string; time: string; [key: string]: number | string }

/** The rows of a metrics.jsonl, in order (none when the file does not exist). */
export function readMetricsFile(path: string): MetricsRow[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as MetricsRow);
}
