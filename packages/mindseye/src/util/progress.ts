// Progress of a long step: a bar with rate and ETA on a terminal (cli-progress), plain lines
// elsewhere (logs, CI). With an unknown total (a streamed dataset) it reports count and rate.
import cliProgress from "cli-progress";

export class Progress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastCount: number;
  private lastTime = performance.now();
  private readonly t0 = performance.now();

  /** total: units to do (NaN if unknown); start: units already done (a resumed run). */
  constructor(private readonly total: number, private readonly start: number, private readonly quiet: boolean, private readonly label: string, private readonly unit: string) {
    this.lastCount = start;
    this.bar = !quiet && process.stderr.isTTY && Number.isFinite(total)
      ? new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} | {info} | {rate} ${unit}/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
      : null;
    this.bar?.start(total, start, { info: "", rate: "-" });
  }

  /** count: units done so far; info: what to show beside it (e.g. "loss 2.3110"). */
  update(count: number, info = ""): void {
    if (this.quiet) return;
    const rate = (count - this.start) / ((performance.now() - this.t0) / 1000);
    if (this.bar) {
      this.bar.update(count, { info, rate: rate.toFixed(2) });
      return;
    }
    // Without a terminal: a line every 10% of a known total, or every 10 s of an unknown one.
    const due = Number.isFinite(this.total)
      ? count === this.total || count - this.lastCount >= Math.max(1, Math.floor(this.total / 10))
      : performance.now() - this.lastTime >= 10_000;
    if (!due) return;
    const eta = Number.isFinite(this.total) && rate > 0 ? `  ETA ${((this.total - count) / rate).toFixed(0)} s` : "";
    const of = Number.isFinite(this.total) ? `/${this.total}` : "";
    console.error(`${this.label} ${count}${of} ${this.unit}  ${info}  ${rate.toFixed(2)} ${this.unit}/s${eta}`);
    this.lastCount = count;
    this.lastTime = performance.now();
  }

  /** Ends the bar; with an unknown total, prints the final count and rate. */
  stop(count?: number): void {
    this.bar?.stop();
    if (!this.quiet && !this.bar && count !== undefined) {
      const rate = (count - this.start) / ((performance.now() - this.t0) / 1000);
      console.error(`${this.label} done: ${count} ${this.unit} at ${rate.toFixed(2)} ${this.unit}/s`);
    }
  }
}
