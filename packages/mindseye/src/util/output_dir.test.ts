import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OutputDirError, makeOutputDir } from "./output_dir.js";

const isOutputDirError = (code: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof OutputDirError, String(e));
  assert.equal(e.code, code);
  assert.match(e.message, pattern);
  return true;
};

test("output folders are made with their parents; an existing folder is fine", () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-out-"));
  try {
    makeOutputDir(join(root, "a", "b", "c"), "the run folder");
    assert.ok(statSync(join(root, "a", "b", "c")).isDirectory());
    makeOutputDir(join(root, "a", "b", "c"), "the run folder");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a folder under /proc or a read-only folder is EROFS with what and where, not ENOENT (and does not hang)", { skip: process.platform !== "linux" && "needs Linux's /proc" }, () => {
  assert.throws(() => makeOutputDir("/proc/mindseye-test/run #2", "the target cache (--out)"),
    isOutputDirError("EROFS", /^cannot create the target cache \(--out\) \/proc\/mindseye-test\/run #2: \/proc is on a read-only file system \(proc mounted at \/proc\) \(EROFS\); choose a writable location$/));
  const root = mkdtempSync(join(tmpdir(), "mindseye-out-"));
  try {
    const ro = join(root, "ro");
    makeOutputDir(ro, "x");
    chmodSync(ro, 0o555);
    assert.throws(() => makeOutputDir(join(ro, "eval", "gqa"), "the evaluation's output folder (--out)"),
      isOutputDirError("EROFS", new RegExp(`^cannot create the evaluation's output folder \\(--out\\) ${ro}/eval/gqa: ${ro} is read-only \\(mode 555\\) \\(EROFS\\)`)));
    assert.equal(existsSync(join(ro, "eval")), false);
    chmodSync(ro, 0o755);
    writeFileSync(join(root, "file"), "");
    assert.throws(() => makeOutputDir(join(root, "file", "sub"), "the run folder"), isOutputDirError("ENOTDIR", /file is a file, not a folder/));
    assert.throws(() => makeOutputDir(join(root, "file"), "the run folder"), isOutputDirError("ENOTDIR", /file exists and is a file, not a folder/));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
