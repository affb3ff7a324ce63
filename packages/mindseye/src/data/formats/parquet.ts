// Parquet read incrementally with hyparquet: the footer first, then one row group at a time, so
// memory holds one row group (HF datasets writes ~100 rows per group for image data, pyarrow up
// to ~1M small rows), never the file. Byte-array columns without a UTF8 annotation (image bytes)
// come back as Uint8Array; annotated strings as strings.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData } from "hyparquet";
import { DataFormatError, messageOf, type SkipCounter } from "./errors.js";

/** A parquet file, or every *.parquet in a folder sorted by name (as img2dataset and HF list them). */
export async function parquetFiles(path: string, expected: string): Promise<string[]> {
  const s = await stat(path).catch((e: unknown) => {
    throw new DataFormatError(`${path}: ${messageOf(e)} (expected ${expected})`);
  });
  if (!s.isDirectory()) return [path];
  const names = (await readdir(path)).filter((n) => n.endsWith(".parquet")).sort();
  if (names.length === 0) throw new DataFormatError(`${path} holds no *.parquet file (expected ${expected})`);
  return names.map((n) => join(path, n));
}

/** An opened parquet file: its footer and top-level column names. */
export interface ParquetFile {
  readonly name: string;
  readonly buffer: AsyncBuffer;
  readonly metadata: FileMetaData;
  readonly columns: readonly string[];
  readonly numRows: number;
}

/** Reads a file's footer; a file that is not parquet is a DataFormatError naming it. */
export async function openParquet(file: string | { name: string; buffer: AsyncBuffer }, expected: string): Promise<ParquetFile> {
  const name = typeof file === "string" ? file : file.name;
  try {
    const buffer = typeof file === "string" ? await asyncBufferFromFile(file) : file.buffer;
    const metadata = await parquetMetadataAsync(buffer);
    const columns = parquetSchema(metadata).children.map((c) => c.element.name);
    return { name, buffer, metadata, columns, numRows: Number(metadata.num_rows) };
  } catch (e) {
    throw new DataFormatError(`cannot read ${name} as parquet: ${messageOf(e)} (expected ${expected})`);
  }
}

/** Throws unless the file has every column in `required`, listing those it has. */
export function requireColumns(file: ParquetFile, required: readonly string[], expected: string): void {
  const missing = required.filter((c) => !file.columns.includes(c));
  if (missing.length > 0) {
    throw new DataFormatError(`${file.name}: missing column(s) ${missing.join(", ")}; it has ${file.columns.join(", ")} (expected ${expected})`);
  }
}

/**
 * The rows of a parquet file with their 0-based index, one row group read at a time. A row group
 * that cannot be decoded is skipped and counted as one bad record (the rest of the file is read).
 */
export async function* parquetRows(
  file: ParquetFile,
  errors: SkipCounter,
  options: { columns?: readonly string[]; utf8?: boolean } = {},
): AsyncGenerator<{ row: Record<string, unknown>; index: number }> {
  let rowStart = 0;
  for (let g = 0; g < file.metadata.row_groups.length; g++) {
    const rowEnd = rowStart + Number(file.metadata.row_groups[g]!.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file: file.buffer,
        metadata: file.metadata,
        rowStart,
        rowEnd,
        ...(options.columns ? { columns: [...options.columns] } : {}),
        utf8: options.utf8 ?? true,
      });
    } catch (e) {
      errors.skip({ file: file.name, record: `row group ${g} (rows ${rowStart}–${rowEnd - 1})` }, `cannot decode: ${messageOf(e)}`);
      rowStart = rowEnd;
      continue;
    }
    for (let i = 0; i < rows.length; i++) yield { row: rows[i]!, index: rowStart + i };
    rowStart = rowEnd;
  }
}
