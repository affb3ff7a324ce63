// The `--output_format files` layout of img2dataset (rom1504/img2dataset, writer.py and
// downloader.py at 95523bc7): input row `index` of shard `shardId` is written, when its download
// succeeded, as out/{shard}/{key}.{jpg|png|webp} + {key}.txt + {key}.json, where
//   shard = shardId zero-padded to oom_shard_count digits (default 5),
//   key   = 10^ceil(log10(number_sample_per_shard)) · shardId + index, zero-padded to that many
//           digits plus oom_shard_count (default 10,000 per shard → 9 digits: 000010005 = shard 1, row 5).
// Input rows are cut into shards of number_sample_per_shard in order, file after file, so the
// row of a source file maps to (shardId, index) and back. The .json holds the input columns
// (url, caption, …) and key, status, width, height, original_width, original_height, exif.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ImageRef } from "./index.js";
import { DataFormatError, MalformedRecord, messageOf, type RecordSource } from "./errors.js";
import { asObject } from "./fields.js";

export interface Img2DatasetLayout {
  /** img2dataset's --number_sample_per_shard (default 10000). */
  readonly samplesPerShard: number;
  /** img2dataset's --oom_shard_count (default 5): digits of the shard folder name. */
  readonly shardDigits: number;
}

export const IMG2DATASET_DEFAULTS: Img2DatasetLayout = Object.freeze({ samplesPerShard: 10000, shardDigits: 5 });

export function resolveLayout(p: Partial<Img2DatasetLayout>, where: string): Img2DatasetLayout {
  const l = { ...IMG2DATASET_DEFAULTS, ...p };
  if (!Number.isInteger(l.samplesPerShard) || l.samplesPerShard < 1) throw new DataFormatError(`${where}: samplesPerShard must be a positive integer, got ${l.samplesPerShard}`);
  if (!Number.isInteger(l.shardDigits) || l.shardDigits < 1) throw new DataFormatError(`${where}: shardDigits must be a positive integer, got ${l.shardDigits}`);
  return l;
}

/** img2dataset's compute_key. */
export function img2datasetKey(shardId: number, index: number, layout: Img2DatasetLayout): string {
  const oomSample = Math.ceil(Math.log10(layout.samplesPerShard));
  return String(10 ** oomSample * shardId + index).padStart(oomSample + layout.shardDigits, "0");
}

export function shardFolderName(shardId: number, layout: Img2DatasetLayout): string {
  return String(shardId).padStart(layout.shardDigits, "0");
}

const IMAGE_EXTENSIONS = ["jpg", "png", "webp"] as const;

/** A downloaded sample found in the output folder. */
export interface DownloadedSample {
  readonly key: string;
  readonly image: ImageRef;
  /** The sample's .json, parsed. */
  readonly meta: Record<string, unknown>;
}

/**
 * Looks up input rows in an img2dataset `files` output folder. Rows are looked up in increasing
 * order, so one shard's directory listing is held at a time.
 */
export class Img2DatasetFiles {
  private listedShard = -1;
  private names = new Set<string>();

  private constructor(readonly root: string, readonly layout: Img2DatasetLayout) {}

  static async open(root: string, layout: Img2DatasetLayout): Promise<Img2DatasetFiles> {
    const s = await stat(root).catch((e: unknown) => {
      throw new DataFormatError(`img2dataset output folder ${root}: ${messageOf(e)} (expected the --output_folder of an img2dataset run with --output_format files)`);
    });
    if (!s.isDirectory()) throw new DataFormatError(`${root} is not a folder (expected the --output_folder of an img2dataset run with --output_format files)`);
    return new Img2DatasetFiles(root, layout);
  }

  /**
   * The sample written for input row `index` of shard `shardId`, or null when it was not
   * downloaded. `url` is the row's URL: the sample's .json must carry the same one, otherwise
   * the folder was not written from this input with this layout, and reading on would pair
   * captions with the wrong images, so that is a DataFormatError.
   */
  async find(shardId: number, index: number, url: string, source: RecordSource): Promise<DownloadedSample | null> {
    if (shardId !== this.listedShard) await this.list(shardId);
    const key = img2datasetKey(shardId, index, this.layout);
    const ext = IMAGE_EXTENSIONS.find((e) => this.names.has(`${key}.${e}`));
    if (ext === undefined) return null;
    const dir = join(this.root, shardFolderName(shardId, this.layout));
    const jsonPath = join(dir, `${key}.json`);
    let meta: Record<string, unknown>;
    try {
      meta = asObject(JSON.parse(await readFile(jsonPath, "utf8")), source, jsonPath);
    } catch (e) {
      if (e instanceof MalformedRecord) throw e;
      throw new MalformedRecord(source, `cannot read ${jsonPath}: ${messageOf(e)}`);
    }
    const metaUrl = meta.url;
    if (typeof metaUrl !== "string") throw new MalformedRecord(source, `${jsonPath} has no "url" string`);
    if (metaUrl !== url) {
      throw new DataFormatError(
        `${jsonPath} has url ${JSON.stringify(metaUrl)} but ${source.file} ${source.record} has ${JSON.stringify(url)}: ` +
          `the folder ${this.root} was not written by img2dataset from this input with samplesPerShard ${this.layout.samplesPerShard} ` +
          `and shardDigits ${this.layout.shardDigits}; pass the values of that run (--number_sample_per_shard, --oom_shard_count)`,
      );
    }
    return { key, image: { kind: "file", path: join(dir, `${key}.${ext}`) }, meta };
  }

  private async list(shardId: number): Promise<void> {
    const dir = join(this.root, shardFolderName(shardId, this.layout));
    try {
      this.names = new Set(await readdir(dir));
    } catch (e) {
      // img2dataset makes a shard's folder when it starts that shard: no folder, nothing downloaded
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new DataFormatError(`cannot list ${dir}: ${messageOf(e)}`);
      this.names = new Set();
    }
    this.listedShard = shardId;
  }
}
