// A progress bar with loss, rate and ETA on a terminal (cli-progress); plain lines elsewhere.
import cliProgress from "cli-progress";

export class Progress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastLine = 0;
  private readonly t0 = performance.now();
  constructor(private readonly total: number, private readonly start: number, quiet: boolean, private readonly label = "train") {
    this.bar = !quiet && process.stderr.isTTY
      ? new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} | loss {loss} | {rate} steps/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
      : null;
    this.bar?.start(total, start, { loss: "-", rate: "-" });
    if (quiet) this.lastLine = Infinity;
  }
  update(step: number, loss: number): void {
    const rate = (step - this.start) / ((performance.now() - this.t0) / 1000);
    if (this.bar) {
      this.bar.update(step, { loss: loss.toFixed(4), rate: rate.toFixed(2) });
      return;
    }
    // Without a terminal: a line every 10% (and at the end).
    if (step === this.total || step - this.lastLine >= Math.max(1, Math.floor(this.total / 10))) {
      const eta = rate > 0 ? (this.total - step) / rate : NaN;
      console.error(`${this.label} ${step}/${this.total}  loss ${loss.toFixed(4)}  ${rate.toFixed(2)} steps/s  ETA ${Number.isFinite(eta) ? `${eta.toFixed(0)} s` : "-"}`);
      this.lastLine = step;
    }
  }
  stop(): void { this.bar?.stop(); }
}
