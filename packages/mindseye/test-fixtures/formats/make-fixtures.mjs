// Writes the small dataset fixtures that packages/mindseye/src/data/formats/*.test.ts read, each in
// the exact published layout (shared/reference/formats.md §1–2), with 8×8 images and a few
// deliberately malformed records. Output is deterministic; the files are committed.
// regenerate: node packages/mindseye/test-fixtures/formats/make-fixtures.mjs
// (sharp 0.34.5, tar-stream 3.2.2, hyparquet-writer 0.17.0)
import { Buffer } from "node:buffer";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import tar from "tar-stream";
import { parquetWriteFile } from "hyparquet-writer";

const ROOT = dirname(fileURLToPath(import.meta.url));

function write(rel, data) {
  const path = join(ROOT, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** An 8×8 RGB image, a diagonal gradient from colour a to colour b. */
async function image(format, a, b) {
  const px = Buffer.alloc(8 * 8 * 3);
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const t = (x + y) / 14;
      for (let c = 0; c < 3; c++) px[(y * 8 + x) * 3 + c] = Math.round(a[c] * (1 - t) + b[c] * t);
    }
  }
  const s = sharp(px, { raw: { width: 8, height: 8, channels: 3 } });
  if (format === "jpg") return s.jpeg({ quality: 90 }).toBuffer();
  if (format === "png") return s.png().toBuffer();
  return s.webp({ lossless: true }).toBuffer();
}

const RED = [220, 30, 30], GREEN = [30, 200, 60], BLUE = [40, 60, 220], GREY = [128, 128, 128], WHITE = [255, 255, 255];

// img2dataset's per-sample metadata (writer.py: json.dumps(meta, indent=4)); keys in its order.
function img2datasetJson(fields) {
  return JSON.stringify(fields, null, 4);
}
function meta(url, caption, key, extra = {}) {
  return { ...extra, caption, url, key, status: "success", error_message: null, width: 8, height: 8, original_width: 8, original_height: 8, exif: "{}" };
}

for (const dir of ["coco", "cc3m", "webdataset", "laion", "gqa", "scienceqa", "blink", "blink_jsonl"]) rmSync(join(ROOT, dir), { recursive: true, force: true });

// ---- COCO captions (annotations/captions_val2017.json + val2017/) ------------------------------
write("coco/annotations/captions_val2017.json", JSON.stringify({
  info: { description: "COCO 2017 Dataset (fixture)", url: "http://cocodataset.org", version: "1.0", year: 2017, contributor: "COCO Consortium", date_created: "2017/09/01" },
  licenses: [{ url: "http://creativecommons.org/licenses/by-nc-sa/2.0/", id: 1, name: "Attribution-NonCommercial-ShareAlike License" }],
  images: [
    { license: 1, file_name: "000000000139.jpg", coco_url: "http://images.cocodataset.org/val2017/000000000139.jpg", height: 8, width: 8, date_captured: "2013-11-21 01:34:01", flickr_url: "http://farm9.staticflickr.com/8035/8024364858_9c41dc1666_z.jpg", id: 139 },
    { license: 1, file_name: "000000000285.jpg", coco_url: "http://images.cocodataset.org/val2017/000000000285.jpg", height: 8, width: 8, date_captured: "2013-11-18 22:38:01", flickr_url: "http://farm8.staticflickr.com/7180/6862289386_2a2d93302a_z.jpg", id: 285 },
    { license: 1, file_name: "000000000632.jpg", coco_url: "http://images.cocodataset.org/val2017/000000000632.jpg", height: 8, width: 8, date_captured: "2013-11-20 21:14:01", flickr_url: "http://farm4.staticflickr.com/3232/2913497024_b30e4e4d8b_z.jpg", id: 632 },
  ],
  annotations: [
    { image_id: 139, id: 372891, caption: "A woman stands in the dining area at the table." },
    { image_id: 285, id: 588663, caption: "A big burly grizzly bear is show with grass in the background.\n" },
    { image_id: 139, id: 376046, caption: "A room with chairs, a table, and a woman in it. " },
    { image_id: 285, id: 589038, caption: "The large brown bear has a black nose." },
    { id: 999001, caption: "An annotation without an image_id." },
    { image_id: 77777, id: 999002, caption: "An annotation for an image that is not listed." },
    { image_id: 139, id: 378530, caption: "A woman standing in a kitchen by a window" },
  ],
}));
write("coco/val2017/000000000139.jpg", await image("jpg", RED, WHITE));
write("coco/val2017/000000000285.jpg", await image("jpg", GREEN, GREY));
write("coco/val2017/000000000632.jpg", await image("jpg", BLUE, GREY)); // listed, but has no caption

// ---- CC3M: the TSV with img2dataset's header, and the img2dataset files output of it -----------
const cc3mRows = [
  ["a very typical bus station", "http://example.com/cc3m/bus.jpg"], // row 0 → 000000000 downloaded
  ["sierra looked stunning in this top and this skirt", "http://example.com/cc3m/dead.jpg"], // row 1: dead link
  ["a row with three fields", "http://example.com/cc3m/three.jpg", "extra"], // row 2: malformed
  ["actor arrives at the premiere", "http://example.com/cc3m/actor.png"], // row 3 → 000000003.png
  ["", "http://example.com/cc3m/nocaption.jpg"], // row 4: empty caption
  ["the harbour at night", "http://example.com/cc3m/harbour.jpg"], // row 5 → 000000005
];
write("cc3m/cc3m.tsv", "caption\turl\n" + cc3mRows.map((r) => r.join("\t")).join("\n") + "\n");
for (const [row, fmt, colours] of [[0, "jpg", [RED, BLUE]], [3, "png", [GREEN, WHITE]], [5, "jpg", [BLUE, GREY]]]) {
  const key = String(row).padStart(9, "0");
  const [caption, url] = cc3mRows[row];
  write(`cc3m/images/00000/${key}.${fmt}`, await image(fmt, ...colours));
  write(`cc3m/images/00000/${key}.txt`, caption);
  write(`cc3m/images/00000/${key}.json`, img2datasetJson(meta(url, caption, key)));
}

// ---- WebDataset: img2dataset --output_format webdataset shards ---------------------------------
async function tarFile(rel, members) {
  const pack = tar.pack();
  const chunks = [];
  pack.on("data", (c) => chunks.push(c));
  const done = new Promise((resolve) => pack.on("end", resolve));
  for (const [name, body] of members) pack.entry({ name, mtime: new Date(0), mode: 0o644, uid: 0, gid: 0 }, body);
  pack.finalize();
  await done;
  write(rel, Buffer.concat(chunks));
}
const wds = async (key, fmt, caption, colours) => [
  [`${key}.${fmt}`, await image(fmt, ...colours)],
  [`${key}.txt`, caption],
  [`${key}.json`, img2datasetJson(meta(`http://example.com/wds/${key}.${fmt}`, caption, key))],
];
await tarFile("webdataset/00000.tar", [
  ...(await wds("000000000", "jpg", "a dog on a skateboard", [RED, GREY])),
  ...(await wds("000000001", "png", "two cups of coffee on a table", [GREEN, WHITE])),
  ...(await wds("000000002", "webp", "a lighthouse by the sea", [BLUE, WHITE])),
  ["000000003.jpg", await image("jpg", GREY, WHITE)], // malformed: no caption
  ["000000003.json", img2datasetJson(meta("http://example.com/wds/3.jpg", "", "000000003"))],
  ["000000004.jpg", await image("jpg", RED, BLUE)], // malformed: its json is cut short
  ["000000004.txt", "a broken metadata file"],
  ["000000004.json", '{\n    "url": "http://example.com/wds/4.jpg",\n    "caption": '],
  ...(await wds("000000005", "jpg", "a red bicycle against a wall", [RED, WHITE])),
]);
await tarFile("webdataset/00001.tar", [
  ...(await wds("000010000", "jpg", "snow on the mountains", [WHITE, GREY])),
  ...(await wds("000010001", "jpg", "a plate of pasta", [RED, GREEN])),
]);

// ---- LAION: release metadata parquet (two files) + img2dataset files output, 3 samples per shard -
// img2dataset numbers shards on across files: part-00000 (5 rows) → shards 0, 1; part-00001 → shard 2.
// Keys have ceil(log10(3)) + 5 = 6 digits: shard 1 row 1 → 000011.
const laionParts = [
  [
    ["http://example.com/laion/0.jpg", "Vintage poster of a seaside town", "UNLIKELY", 0.3512, "?"], // 000000 downloaded
    ["http://example.com/laion/1.jpg", "Wooden chair, side view", "UNLIKELY", 0.3105, "?"], // not downloaded
    ["http://example.com/laion/2.jpg", null, "UNSURE", 0.3301, "?"], // malformed: TEXT null
    ["http://example.com/laion/3.jpg", "Cat sleeping on a sofa", "UNLIKELY", 0.3899, "https://creativecommons.org/licenses/by/4.0/"], // 000010
    ["http://example.com/laion/4.jpg", "Mountain lake at sunrise", "UNLIKELY", 0.3422, "?"], // 000011
  ],
  [
    ["http://example.com/laion/5.jpg", "Red sports car", "UNSURE", 0.3011, "?"], // 000020
    ["http://example.com/laion/6.jpg", "Bowl of ramen", "UNLIKELY", 0.3650, "?"], // not downloaded
  ],
];
mkdirSync(join(ROOT, "laion/laion400m-meta"), { recursive: true });
for (const [p, rows] of laionParts.entries()) {
  parquetWriteFile({
    filename: join(ROOT, `laion/laion400m-meta/part-0000${p}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet`),
    columnData: [
      { name: "URL", data: rows.map((r) => r[0]), type: "STRING" },
      { name: "TEXT", data: rows.map((r) => r[1]), type: "STRING" },
      { name: "NSFW", data: rows.map((r) => r[2]), type: "STRING" },
      { name: "similarity", data: rows.map((r) => r[3]), type: "DOUBLE" },
      { name: "LICENSE", data: rows.map((r) => r[4]), type: "STRING" },
    ],
    rowGroupSize: 2, // several row groups, so the reader's row-group streaming is exercised
  });
}
mkdirSync(join(ROOT, "laion/images"), { recursive: true });
for (const [part, row, shard, key, colours] of [[0, 0, "00000", "000000", [RED, GREEN]], [0, 3, "00001", "000010", [GREY, WHITE]], [0, 4, "00001", "000011", [BLUE, WHITE]], [1, 0, "00002", "000020", [RED, GREY]]]) {
  const [url, caption, nsfw, similarity, license] = laionParts[part][row];
  write(`laion/images/${shard}/${key}.jpg`, await image("jpg", ...colours));
  write(`laion/images/${shard}/${key}.txt`, caption);
  write(`laion/images/${shard}/${key}.json`, img2datasetJson(meta(url, caption, key, { NSFW: nsfw, similarity, LICENSE: license })));
}

// ---- GQA: questions1.2/testdev_balanced_questions.json + images/ --------------------------------
const gqaQuestion = (imageId, question, answer, fullAnswer, structural, semantic, detailed, local) => ({
  semantic: [{ operation: "select", dependencies: [], argument: "object (1)" }],
  entailed: [], equivalent: [], question, imageId, isBalanced: true,
  groups: { global: null, local }, answer, semanticStr: "select: object (1)",
  annotations: { answer: {}, question: {}, fullAnswer: {} },
  types: { detailed, semantic, structural }, fullAnswer,
});
write("gqa/questions1.2/testdev_balanced_questions.json", JSON.stringify({
  "20968379": gqaQuestion("n288870", "Do the shorts have dark color?", "yes", "Yes, the shorts are dark.", "verify", "attr", "verifyAttr", "06-shorts_dark"),
  "20968380": { ...gqaQuestion("n288870", "Is the man wearing a hat?", "no", "No, the man is not wearing a hat.", "verify", "rel", "existRelS", "13-man_hat"), isBalanced: false },
  "20968381": (({ imageId: _drop, ...rest }) => rest)(gqaQuestion("n161313", "What is the animal in the grass?", "zebra", "The animal is a zebra.", "query", "cat", "categoryRelS", "14-grass_in,s")),
  "201551245": gqaQuestion("2354786", "Which side is the plate on?", "left", "The plate is on the left of the image.", "query", "attr", "positionQuery", "10q-plate_position"),
}));
write("gqa/images/n288870.jpg", await image("jpg", GREY, BLUE));
write("gqa/images/2354786.jpg", await image("jpg", WHITE, RED));

// ---- ScienceQA: data/scienceqa/problems.json + pid_splits.json + images/{split}/{pid}/ ----------
const sqa = (question, choices, answer, hint, imageName, split, extra = {}) => ({
  question, choices, answer, hint, image: imageName, task: "closed choice", grade: "grade4",
  subject: "natural science", topic: "geography", category: "Geography", skill: "Read a map: cardinal directions",
  lecture: "A map is a drawing of a place.", solution: "Look at the compass rose.", split, ...extra,
});
write("scienceqa/data/scienceqa/problems.json", JSON.stringify({
  "1": sqa("Which direction is the river?", ["north", "south", "east", "west"], 0, "", "image.png", "train"),
  "5": sqa("Which of these states is farthest north?", ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], 0, "", "image.png", "test"),
  "7": sqa("Which word would you find on a dictionary page?", ["cart", "dog"], 1, "", null, "test", { subject: "language science" }),
  "9": sqa("Identify the question that Tom's experiment can best answer.", ["A", "B"], 2, "The passage below describes an experiment.", "image.png", "test"),
  "11": sqa("Which animal's feet are also adapted for swimming?", ["sea otter", "tokay gecko"], 0, "Sea turtles have flippers.", "image.png", "test", { subject: "natural science", topic: "biology" }),
}, null, 2));
write("scienceqa/data/scienceqa/pid_splits.json", JSON.stringify({ train: ["1"], val: [], test: ["5", "7", "9", "11", "404"], minival: [] }));
write("scienceqa/images/train/1/image.png", await image("png", BLUE, WHITE));
write("scienceqa/images/test/5/image.png", await image("png", GREEN, WHITE));
write("scienceqa/images/test/11/image.png", await image("png", RED, WHITE));

// ---- BLINK: HF parquet, config Jigsaw, HF Image features as {bytes, path} structs ----------------
const JIGSAW_PROMPT = "Given the first image with the lower right corner missing, can you tell which one of the second image or the third image is the missing part? Imagine which image would be more appropriate to place in the missing spot. You can also carefully observe and compare the edges of the images.\nSelect from the following choices.\n\n(A) the second image\n(B) the third image";
const JIGSAW_QUESTION = "Which image is the missing part in the first image?";
const blinkSchema = [
  { name: "schema", num_children: 11 },
  { name: "idx", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "question", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "sub_task", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  ...["image_1", "image_2", "image_3", "image_4"].flatMap((name) => [
    { name, repetition_type: "OPTIONAL", num_children: 2 },
    { name: "bytes", type: "BYTE_ARRAY", repetition_type: "OPTIONAL" },
    { name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  ]),
  { name: "choices", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  { name: "element", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "answer", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "prompt", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "explanation", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
];
// the features block HF datasets stores in the parquet metadata
const string = { dtype: "string", _type: "Value" };
const hfFeatures = JSON.stringify({ info: { features: {
  idx: string, question: string, sub_task: string,
  image_1: { _type: "Image" }, image_2: { _type: "Image" }, image_3: { _type: "Image" }, image_4: { _type: "Image" },
  choices: { feature: string, _type: "Sequence" }, answer: string, prompt: string, explanation: string,
} } });
async function blinkFile(rel, rows) {
  const img = async (colours) => ({ bytes: await image("png", ...colours), path: null });
  const built = [];
  for (const r of rows) built.push({ ...r, images: await Promise.all(r.images.map((c) => (c === null ? null : img(c)))) });
  mkdirSync(dirname(join(ROOT, rel)), { recursive: true });
  parquetWriteFile({
    filename: join(ROOT, rel),
    schema: blinkSchema,
    columnData: [
      { name: "idx", data: built.map((r) => r.idx) },
      { name: "question", data: built.map(() => JIGSAW_QUESTION) },
      { name: "sub_task", data: built.map(() => "Jigsaw") },
      ...[0, 1, 2, 3].map((i) => ({ name: `image_${i + 1}`, data: built.map((r) => r.images[i] ?? null) })),
      { name: "choices", data: built.map((r) => r.choices) },
      { name: "answer", data: built.map((r) => r.answer) },
      { name: "prompt", data: built.map(() => JIGSAW_PROMPT) },
      { name: "explanation", data: built.map(() => "") },
    ],
    kvMetadata: [{ key: "huggingface", value: hfFeatures }],
    rowGroupSize: 2,
  });
}
await blinkFile("blink/Jigsaw/val-00000-of-00001.parquet", [
  { idx: "val_Jigsaw_1", images: [[RED, BLUE], [GREEN, WHITE], [BLUE, GREY], null], choices: ["the second image", "the third image"], answer: "(B)" },
  { idx: "val_Jigsaw_2", images: [[GREEN, GREY], [RED, WHITE], [GREY, BLUE], null], choices: ["the second image", "the third image"], answer: "(A)" },
  { idx: "val_Jigsaw_3", images: [[BLUE, RED], [WHITE, GREY], [GREEN, RED], null], choices: ["the second image", "the third image"], answer: "B" }, // malformed answer
]);
await blinkFile("blink/Jigsaw/test-00000-of-00001.parquet", [
  { idx: "test_Jigsaw_1", images: [[GREY, RED], [RED, GREEN], [WHITE, BLUE], null], choices: ["the second image", "the third image"], answer: "hidden" },
]);

// ---- BLINK as JSON lines with image files (the synthetic world's blink/Jigsaw/{split}.jsonl) ------
const jsonlRows = [
  { idx: "val_Jigsaw_1", images: [[RED, BLUE], [GREEN, WHITE], [BLUE, GREY]], answer: "(B)" },
  { idx: "val_Jigsaw_2", images: [[GREEN, GREY], [RED, WHITE], [GREY, BLUE]], answer: "(A)" },
  { idx: "val_Jigsaw_3", images: [[BLUE, RED], [WHITE, GREY], [GREEN, RED]], answer: "B" }, // malformed answer
];
const jsonlLines = [];
for (const r of jsonlRows) {
  const names = [];
  for (const [i, colours] of r.images.entries()) {
    names.push(`images/${r.idx}_${i + 1}.png`);
    write(`blink_jsonl/Jigsaw/images/${r.idx}_${i + 1}.png`, await image("png", ...colours));
  }
  jsonlLines.push(JSON.stringify({
    idx: r.idx, question: JIGSAW_QUESTION, sub_task: "Jigsaw", image_1: names[0], image_2: names[1], image_3: names[2], image_4: null,
    choices: ["the second image", "the third image"], answer: r.answer, prompt: JIGSAW_PROMPT, explanation: "",
  }));
}
write("blink_jsonl/Jigsaw/val.jsonl", jsonlLines.join("\n") + "\n");
console.log(`fixtures written under ${ROOT}`);
