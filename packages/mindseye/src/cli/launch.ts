// `mindseye launch --nproc-per-node G [--nnodes N --node-rank R] [--master-addr A] [--master-port P]
// -- <mindseye args>`: torchrun's static launch. Starts G processes of `mindseye <args>` on this
// node with torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
// MASTER_ADDR, MASTER_PORT), which @mindseye/torch's initProcessGroup() reads.
//   - SIGINT, SIGTERM and SIGHUP are forwarded once to every rank. Ranks run in their own
//     process group, so a terminal's Ctrl-C reaches them only through the launcher, once.
//   - When a rank fails (non-zero exit or a signal), the others get SIGTERM, then SIGKILL after
//     --grace-ms; the launcher names the rank and its exit code and exits with that code.
//   - Unless MINDSEYE_BLAS_THREADS (or OPENBLAS_NUM_THREADS) is set, each rank gets cores / G BLAS
//     threads, so G ranks do not oversubscribe the machine (torchrun sets OMP_NUM_THREADS=1 likewise).
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism, constants as osConstants } from "node:os";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { ConfigError } from "../config/errors.js";

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** What each rank runs: [executable, ...arguments]. */
  argv: string[];
  /** How long ranks get to exit after SIGTERM before SIGKILL. */
  graceMs: number;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

/** The environment of local rank `local`: the launcher's, plus torchrun's variables. */
export function rankEnv(o: LaunchOptions, local: number): NodeJS.ProcessEnv {
  const G = o.nprocPerNode;
  const env: NodeJS.ProcessEnv = {
    ...o.env,
    RANK: String(o.nodeRank * G + local),
    LOCAL_RANK: String(local),
    WORLD_SIZE: String(o.nnodes * G),
    LOCAL_WORLD_SIZE: String(G),
    GROUP_RANK: String(o.nodeRank),
    MASTER_ADDR: o.masterAddr,
    MASTER_PORT: String(o.masterPort),
  };
  if (o.env.MINDSEYE_BLAS_THREADS === undefined && o.env.OPENBLAS_NUM_THREADS === undefined) {
    env.MINDSEYE_BLAS_THREADS = String(Math.max(1, Math.floor(availableParallelism() / G)));
  }
  return env;
}

const signalCode = (s: NodeJS.Signals) => 128 + osConstants.signals[s];

/**
 * Runs the ranks of this node to completion; resolves to the exit code for the launcher:
 * 0 when every rank exits 0, else the first failing rank's code (128 + signal for a signal).
 */
export function launch(o: LaunchOptions): Promise<number> {
  const [exe, ...args] = o.argv;
  if (exe === undefined) throw new ConfigError("mindseye launch: nothing to run (put the mindseye arguments after --)");
  const ranks: { child: ChildProcess; rank: number; done: boolean }[] = [];
  let failure: { rank: number; code: number } | null = null;
  let stopSignal: NodeJS.Signals | null = null;
  let killTimer: NodeJS.Timeout | null = null;

  const stopOthers = (sig: NodeJS.Signals) => {
    for (const r of ranks) if (!r.done) r.child.kill(sig);
    if (killTimer === null) {
      killTimer = setTimeout(() => {
        for (const r of ranks) {
          if (r.done) continue;
          o.log(`mindseye launch: rank ${r.rank} (pid ${r.child.pid}) did not exit ${o.graceMs} ms after ${sig}; sending SIGKILL`);
          r.child.kill("SIGKILL");
        }
      }, o.graceMs);
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopSignal !== null) return; // forwarded once; the grace timer escalates
    stopSignal = sig;
    o.log(`mindseye launch: ${sig}: forwarding to ${ranks.filter((r) => !r.done).length} rank(s)`);
    stopOthers(sig);
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((s) => [s, () => onSignal(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);

  return new Promise((resolve) => {
    const finished = () => {
      if (!ranks.every((r) => r.done)) return;
      for (const [s, h] of handlers) process.off(s, h);
      if (killTimer !== null) clearTimeout(killTimer);
      if (failure !== null) o.log(`mindseye launch: failed: rank ${failure.rank} exited with code ${failure.code}`);
      resolve(failure !== null ? failure.code : stopSignal !== null ? signalCode(stopSignal) : 0);
    };
    for (let local = 0; local < o.nprocPerNode; local++) {
      const rank = o.nodeRank * o.nprocPerNode + local;
      const child = spawn(exe, args, { env: rankEnv(o, local), stdio: "inherit", detached: true });
      const entry = { child, rank, done: false };
      ranks.push(entry);
      child.on("error", (e) => {
        o.log(`mindseye launch: rank ${rank} could not start ${exe}: ${e.message}`);
      });
      child.on("close", (code, signal) => {
        entry.done = true;
        const exit = code ?? (signal !== null ? signalCode(signal) : 1);
        if (exit !== 0 && failure === null && stopSignal === null) {
          failure = { rank, code: exit };
          const how = signal !== null ? `was killed by ${signal} (exit code ${exit})` : `exited with code ${exit}`;
          const rest = ranks.filter((r) => !r.done).length;
          o.log(`mindseye launch: rank ${rank} (pid ${child.pid}) ${how}${rest > 0 ? `; stopping the other ${rest} rank(s)` : ""}`);
          stopOthers("SIGTERM");
        }
        finished();
      });
    }
  });
}

function int(text: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${flag} must be an integer in [${min}, ${max}], got ${text}`);
  return n;
}

interface LaunchFlags { nprocPerNode: string; nnodes: string; nodeRank: string; masterAddr: string; masterPort: string; graceMs: string; command?: boolean }

/** The launch options from the command line (exported for tests). */
export function launchOptions(f: LaunchFlags, rest: string[]): LaunchOptions {
  const nnodes = int(f.nnodes, "--nnodes", 1);
  const main = fileURLToPath(new URL("./main.js", import.meta.url));
  return {
    nprocPerNode: int(f.nprocPerNode, "--nproc-per-node", 1),
    nnodes,
    nodeRank: int(f.nodeRank, "--node-rank", 0, nnodes - 1),
    masterAddr: f.masterAddr,
    masterPort: int(f.masterPort, "--master-port", 1, 65535),
    graceMs: int(f.graceMs, "--grace-ms", 0),
    argv: f.command ? rest : [process.execPath, main, ...rest],
    env: process.env,
    log: (l) => console.error(l),
  };
}

export function registerLaunchCommand(program: Command): void {
  program
    .command("launch")
    .description("start one process per device with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...): mindseye launch --nproc-per-node 2 -- train --config x.yaml")
    .requiredOption("--nproc-per-node <n>", "processes (ranks) on this node")
    .option("--nnodes <n>", "nodes in the run", "1")
    .option("--node-rank <r>", "this node's index", "0")
    .option("--master-addr <host>", "address of rank 0's node (its TCPStore)", "127.0.0.1")
    .option("--master-port <port>", "port of the TCPStore on rank 0's node", "29500")
    .option("--grace-ms <ms>", "after SIGTERM, how long ranks get before SIGKILL", "30000")
    .option("--command", "run the words after -- as a command of their own (torchrun's --no-python), not as mindseye arguments")
    .argument("<args...>", "after --: the mindseye command each rank runs")
    .action(async (rest: string[], f: LaunchFlags) => {
      process.exitCode = await launch(launchOptions(f, rest));
    });
}
