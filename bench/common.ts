// What every benchmark shares: the PyTorch reference worker and small statistics helpers.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const benchDir = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The PyTorch side of a benchmark: bench/<script> run by Debian's python3-torch, one JSON
 * request and one JSON reply per line, alive across rounds so both sides alternate in one run.
 */
export class PythonWorker {
  private readonly proc;
  private readonly lines;
  constructor(private readonly script: string, private readonly python: string) {
    this.proc = spawn(python, [join(benchDir, script)], { stdio: ["pipe", "pipe", "inherit"] });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
  }
  async call(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(JSON.stringify(msg) + "\n");
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`the PyTorch worker (${this.python} bench/${this.script}) exited; is python3-torch installed? (MINDSEYE_WITH_PYTORCH=1 bash scripts/setup.sh)`);
    const reply = JSON.parse(value as string) as Record<string, unknown>;
    if (reply.error) throw new Error(`PyTorch worker: ${String(reply.error)}`);
    return reply;
  }
  close(): void { this.proc.stdin!.write(JSON.stringify({ cmd: "exit" }) + "\n"); }
}

export const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
export const fmt = (x: number, d = 1): string => x.toFixed(d);
