// Conceptual Captions 3M: the released TSV (`caption \t url`, no header; img2dataset's recipe adds
// the header line `caption\turl` with sed) and the images img2dataset downloaded from it with
// --output_format files (see img2dataset.ts for the layout). Many URLs are dead, so rows without
// a downloaded image are expected: they are counted as omitted, not as errors.
import type { ImageTextPair } from "./index.js";
import { MalformedRecord, attempt, counterFor, type ReadOptions } from "./errors.js";
import { Img2DatasetFiles, resolveLayout, type Img2DatasetLayout } from "./img2dataset.js";
import { readLines } from "./stream.js";

export interface Cc3mOptions extends Partial<Img2DatasetLayout> {
  /** The TSV given to img2dataset (Train_GCC-training.tsv, with or without the `caption\turl` header). */
  readonly tsv: string;
  /** img2dataset's --output_folder (files format): 00000/000000000.jpg, .txt, .json, … */
  readonly images: string;
}

const HEADER = "caption\turl";

/**
 * One pair per TSV row whose image was downloaded, in file order, streaming the TSV line by line.
 * A row that is not two non-empty tab-separated fields is skipped and counted; empty lines are
 * not rows (pyarrow's CSV reader, which img2dataset uses, drops them too).
 * ```ts
 * for await (const p of readCc3m({ tsv: "cc3m.tsv", images: "cc3m" })) p.captions[0];
 * ```
 */
export async function* readCc3m(options: Cc3mOptions, read?: ReadOptions): AsyncGenerator<ImageTextPair> {
  const errors = counterFor("cc3m", read);
  const layout = resolveLayout(options, options.tsv);
  const files = await Img2DatasetFiles.open(options.images, layout);
  const file = options.tsv;
  let row = -1; // data rows seen, as img2dataset numbered them
  for await (const { line, lineNo } of readLines(file)) {
    if (line.trim() === "") continue;
    if (row === -1 && line === HEADER) continue;
    row++;
    const source = { file, record: `line ${lineNo}` };
    const shardId = Math.floor(row / layout.samplesPerShard);
    const index = row % layout.samplesPerShard;
    const pair = await attempt(errors, async (): Promise<ImageTextPair | null> => {
      const fields = line.split("\t");
      if (fields.length !== 2) throw new MalformedRecord(source, `expected 2 tab-separated fields (caption, url), got ${fields.length}`);
      const caption = fields[0]!.trim();
      const url = fields[1]!; // as img2dataset saw it, to match its .json
      if (caption === "") throw new MalformedRecord(source, "empty caption");
      if (url.trim() === "") throw new MalformedRecord(source, "empty url");
      const sample = await files.find(shardId, index, url, source);
      if (sample === null) {
        errors.omit("not downloaded");
        return null;
      }
      return { id: sample.key, image: sample.image, captions: [caption], meta: sample.meta, source };
    });
    if (pair !== null) yield pair;
  }
}
