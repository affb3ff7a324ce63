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
  assert.equal(r.records.length, 3, "the report keeps every skipped record");
});

test("the error rate is judged on the whole input: where the bad records sit does not decide", () => {
  // 200 records, 4 bad (2%) under a 3% limit: the same verdict whether the bad ones come first or last
  for (const badFirst of [true, false]) {
    const c = new SkipCounter("webdataset", { maxErrorRate: 0.03 });
    const bad = () => { for (let i = 0; i < 4; i++) c.skip(at(i), "no caption"); };
    if (badFirst) bad();
    for (let i = 0; i < 196; i++) c.ok();
    if (!badFirst) bad();
    assert.equal(c.finish().skipped, 4, `bad records ${badFirst ? "first" : "last"}`);
  }
  // 5 of 100 (5%) is past 3% at the end, wherever they are
  const c = new SkipCounter("webdataset", { maxErrorRate: 0.03 });
  for (let i = 1; i <= 5; i++) c.skip(at(i), "no caption");
  for (let i = 0; i < 95; i++) c.ok();
  assert.throws(() => c.finish(), (e: unknown) => {
    assert.ok(e instanceof ErrorRateExceeded);
    assert.match(e.message, /stopped reading webdataset: 5 of 100 records were malformed \(5%\), above the maximum error rate 3%/);
    assert.match(e.message, /data\.tsv line 1: no caption/);
    assert.match(e.message, /allow a higher rate with --max-error-rate \(mindseye targets extract, mindseye eval\) or the recipe key max_error_rate/);
    assert.doesNotMatch(e.message, /raise maxErrorRate/);
    assert.equal(e.report.skipped, 5);
    return true;
  });
});

test("with the input's size known, the run stops as soon as the rate is certain to be exceeded", () => {
  const c = new SkipCounter("images", { maxErrorRate: 0.1, setting: "max_error_rate in the recipe" });
  c.expectTotal(20);
  c.skip(at(1), "corrupt");
  c.skip(at(2), "corrupt"); // 2 of 20 = 10%: not past yet
  assert.throws(() => c.skip(at(3), "corrupt"), (e: unknown) => e instanceof ErrorRateExceeded
    && /3 of its 20 records are malformed \(15% even if the 17 not yet read are all good\), above the maximum error rate 10%/.test(e.message)
    && /allow a higher rate with max_error_rate in the recipe\.$/.test(e.message));
});

test("a resumed run carries the counts of the part already done", () => {
  const c = new SkipCounter("images", { maxErrorRate: 0.25 });
  c.carry(2, [{ source: at(1), reason: "corrupt" }]);
  c.ok();
  assert.deepEqual([c.seen, c.skipped], [4, 1]);
  assert.deepEqual(c.finish().records.map((r) => r.source.record), ["line 1"]);
  c.skip(at(5), "corrupt");
  assert.throws(() => c.finish(), /2 of 5 records were malformed \(40%\)/);
});

test("a rate at or below maxErrorRate never stops", () => {
  const c = new SkipCounter("laion", { maxErrorRate: 0.01 });
  c.skip(at(1), "bad");
  for (let i = 0; i < 99; i++) c.ok();
  c.omit("not downloaded", 1000); // omitted records are not errors
  assert.equal(c.finish().skipped, 1);
  assert.equal(c.seen, 100);
});

test("policies out of range are rejected", () => {
  assert.throws(() => new SkipCounter("x", { maxErrorRate: 1.5 }), /maxErrorRate/);
  assert.throws(() => new SkipCounter("x", { keepExamples: -1 }), /keepExamples/);
  assert.throws(() => new SkipCounter("x").expectTotal(-1), /expectTotal/);
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
