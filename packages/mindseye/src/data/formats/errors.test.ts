import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorRateExceeded, MalformedRecord, SkipCounter, attempt } from "./errors.js";

const at = (n: number) => ({ file: "data.tsv", record: `line ${n}` });

test("SkipCounter counts good, skipped and omitted records and names the skipped ones", () => {
  const c = new SkipCounter("cc3m", { keepExamples: 2 });
  c.ok(); c.ok();
  c.skip(at(3), "empty caption");
  c.omit("not downloaded", 4);
  c.skip(at(7), "expected 2 fields");
  c.skip(at(9), "empty url");
  const r = c.report();
  assert.equal(r.seen, 5);
  assert.equal(r.skipped, 3);
  assert.deepEqual(r.omitted, { "not downloaded": 4 });
  assert.deepEqual(r.examples.map((e) => `${e.source.file} ${e.source.record}`), ["data.tsv line 3", "data.tsv line 7"]);
  const s = c.summary();
  assert.match(s, /cc3m: 3 of 5 records skipped \(60%\); left out: 4 not downloaded/);
  assert.match(s, /data\.tsv line 3: empty caption/);
  assert.match(s, /and 1 more/);
});

test("the error-rate stop waits for minRecords, then stops with counts and the first bad records", () => {
  const c = new SkipCounter("webdataset", { maxErrorRate: 0.1, minRecords: 10 });
  for (let i = 1; i <= 3; i++) c.skip(at(i), "no caption");
  for (let i = 0; i < 6; i++) c.ok(); // 9 seen: not judged yet
  assert.throws(() => c.ok(), (e: unknown) => {
    assert.ok(e instanceof ErrorRateExceeded);
    assert.match(e.message, /stopped reading webdataset: 3 of 10 records were malformed \(30%\), above maxErrorRate 10%/);
    assert.match(e.message, /data\.tsv line 1: no caption/);
    assert.match(e.message, /raise maxErrorRate/);
    assert.equal(e.report.skipped, 3);
    return true;
  });
});

test("a rate at or below maxErrorRate never stops", () => {
  const c = new SkipCounter("laion", { maxErrorRate: 0.01, minRecords: 100 });
  c.skip(at(1), "bad");
  for (let i = 0; i < 99; i++) c.ok();
  c.omit("not downloaded", 1000); // omitted records are not errors
  assert.equal(c.skipped, 1);
  assert.equal(c.seen, 100);
});

test("policies out of range are rejected", () => {
  assert.throws(() => new SkipCounter("x", { maxErrorRate: 1.5 }), /maxErrorRate/);
  assert.throws(() => new SkipCounter("x", { minRecords: 0 }), /minRecords/);
});

test("attempt counts a MalformedRecord as a skip, a value as good, null as neither; other errors propagate", async () => {
  const c = new SkipCounter("x");
  assert.equal(await attempt(c, () => 1), 1);
  assert.equal(await attempt(c, () => { throw new MalformedRecord(at(2), "bad"); }), null);
  assert.equal(await attempt(c, async () => null), null);
  await assert.rejects(attempt(c, () => { throw new TypeError("a bug"); }), TypeError);
  assert.equal(c.seen, 2);
  assert.equal(c.skipped, 1);
});
