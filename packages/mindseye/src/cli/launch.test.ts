import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { launchOptions, rankEnv } from "./launch.js";
import { freePort } from "@mindseye/torch/testing";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
// One rank of @mindseye/torch's own distributed tests: joins the group from the launcher's variables.
const DIST_CHILD = fileURLToPath(new URL("../../../torch/dist/testing/dist_child.js", import.meta.url));


/** Runs `mindseye launch ...`; kills it after killAfterMs so a hang fails the test instead of stalling it. */
function mindseye(args: string[], killAfterMs = 30_000, onStdout?: (soFar: string, launcherPid: number) => void): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, MINDSEYE_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (onStdout) onStdout(stdout, child.pid!);
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const flags = { nprocPerNode: "4", nnodes: "2", nodeRank: "1", masterAddr: "10.0.0.1", masterPort: "29501", graceMs: "1000" };

test("launch gives each rank torchrun's variables, and runs mindseye itself unless --command", () => {
  const o = launchOptions(flags, ["train", "--config", "x.yaml"]);
  assert.deepEqual(o.argv.slice(2), ["train", "--config", "x.yaml"]);
  assert.equal(o.argv[0], process.execPath);
  const env = rankEnv({ ...o, env: {} }, 2);
  assert.deepEqual(
    { RANK: env.RANK, LOCAL_RANK: env.LOCAL_RANK, WORLD_SIZE: env.WORLD_SIZE, LOCAL_WORLD_SIZE: env.LOCAL_WORLD_SIZE, GROUP_RANK: env.GROUP_RANK, MASTER_ADDR: env.MASTER_ADDR, MASTER_PORT: env.MASTER_PORT },
    { RANK: "6", LOCAL_RANK: "2", WORLD_SIZE: "8", LOCAL_WORLD_SIZE: "4", GROUP_RANK: "1", MASTER_ADDR: "10.0.0.1", MASTER_PORT: "29501" },
  );
  assert.ok(Number(env.MINDSEYE_BLAS_THREADS) >= 1);
  assert.equal(rankEnv({ ...o, env: { MINDSEYE_BLAS_THREADS: "3" } }, 0).MINDSEYE_BLAS_THREADS, "3");
  assert.deepEqual(launchOptions({ ...flags, command: true }, ["node", "x.js"]).argv, ["node", "x.js"]);
  assert.throws(() => launchOptions({ ...flags, nodeRank: "2" }, ["doctor"]), /--node-rank must be an integer in \[0, 1\], got 2/);
  assert.throws(() => launchOptions({ ...flags, nprocPerNode: "0" }, ["doctor"]), /--nproc-per-node must be an integer/);
});

test("mindseye launch --nproc-per-node 2 runs a 2-rank c10d run to completion", async () => {
  const port = await freePort();
  const r = await mindseye(["launch", "--nproc-per-node", "2", "--master-port", String(port), "--command", "--", process.execPath, DIST_CHILD, "collectives"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { rank: number; worldSize: number; sum: number[] });
  assert.deepEqual(lines.map((l) => l.rank).sort(), [0, 1]);
  for (const l of lines) assert.deepEqual(l.sum, [3, 3, 3]);
});

// torchrun (PyTorch's launcher; Debian's python3-torch, which `make test` installs) starts the same
// ranks. Its 1.13 spells the flags with underscores (2.x accepts both), and on Python 3.11 its
// default "no redirect" setting crashes in to_map (Std.NONE is not iterable there): an explicit
// --redirects 1 --tee 1 (stdout to its log and the console) avoids that and works on every version.
const TORCHRUN = spawnSync("torchrun", ["--help"], { stdio: "ignore" }).status === 0;

test("torchrun --no_python starts a 2-rank DDP run of @mindseye/torch: both ranks end with the same weights", { skip: TORCHRUN ? false : "torchrun is not installed (python3-torch; make test-setup installs it)", timeout: 60_000 }, async () => {
  const port = await freePort();
  const args = ["--no_python", "--nproc_per_node", "2", "--master_port", String(port), "--redirects", "1", "--tee", "1", process.execPath, DIST_CHILD, "ddp"];
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn("torchrun", args, { env: { ...process.env, MINDSEYE_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 50_000);
    child.on("close", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
  assert.equal(r.code, 0, r.stderr);
  // tee prefixes each rank's lines with "[default<local rank>]:"
  const ranks = [...r.stdout.matchAll(/^\[default(\d)\]:(\{.*\})$/gm)].map((m) => ({ local: Number(m[1]), ...(JSON.parse(m[2]!) as { rank: number; params: Record<string, number[]> }) }));
  assert.deepEqual(ranks.map((x) => [x.local, x.rank]).sort(), [[0, 0], [1, 1]]);
  assert.deepEqual(ranks[0]!.params, ranks[1]!.params, "DDP kept the replicas equal (rank 1 started from other weights)");
});

test("mindseye launch -- <mindseye args> starts mindseye on every rank", async () => {
  const r = await mindseye(["launch", "--nproc-per-node", "2", "--master-port", String(await freePort()), "--", "doctor", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.match(/"libtorch"/g)?.length, 2);
});

test("when a rank dies, launch stops the others and exits with its code, naming the rank", async () => {
  // rank 1 exits with 3 at once; rank 0 would run for a minute
  const script = "if (process.env.RANK === '1') process.exit(3); setTimeout(() => {}, 60000);";
  const r = await mindseye(["launch", "--nproc-per-node", "2", "--grace-ms", "2000", "--command", "--", process.execPath, "-e", script]);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /rank 1 \(pid \d+\) exited with code 3; stopping the other 1 rank\(s\)/);
  assert.match(r.stderr, /failed: rank 1 exited with code 3/);
  assert.ok(r.ms < 15_000, `launch took ${r.ms} ms`);
});

test("SIGTERM to launch reaches every rank once; a rank that ignores it is killed after --grace-ms", async () => {
  // rank 0 exits on SIGTERM with 143; rank 1 ignores it and counts what it got
  const script = [
    "let n = 0;",
    "process.on('SIGTERM', () => { n++; if (process.env.RANK === '0') { console.log('rank 0 got SIGTERM'); process.exit(143); } else console.log('rank 1 got SIGTERM #' + n); });",
    "console.log('rank ' + process.env.RANK + ' up'); setInterval(() => {}, 1000);",
  ].join(" ");
  let sent = false;
  const r = await mindseye(["launch", "--nproc-per-node", "2", "--grace-ms", "1500", "--command", "--", process.execPath, "-e", script], 30_000, (out, launcher) => {
    if (!sent && out.includes("rank 0 up") && out.includes("rank 1 up")) {
      sent = true;
      process.kill(launcher, "SIGTERM");
    }
  });
  assert.equal(r.code, 143);
  assert.match(r.stdout, /rank 0 got SIGTERM/);
  assert.match(r.stdout, /rank 1 got SIGTERM #1/);
  assert.doesNotMatch(r.stdout, /#2/);
  assert.match(r.stderr, /rank 1 \(pid \d+\) did not exit 1500 ms after SIGTERM; sending SIGKILL/);
});
