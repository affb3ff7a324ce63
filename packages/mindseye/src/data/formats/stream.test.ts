import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataFormatError, MalformedRecord } from "./errors.js";
import { jsonObjectEntries, parseJsonValue, readLines } from "./stream.js";

const dir = mkdtempSync(join(tmpdir(), "mindseye-stream-"));

async function entries(file: string) {
  const out: { key: string; index: number; value: unknown }[] = [];
  for await (const e of jsonObjectEntries(file, "test")) out.push({ key: e.key, index: e.index, value: JSON.parse(e.json) });
  return out;
}

test("jsonObjectEntries yields every entry of a large object, across read chunks, as JSON.parse sees it", async () => {
  // > 1 MiB so values straddle the 1 MiB read chunks; strings hold every structural character
  const obj: Record<string, unknown> = {};
  for (let i = 0; i < 6000; i++) {
    obj[`q${i} "quoted" {x}`] = {
      question: `Is the {thing}, [or] "that" \\ here? é中😀 ${"x".repeat(i % 300)}`,
      answer: i % 2 === 0 ? "yes" : null,
      list: [1, [2, { a: "}" }], -3.5e2, true, false],
    };
  }
  obj.last = 42;
  obj.str = "a,b}";
  const file = join(dir, "big.json");
  writeFileSync(file, "\ufeff" + JSON.stringify(obj, null, 1));
  const got = await entries(file);
  assert.equal(got.length, Object.keys(obj).length);
  assert.deepEqual(Object.fromEntries(got.map((e) => [e.key, e.value])), obj);
  assert.deepEqual(got.slice(0, 2).map((e) => e.index), [0, 1]);
});

test("jsonObjectEntries: empty object, and files that are not one object", async () => {
  const f = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
  assert.deepEqual(await entries(f("empty.json", " {} \n")), []);
  await assert.rejects(entries(f("array.json", "[1, 2]")), (e: unknown) => e instanceof DataFormatError && /array\.json: expected '\{'/.test(e.message));
  await assert.rejects(entries(f("trail.json", '{"a": 1} x')), /unexpected 'x' after the closing/);
  // a truncated file yields its complete entries, then fails naming the file
  const seen: string[] = [];
  await assert.rejects(async () => {
    for await (const e of jsonObjectEntries(f("cut.json", '{"a": {"b": 1}, "c": [1, 2], "d": {"e": '), "test")) seen.push(e.key);
  }, /cut\.json: the file ends inside the object \(truncated\?\)/);
  assert.deepEqual(seen, ["a", "c"]);
});

test("parseJsonValue turns a syntax error into a MalformedRecord naming the record", () => {
  assert.throws(() => parseJsonValue('{"a": tru}', { file: "q.json", record: "question 7" }), (e: unknown) => e instanceof MalformedRecord && /^q\.json question 7: not valid JSON/.test(e.message));
});

test("readLines numbers lines from 1 and strips \\r\\n", async () => {
  const p = join(dir, "lines.tsv");
  writeFileSync(p, "a\tb\r\nc\td\n\nlast");
  const got: string[] = [];
  for await (const { line, lineNo } of readLines(p)) got.push(`${lineNo}:${line}`);
  assert.deepEqual(got, ["1:a\tb", "2:c\td", "3:", "4:last"]);
});
