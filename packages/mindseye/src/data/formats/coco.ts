// COCO Captions: one JSON object (annotations/captions_{train,val}2017.json, ~90 MB at most, so it
// is parsed whole) with `images[] {id, file_name, width, height, …}` and
// `annotations[] {id, image_id, caption}`, about five captions per image. One pair per image.
import { join } from "node:path";
import type { ImageTextPair } from "./index.js";
import { DataFormatError, MalformedRecord, attempt, counterFor, type ReadOptions, type RecordSource } from "./errors.js";
import { asObject, int, str, text } from "./fields.js";
import { readJsonFile } from "./stream.js";

export interface CocoOptions {
  /** The captions file: annotations/captions_train2017.json (2014 files have the same schema). */
  readonly annotations: string;
  /** The folder holding the images named by `file_name` (train2017/, val2017/). */
  readonly images: string;
}

const EXPECTED = "COCO captions JSON: {images: [{id, file_name}], annotations: [{image_id, caption}]}";

/**
 * One pair per image, its captions in file order, stripped (COCO captions carry trailing spaces
 * and newlines). Malformed image entries and annotations are skipped and counted; an image left
 * with no caption is omitted.
 * ```ts
 * for await (const p of readCoco({ annotations: "annotations/captions_val2017.json", images: "val2017" })) p.captions;
 * ```
 */
export async function* readCoco(options: CocoOptions, read?: ReadOptions): AsyncGenerator<ImageTextPair> {
  const errors = counterFor("coco", read);
  const file = options.annotations;
  const json = await readJsonFile(file, EXPECTED);
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new DataFormatError(`${file}: expected a JSON object (${EXPECTED})`);
  const { images, annotations } = json as { images?: unknown; annotations?: unknown };
  if (!Array.isArray(images) || !Array.isArray(annotations)) {
    throw new DataFormatError(`${file}: expected arrays "images" and "annotations" at the top level (${EXPECTED}); found keys ${Object.keys(json).join(", ")}`);
  }

  // 1. images by id, in file order
  const byId = new Map<number, { index: number; fileName: string; meta: Record<string, unknown>; captions: string[] }>();
  for (let i = 0; i < images.length; i++) {
    const source = { file, record: `images[${i}]` };
    await attempt(errors, () => {
      const o = asObject(images[i], source);
      const id = int(o, "id", source);
      if (byId.has(id)) throw new MalformedRecord(source, `duplicate image id ${id} (first at images[${byId.get(id)!.index}])`);
      const fileName = str(o, "file_name", source);
      const { id: _id, file_name: _f, ...meta } = o;
      byId.set(id, { index: i, fileName, meta, captions: [] });
      return null; // counted through its captions below
    });
  }

  // 2. captions onto their images; each annotation is one record of the file
  for (let i = 0; i < annotations.length; i++) {
    const source = { file, record: `annotations[${i}]` };
    await attempt(errors, () => {
      const o = asObject(annotations[i], source);
      const imageId = int(o, "image_id", source);
      const caption = text(o, "caption", source);
      const image = byId.get(imageId);
      if (image === undefined) throw new MalformedRecord(source, `image_id ${imageId} is not in "images"`);
      image.captions.push(caption);
      return true;
    });
  }

  // 3. one pair per image
  for (const [id, image] of byId) {
    if (image.captions.length === 0) {
      errors.omit("images without captions");
      continue;
    }
    const source: RecordSource = { file, record: `images[${image.index}] (id ${id})` };
    yield { id: String(id), image: { kind: "file", path: join(options.images, image.fileName) }, captions: image.captions, meta: image.meta, source };
  }
}
