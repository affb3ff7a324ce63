// LAION-400M: the released metadata parquet files (laion400m-meta/*.parquet, columns URL, TEXT,
// NSFW, similarity, LICENSE, …) and the images img2dataset downloaded from them
// (`--url_list laion400m-meta --input_format parquet --url_col URL --caption_col TEXT`) with
// --output_format files. img2dataset reads the files of a folder in sorted order and cuts each
// into its own run of shards, numbered on from the previous file's; see img2dataset.ts.
import type { ImageTextPair } from "./index.js";
import { MalformedRecord, attempt, counterFor, type ReadOptions } from "./errors.js";
import { asObject, text } from "./fields.js";
import { Img2DatasetFiles, resolveLayout, type Img2DatasetLayout } from "./img2dataset.js";
import { openParquet, parquetFiles, parquetRows, requireColumns } from "./parquet.js";

export interface LaionOptions extends Partial<Img2DatasetLayout> {
  /** The --url_list given to img2dataset: one metadata parquet file, or the folder of them. */
  readonly metadata: string;
  /** img2dataset's --output_folder (files format). */
  readonly images: string;
}

const EXPECTED = "LAION metadata parquet with columns URL and TEXT (plus NSFW, similarity, LICENSE)";

/**
 * One pair per metadata row whose image was downloaded, reading one row group at a time. `meta`
 * holds the row's other columns under their own names (URL, NSFW, similarity, LICENSE, …); filter
 * on them downstream. A row without a URL or TEXT string is skipped and counted; NSFW values
 * are passed on as published ("UNLIKELY", "UNSURE", "NSFW").
 * ```ts
 * for await (const p of readLaion({ metadata: "laion400m-meta", images: "laion400m-data" })) p.meta.similarity;
 * ```
 */
export async function* readLaion(options: LaionOptions, read?: ReadOptions): AsyncGenerator<ImageTextPair> {
  const errors = counterFor("laion", read);
  const layout = resolveLayout(options, options.metadata);
  const downloads = await Img2DatasetFiles.open(options.images, layout);
  let firstShard = 0; // img2dataset's start_shard_id for the current file
  for (const name of await parquetFiles(options.metadata, EXPECTED)) {
    const file = await openParquet(name, EXPECTED);
    requireColumns(file, ["URL", "TEXT"], EXPECTED);
    for await (const { row, index } of parquetRows(file, errors)) {
      const source = { file: name, record: `row ${index}` };
      const pair = await attempt(errors, async (): Promise<ImageTextPair | null> => {
        const o = asObject(row, source);
        const url = o.URL;
        if (typeof url !== "string" || url.trim() === "") throw new MalformedRecord(source, `"URL" must be a non-empty string, got ${JSON.stringify(url)}`);
        const caption = text(o, "TEXT", source);
        const shardId = firstShard + Math.floor(index / layout.samplesPerShard);
        const sample = await downloads.find(shardId, index % layout.samplesPerShard, url, source);
        if (sample === null) {
          errors.omit("not downloaded");
          return null;
        }
        const { TEXT: _text, ...meta } = o;
        return { id: sample.key, image: sample.image, captions: [caption], meta, source };
      });
      if (pair !== null) yield pair;
    }
    firstShard += Math.ceil(file.numRows / layout.samplesPerShard);
  }
}
