import { test } from "node:test";
import assert from "node:assert/strict";
import { availableParallelism, arch, platform } from "node:os";
import { machineRecord } from "./environment.js";

test("machineRecord names this machine's CPU, vector extension, BLAS and libtorch", () => {
  const m = machineRecord();
  assert.equal(m.cores, availableParallelism());
  assert.match(m.libtorch, /^\d+\.\d+/);
  assert.ok(m.cpu.length > 0 && m.blas.length > 0, JSON.stringify(m));
  if (platform() === "linux" && arch() === "x64") assert.ok(["avx512f", "avx2", "avx", "sse4_2"].includes(m.vector), `read from /proc/cpuinfo: ${m.vector}`);
});
