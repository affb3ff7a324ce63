import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stepMarkerPath, stepRunner, studyMachines, studySeconds, unionSeconds } from "./steps.js";
import { machinesLine } from "./report.js";

const quiet = () => {};

test("unionSeconds counts overlapping stretches once and the gaps between them not at all", () => {
  const s = 1000;
  assert.equal(unionSeconds([]), 0);
  assert.equal(unionSeconds([[0, 10 * s]]), 10);
  assert.equal(unionSeconds([[0, 10 * s], [5 * s, 12 * s]]), 12, "overlap");
  assert.equal(unionSeconds([[20 * s, 25 * s], [0, 10 * s]]), 15, "a gap, out of order");
  assert.equal(unionSeconds([[0, 10 * s], [2 * s, 3 * s], [10 * s, 11 * s]]), 11, "contained and touching");
  assert.equal(unionSeconds([[5 * s, 5 * s], [7 * s, 6 * s]]), 0, "empty and reversed stretches count nothing");
});

/** Writes a finished step's marker as an earlier sitting would have (times as ISO dates). */
function writeMarker(dir: string, out: string, m: { started?: string; finished: string; interrupted?: { started: string; ended: string }[] }) {
  mkdirSync(join(dir, "steps"), { recursive: true });
  writeFileSync(stepMarkerPath(dir, join(dir, out)), JSON.stringify({ step: out, fingerprint: "f", settings: {}, complete: true, ...m }));
}

test("a study's wall time joins this sitting with the finished steps of earlier ones, gaps left out", async () => {
  const dir = mkdtempSync(join(tmpdir(), "steps-"));
  try {
    // Sitting 1: two steps in parallel, 10:00–10:30 and 10:20–10:40 (40 min together). Sitting 2,
    // a day later: a step interrupted at 09:05 (its last write), resumed 12:00–12:10.
    writeMarker(dir, "a", { started: "2026-01-01T10:00:00Z", finished: "2026-01-01T10:30:00Z" });
    writeMarker(dir, "b", { started: "2026-01-01T10:20:00Z", finished: "2026-01-01T10:40:00Z" });
    writeMarker(dir, "c", { started: "2026-01-02T12:00:00Z", finished: "2026-01-02T12:10:00Z", interrupted: [{ started: "2026-01-02T09:00:00Z", ended: "2026-01-02T09:05:00Z" }] });
    // The paper study's launched recipes sit beside the markers and are not markers.
    writeFileSync(join(dir, "steps", "c.recipe.json"), JSON.stringify({ out: "c" }));
    const step = stepRunner({ dir, log: quiet, force: false, plan: null });
    await step("eval", "this sitting's step", join(dir, "d"), {}, [], async () => {});
    // This sitting lasts 7 s from its start; its step falls inside it.
    assert.equal(studySeconds(dir, step, 7), (40 + 10 + 5) * 60 + 7);

    // A finished step recorded before start times were kept: its time is unknown, so only this sitting counts.
    writeMarker(dir, "old", { finished: "2025-12-01T10:00:00Z" });
    assert.equal(studySeconds(dir, step, 7), 7);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a resumed step keeps its interrupted attempt, ended at its last write", async () => {
  const dir = mkdtempSync(join(tmpdir(), "steps-"));
  try {
    const out = join(dir, "train");
    const interrupted = new Date("2026-01-01T10:05:00Z");
    await assert.rejects(stepRunner({ dir, log: quiet, force: false, plan: null })("finetune", "train", out, { lr: 1 }, [], async () => {
      mkdirSync(join(out, "checkpoint-1"), { recursive: true });
      writeFileSync(join(out, "checkpoint-1", "model.safetensors"), "x");
      throw new Error("killed");
    }), /killed/);
    const marker = () => JSON.parse(readFileSync(stepMarkerPath(dir, out), "utf8")) as { complete: boolean; started: string; finished?: string; interrupted?: { started: string; ended: string }[] };
    const first = marker();
    assert.equal(first.complete, false);
    assert.ok(first.started, "an unfinished step records when it started");
    // The checkpoint is the attempt's last write; the marker is dated earlier so that it does not count.
    utimesSync(join(out, "checkpoint-1", "model.safetensors"), interrupted, interrupted);
    utimesSync(stepMarkerPath(dir, out), new Date(0), new Date(0));

    const step = stepRunner({ dir, log: quiet, force: false, plan: null });
    await step("finetune", "train", out, { lr: 1 }, [], async () => {});
    const done = marker();
    assert.equal(done.complete, true);
    assert.deepEqual(done.interrupted, [{ started: first.started, ended: interrupted.toISOString() }]);
    assert.ok(Date.parse(done.finished!) >= Date.parse(done.started) && Date.parse(done.started) >= Date.parse(first.started));

    // Redone with other settings (--force): its outputs are new, and so is its time.
    await stepRunner({ dir, log: quiet, force: true, plan: null })("finetune", "train", out, { lr: 2 }, [], async () => {});
    assert.equal(marker().interrupted, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("each step records the machine that ran it, and the study counts its steps by machine", async () => {
  const dir = mkdtempSync(join(tmpdir(), "steps-"));
  try {
    const here = { cpu: "AMD EPYC", vector: "avx2", cores: 2, blas: "OpenBLAS 0.3.21 Zen", libtorch: "1.13.0" };
    const there = { ...here, cpu: "Intel Xeon", vector: "avx512f", blas: "OpenBLAS 0.3.21 SkylakeX" };
    const run = async (machine: typeof here, out: string) => stepRunner({ dir, log: quiet, force: false, plan: null, machine })("eval", out, join(dir, out), {}, [], async () => {});
    await run(there, "a");
    await run(here, "b");
    await run(here, "c");
    writeMarker(dir, "old", { finished: "2025-12-01T10:00:00Z" });
    assert.deepEqual((JSON.parse(readFileSync(stepMarkerPath(dir, join(dir, "a")), "utf8")) as { machine: unknown }).machine, there);
    const made = studyMachines(dir);
    assert.deepEqual(made, { machines: [{ ...here, steps: 2 }, { ...there, steps: 1 }], unrecorded: 1 });
    const line = machinesLine(made)[0]!;
    assert.match(line, /^Made on: AMD EPYC \(avx2, 2 cores\), OpenBLAS 0\.3\.21 Zen, libtorch 1\.13\.0: 2 of 4 steps; Intel Xeon \(avx512f, 2 cores\), .*: 1 of 4 steps; 1 step made before machines were recorded\./);
    assert.match(machinesLine({ machines: [{ ...here, steps: 3 }], unrecorded: 0 })[0]!, /libtorch 1\.13\.0: all 3 steps\./);
    assert.deepEqual(machinesLine({ machines: [], unrecorded: 3 }), [], "nothing to say when no step recorded its machine");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
