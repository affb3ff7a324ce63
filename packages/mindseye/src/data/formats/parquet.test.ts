import { test } from "node:test";
import assert from "node:assert/strict";
import { asyncBufferFromFile, type AsyncBuffer } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { DataFormatError, SkipCounter } from "./errors.js";
import { openParquet, parquetRows } from "./parquet.js";
import { fileURLToPath } from "node:url";

test("parquetRows reads one row group at a time: the first row comes before later groups are fetched", async () => {
  // 4 row groups of 20,000 rows (~2 MB, past hyparquet's 512 KB first footer fetch)
  const n = 80_000;
  const text = Array.from({ length: n }, (_, i) => `caption number ${i} ${"x".repeat(i % 17)}`);
  const bytes = parquetWriteBuffer({ columnData: [{ name: "TEXT", data: text, type: "STRING" }, { name: "i", data: Int32Array.from({ length: n }, (_, i) => i), type: "INT32" }], rowGroupSize: 20_000 });
  let maxEnd = 0; // furthest byte read since the footer
  const buffer: AsyncBuffer = {
    byteLength: bytes.byteLength,
    slice(start, end) {
      maxEnd = Math.max(maxEnd, end ?? bytes.byteLength);
      return bytes.slice(start, end);
    },
  };
  const file = await openParquet({ name: "mem.parquet", buffer }, "test");
  assert.equal(file.metadata.row_groups.length, 4);
  maxEnd = 0;
  const rows = parquetRows(file, new SkipCounter("p"));
  const first = await rows.next();
  assert.deepEqual(first.value, { row: { TEXT: "caption number 0 ", i: 0 }, index: 0 });
  const group1Start = Number(file.metadata.row_groups[1]!.columns[0]!.meta_data!.data_page_offset);
  assert.ok(maxEnd > 0 && maxEnd <= group1Start, `read up to byte ${maxEnd}; row group 1 starts at ${group1Start}`);
  let count = 1;
  for await (const { row, index } of rows) {
    assert.equal(row.i, index);
    count++;
  }
  assert.equal(count, n);
});

test("openParquet names a file that is not parquet", async () => {
  const notParquet = fileURLToPath(new URL("../../../test-fixtures/formats/cc3m/cc3m.tsv", import.meta.url));
  await assert.rejects(openParquet(notParquet, "LAION metadata parquet"), (e: unknown) => e instanceof DataFormatError && e.message.startsWith(`cannot read ${notParquet} as parquet`));
  const buf = await asyncBufferFromFile(notParquet);
  assert.ok(buf.byteLength > 0);
});
