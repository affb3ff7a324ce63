// Metrics of a run: one JSON object per line in metrics.jsonl and the same scalars in
// TensorBoard event files, both in the run folder.
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { TensorBoardWriter } from "./tensorboard.js";

export class MetricsLogger {
  private readonly jsonl: string;
  private readonly tb: TensorBoardWriter;
  constructor(readonly runDir: string) {
    mkdirSync(runDir, { recursive: true });
    this.jsonl = join(runDir, "metrics.jsonl");
    this.tb = new TensorBoardWriter(runDir);
  }
  log(step: number, values: Record<string, number>, split = "train"): void {
    appendFileSync(this.jsonl, JSON.stringify({ step, split, time: new Date().toISOString(), ...values }) + "\n");
    this.tb.scalars(step, Object.fromEntries(Object.entries(values).map(([k, v]) => [`${split}/${k}`, v])));
  }
  close(): void { this.tb.close(); }
}
