import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { arange, full, randn, tensor, zeros } from "../creation.js";
import { DTYPES, type DType, isFloatingPoint } from "../dtype.js";
import { scope } from "../scope.js";
import type { Tensor } from "../tensor.js";
import {
  SAFETENSORS_DTYPE, SafetensorsError, loadFile, loadFileInto, loadMetadata, loadSharded, loadShardedInto, readHeader, saveFile, saveSharded,
} from "./safetensors.js";

const root = mkdtempSync(join(tmpdir(), "mindseye-safetensors-"));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
/** A fresh empty directory per test. */
function freshDir(): string {
  const d = join(root, `t${counter++}`);
  mkdirSync(d);
  return d;
}

/** A file from raw parts: 8-byte LE length (or an override), header text, data bytes. */
function rawFile(header: string, data: number[] | Uint8Array = [], length?: bigint): Buffer {
  const json = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}

function writeRaw(bytes: Buffer): string {
  const p = join(freshDir(), "x.safetensors");
  writeFileSync(p, bytes);
  return p;
}

/** Asserts that reading `bytes` fails with a SafetensorsError naming the file and each fragment. */
function rejects(bytes: Buffer, ...fragments: string[]): void {
  const p = writeRaw(bytes);
  assert.throws(() => loadFile(p), (e: Error) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e.name}: ${e.message}`);
    assert.ok(e.message.includes(p), `message should name the file: ${e.message}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message should contain ${JSON.stringify(f)}: ${e.message}`);
    return true;
  });
}

/** Elementwise equal (same shape and dtype). */
const same = (a: Tensor, b: Tensor): boolean => a.eq(b).all().item() === 1;
const f32 = (xs: number[]) => Buffer.from(new Float32Array(xs).buffer);

describe("round trip", () => {
  test("every engine dtype, with metadata, keeps shape, dtype and bytes", () => scope(() => {
    const made = new Map<string, Tensor>();
    for (const d of DTYPES) {
      let t: Tensor;
      if (isFloatingPoint(d)) t = randn([3, 4]).to({ dtype: d });
      else if (d === "bool") t = arange(12).reshape(3, 4).gt(5);
      else if (d === "uint8") t = arange(12).reshape(3, 4).to({ dtype: d });
      else t = arange(-6, 6).reshape(3, 4).to({ dtype: d });
      assert.equal(t.dtype, d);
      made.set(`w.${d}`, t);
    }
    const p = join(freshDir(), "all.safetensors");
    saveFile(p, made, { note: "héllo", format: "pt" });
    // Metadata keys are written sorted, so equal inputs give equal files.
    assert.ok(readFileSync(p).subarray(8).toString("utf8").startsWith('{"__metadata__":{"format":"pt","note":"héllo"},'));

    const header = readHeader(p);
    assert.equal(header.headerSize % 8, 0);
    for (const d of DTYPES) assert.equal(header.tensors.get(`w.${d}`)!.dtype, SAFETENSORS_DTYPE[d]);
    assert.deepEqual(loadMetadata(p), { format: "pt", note: "héllo" });

    const back = loadFile(p);
    assert.deepEqual([...back.keys()].sort(), [...made.keys()].sort());
    for (const [name, t] of made) {
      const u = back.get(name)!;
      assert.equal(u.dtype, t.dtype, name);
      assert.deepEqual(u.shape, [3, 4], name);
      assert.deepEqual(u.toBytes(), t.toBytes(), name);
    }
  }));

  test("an empty tensor and a scalar", () => scope(() => {
    const p = join(freshDir(), "edge.safetensors");
    saveFile(p, { empty: randn([0]), scalar: tensor(2.5) });
    assert.equal(loadMetadata(p), undefined);
    const back = loadFile(p);
    assert.deepEqual(back.get("empty")!.shape, [0]);
    assert.deepEqual(back.get("scalar")!.shape, []);
    assert.equal(back.get("scalar")!.item(), 2.5);
  }));

  test("names filter loads only those, and a missing name is an error", () => scope(() => {
    const p = join(freshDir(), "f.safetensors");
    saveFile(p, { a: tensor([1]), b: tensor([2]), c: tensor([3]) });
    assert.deepEqual([...loadFile(p, { names: ["c", "a"] }).keys()].sort(), ["a", "c"]);
    assert.throws(() => loadFile(p, { names: ["a", "zz"] }), /tensor "zz".*no such tensor/);
  }));
});

describe("byte-exact fixture from the specification", () => {
  // Header: 167 bytes of JSON + 1 space of padding = 168 = 0xA8.
  const header = '{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},' +
    '"b":{"dtype":"I64","shape":[3],"data_offsets":[16,40]},' +
    '"c":{"dtype":"BF16","shape":[],"data_offsets":[40,42]}} ';
  const fixture = Buffer.concat([
    Buffer.from([0xa8, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from(header, "utf8"),
    // a: F32 1, 2, 3, 4 (0x3F800000, 0x40000000, 0x40400000, 0x40800000), little-endian
    Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40]),
    // b: I64 -1, 2, 300 (0x12C)
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0x02, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0x2c, 0x01, 0, 0, 0, 0, 0, 0]),
    // c: BF16 0x3F80 = 1.0
    Buffer.from([0x80, 0x3f]),
  ]);

  test("the reader gives the specified values", () => scope(() => {
    assert.equal(Buffer.byteLength(header), 168);
    const p = writeRaw(fixture);
    const h = readHeader(p);
    assert.equal(h.headerSize, 168);
    assert.equal(h.dataStart, 176);
    assert.deepEqual(h.tensors.get("b"), { dtype: "I64", shape: [3], dataOffsets: [16, 40] });
    const m = loadFile(p);
    assert.equal(m.get("a")!.dtype, "float32");
    assert.deepEqual(m.get("a")!.tolist(), [[1, 2], [3, 4]]);
    assert.equal(m.get("b")!.dtype, "int64");
    assert.deepEqual(m.get("b")!.tolist(), [-1, 2, 300]);
    assert.equal(m.get("c")!.dtype, "bfloat16");
    assert.deepEqual(m.get("c")!.shape, []);
    assert.equal(m.get("c")!.item(), 1);
  }));

  test("the writer produces exactly these bytes", () => scope(() => {
    const p = join(freshDir(), "w.safetensors");
    // Inserted out of order: the writer sorts by name.
    saveFile(p, {
      c: tensor(1).to({ dtype: "bfloat16" }),
      b: tensor([-1, 2, 300], { dtype: "int64" }),
      a: tensor([[1, 2], [3, 4]]),
    });
    assert.deepEqual(readFileSync(p), fixture);
  }));

  test("metadata comes first in the header, which is space-padded to a multiple of 8", () => scope(() => {
    const p = join(freshDir(), "m.safetensors");
    saveFile(p, { a: tensor([[1, 2], [3, 4]]) }, { format: "pt" });
    const bytes = readFileSync(p);
    const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}';
    assert.equal(json.length, 88); // already a multiple of 8: no padding
    assert.equal(bytes.readBigUInt64LE(0), 88n);
    assert.equal(bytes.subarray(8, 96).toString("utf8"), json);
    assert.deepEqual(bytes.subarray(96), f32([1, 2, 3, 4]));
  }));
});

describe("hostile and corrupt files are rejected", () => {
  const ok = (name: string, dtype: string, shape: number[], b: number, e: number) =>
    `"${name}":{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":[${b},${e}]}`;

  test("shorter than 8 bytes", () => rejects(Buffer.from([1, 2, 3]), "shorter than the 8-byte"));
  test("header length larger than the file", () => rejects(rawFile("{}", [], 1000n), "header length 1000 runs past the end"));
  test("header length above the 100 MB cap", () => rejects(rawFile("{}", [], 100_000_001n), "exceeds the 100000000-byte cap"));
  test("header length near 2^64", () => rejects(rawFile("{}", [], 0xffff_ffff_ffff_ffffn), "cap"));
  test("header that is not JSON", () => rejects(rawFile("{not json   "), "not valid JSON"));
  test("header that is not a JSON object", () => rejects(rawFile("[1, 2]"), "must be a JSON object"));
  test("header that is not UTF-8", () => rejects(Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff]), "not valid UTF-8"));
  test("truncated in the data", () => scope(() => {
    const p = join(freshDir(), "t.safetensors");
    saveFile(p, { a: randn([4]), b: randn([4]) });
    const full = readFileSync(p);
    rejects(full.subarray(0, full.length - 3), 'tensor "b"', "run past the end of the 29-byte data buffer", "truncated");
  }));
  test("offsets past the end", () => rejects(rawFile(`{${ok("a", "F32", [2], 0, 8)}}`, f32([1])), "run past the end"));
  test("overlapping offsets", () =>
    rejects(rawFile(`{${ok("a", "F32", [2], 0, 8)},${ok("b", "F32", [2], 4, 12)}}`, f32([1, 2, 3])), 'tensor "b"', 'overlaps tensor "a"'));
  test("a gap between tensors", () =>
    rejects(rawFile(`{${ok("a", "F32", [1], 0, 4)},${ok("b", "F32", [1], 8, 12)}}`, f32([1, 2, 3])), "gap of 4 bytes", 'tensor "b"'));
  test("a gap at the start", () => rejects(rawFile(`{${ok("a", "F32", [1], 4, 8)}}`, f32([1, 2])), "gap of 4 bytes", "starts at 0"));
  test("bytes after the last tensor", () => rejects(rawFile(`{${ok("a", "F32", [1], 0, 4)}}`, f32([1, 2])), "4 trailing bytes"));
  test("byte length different from numel × element size", () =>
    rejects(rawFile(`{${ok("a", "F32", [3], 0, 8)}}`, f32([1, 2])), 'tensor "a"', "span 8 bytes but F32 [3] needs 12"));
  test("begin after end", () => rejects(rawFile(`{${ok("a", "F32", [0], 8, 4)}}`, f32([1, 2])), "begin after they end"));
  test("unknown dtype", () => rejects(rawFile(`{${ok("a", "F128", [1], 0, 16)}}`, f32([1, 2, 3, 4])), 'unknown dtype "F128"'));
  test("a prototype key is not a dtype", () => rejects(rawFile(`{${ok("a", "constructor", [1], 0, 4)}}`, f32([1])), "unknown dtype"));
  test("negative shape", () => rejects(rawFile(`{${ok("a", "F32", [-1], 0, 4)}}`, f32([1])), "non-negative integers"));
  test("non-integer shape", () => rejects(rawFile(`{${ok("a", "F32", [1.5], 0, 4)}}`, f32([1])), "non-negative integers"));
  test("missing data_offsets", () =>
    rejects(rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, f32([1])), '"data_offsets"', "key is missing"));
  test("dtype of the wrong type", () =>
    rejects(rawFile(`{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}`, f32([1])), '"dtype" must be a string'));
  test("metadata that is not string to string", () =>
    rejects(rawFile(`{"__metadata__":{"step":100}}`), '"__metadata__"."step" must be a string'));
  test("a BOOL byte other than 0 or 1", () => rejects(rawFile(`{${ok("m", "BOOL", [2], 0, 2)}}`, [1, 2]), "BOOL element 1 is byte 2"));

  test("bit sizes of dtypes the engine lacks are validated", () => {
    // F4 [3] = 12 bits: not whole bytes.
    rejects(rawFile(`{${ok("a", "F4", [3], 0, 2)}}`, [0, 0]), "12 bits, not a whole number of bytes");
    // F4 [4] = 2 bytes, F6_E2M3 [4] = 3 bytes, C64 [1] = 8 bytes, U16 [2] = 4 bytes: valid headers.
    const h = `{${ok("f4", "F4", [4], 0, 2)},${ok("f6", "F6_E2M3", [4], 2, 5)},${ok("c", "C64", [1], 5, 13)},${ok("u", "U16", [2], 13, 17)}}`;
    const p = writeRaw(rawFile(h, new Uint8Array(17)));
    assert.deepEqual([...readHeader(p).tensors.keys()], ["f4", "f6", "c", "u"]);
  });

  test("a spec dtype the engine lacks is a clear error naming the tensor; others still load", () => scope(() => {
    const p = writeRaw(rawFile(`{${ok("a", "F32", [1], 0, 4)},${ok("q", "F8_E4M3", [4], 4, 8)}}`, [...f32([7]), 1, 2, 3, 4]));
    assert.throws(() => loadFile(p), /tensor "q".*dtype F8_E4M3 has no engine dtype/);
    assert.equal(loadFile(p, { names: ["a"] }).get("a")!.item(), 7);
  }));
});

test("a bf16 checkpoint loads as float32 with { dtype: 'float32' }; integers stay", () => scope(() => {
  const values = [1, -2.5, 0.15625, 3072, -0.0078125]; // exact in bf16
  const p = join(freshDir(), "bf16.safetensors");
  saveFile(p, { w: tensor(values).to({ dtype: "bfloat16" }), ids: tensor([5, 6], { dtype: "int64" }) });
  const raw = loadFile(p);
  assert.equal(raw.get("w")!.dtype, "bfloat16");
  const m = loadFile(p, { dtype: "float32" });
  assert.equal(m.get("w")!.dtype, "float32");
  assert.deepEqual(Array.from(m.get("w")!.toTypedArray() as Float32Array), values);
  assert.equal(m.get("ids")!.dtype, "int64");
  assert.throws(() => loadFile(p, { dtype: "int32" as DType }), /must be a floating dtype/);
}));

describe("sharded checkpoints", () => {
  // Five float32 [16] tensors of 64 bytes each; 150-byte shards hold two.
  const make = () => new Map(["e", "d", "c", "b", "a"].map((n, i) => [`layer.${n}`, arange(16).to({ dtype: "float32" }).add(i)]));

  test("several shards and an index, read back from the directory, the index or one shard", () => scope(() => {
    const dir = freshDir();
    const sd = make();
    const written = saveSharded(dir, sd, { maxShardBytes: 150, metadata: { format: "pt" } });
    const files = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
    assert.deepEqual(written, [...files, "model.safetensors.index.json"].map((f) => join(dir, f)));
    assert.deepEqual(readdirSync(dir).sort(), [...files, "model.safetensors.index.json"].sort());

    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    assert.deepEqual(index.metadata, { total_size: 5 * 64 });
    assert.deepEqual(Object.keys(index.weight_map), ["layer.a", "layer.b", "layer.c", "layer.d", "layer.e"]);
    assert.equal(index.weight_map["layer.a"], files[0]);
    assert.equal(index.weight_map["layer.e"], files[2]);
    assert.deepEqual(loadMetadata(join(dir, files[1]!)), { format: "pt" });

    for (const source of [dir, join(dir, "model.safetensors.index.json")]) {
      const back = loadSharded(source);
      assert.equal(back.size, 5);
      for (const [name, t] of sd) assert.deepEqual(back.get(name)!.toBytes(), t.toBytes(), name);
    }
    assert.deepEqual([...loadSharded(dir, { names: ["layer.e"] }).keys()], ["layer.e"]);
    assert.deepEqual([...loadSharded(join(dir, files[0]!)).keys()], ["layer.a", "layer.b"]);
    assert.throws(() => loadSharded(dir, { names: ["layer.z"] }), /tensor "layer.z".*no such tensor/);
  }));

  test("one shard writes model.safetensors and removes a stale index and shards", () => scope(() => {
    const dir = freshDir();
    saveSharded(dir, make(), { maxShardBytes: 150 });
    saveSharded(dir, make());
    assert.deepEqual(readdirSync(dir), ["model.safetensors"]);
    assert.equal(loadSharded(dir).size, 5);
  }));

  test("a missing shard file is a clear error", () => scope(() => {
    const dir = freshDir();
    saveSharded(dir, make(), { maxShardBytes: 150 });
    unlinkSync(join(dir, "model-00002-of-00003.safetensors"));
    assert.throws(() => loadSharded(dir), (e: Error) => {
      assert.match(e.message, /shard model-00002-of-00003\.safetensors, which holds tensor "layer\.c" and 1 more, does not exist/);
      return true;
    });
  }));

  test("an index that maps a tensor to the wrong shard is a clear error", () => scope(() => {
    const dir = freshDir();
    saveSharded(dir, make(), { maxShardBytes: 150 });
    const p = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(p, "utf8"));
    index.weight_map["layer.a"] = "model-00003-of-00003.safetensors";
    writeFileSync(p, JSON.stringify(index));
    assert.throws(() => loadSharded(dir), /maps tensor "layer\.a" to model-00003-of-00003\.safetensors, but that shard does not hold it/);
  }));

  test("an index may not point outside its directory", () => {
    const dir = freshDir();
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../x.safetensors" } }));
    assert.throws(() => loadSharded(dir), /must be a shard file name in the same directory/);
  });

  test("a directory with no checkpoint says what it looked for", () => {
    assert.throws(() => loadSharded(freshDir()), /neither model\.safetensors\.index\.json nor model\.safetensors/);
  });
});

describe("atomic writes", () => {
  test("no temp file remains after a save", () => scope(() => {
    const dir = freshDir();
    saveFile(join(dir, "a.safetensors"), { w: randn([8]) });
    saveFile(join(dir, "a.safetensors"), { w: randn([8]) }); // overwrite in place
    assert.deepEqual(readdirSync(dir), ["a.safetensors"]);
  }));

  test("a missing directory throws clearly and creates nothing", () => scope(() => {
    const dir = freshDir();
    const target = join(dir, "missing", "a.safetensors");
    assert.throws(() => saveFile(target, { w: randn([8]) }), (e: Error) => {
      assert.ok(e instanceof SafetensorsError);
      assert.ok(e.message.includes(target) && e.message.includes("does not exist"), e.message);
      return true;
    });
    assert.deepEqual(readdirSync(dir), []);
  }));

  test("a failure after the temp file was written removes it", () => scope(() => {
    const dir = freshDir();
    // The target is a non-empty directory, so the final rename fails.
    mkdirSync(join(dir, "a.safetensors"));
    writeFileSync(join(dir, "a.safetensors", "keep"), "");
    assert.throws(() => saveFile(join(dir, "a.safetensors"), { w: randn([8]) }), /cannot write .*a\.safetensors/);
    assert.deepEqual(readdirSync(dir), ["a.safetensors"]);
  }));

  test("invalid input is rejected before anything is written", () => scope(() => {
    const dir = freshDir();
    const t = randn([2]);
    t.dispose();
    assert.throws(() => saveFile(join(dir, "a.safetensors"), { w: t }), /tensor "w" was disposed/);
    assert.throws(() => saveFile(join(dir, "a.safetensors"), { __metadata__: randn([2]) }), /reserved/);
    assert.throws(() => saveFile(join(dir, "a.safetensors"), { w: randn([2]) }, { step: 3 as unknown as string }), /metadata "step" must be a string/);
    assert.deepEqual(readdirSync(dir), []);
  }));
});

describe("reading into existing tensors", () => {
  test("a tensor of several 16 MiB read chunks lands in place, as float32 and converted to bfloat16", () => scope(() => {
    // 2^24 + 1000 float32 values: 64 MiB + 4000 bytes, so the fifth chunk holds the last 1000.
    const n = (1 << 24) + 1000;
    const w = arange(n).to({ dtype: "float32" }).remainder(4093).sub(2046); // integers, exact in bf16
    const p = join(freshDir(), "big.safetensors");
    saveFile(p, { w, small: tensor([1.5, -2]) });

    const asF32 = zeros([n]), asBf16 = zeros([n], { dtype: "bfloat16" });
    const view = asF32.narrow(0, n - 3, 3); // shares storage: sees the load only if it is in place
    loadFileInto(p, new Map([["w", asF32]]));
    assert.ok(same(asF32, w), "float32 target equals the saved tensor");
    assert.deepEqual(Array.from(view.toTypedArray() as Float32Array), Array.from(w.narrow(0, n - 3, 3).toTypedArray() as Float32Array));
    loadFileInto(p, new Map([["w", asBf16]]));
    assert.equal(asBf16.dtype, "bfloat16");
    assert.ok(same(asBf16, w.to({ dtype: "bfloat16" })), "bf16 target equals the saved tensor converted");
  }));

  test("shape, dtype kind, name and layout are checked before anything is written", () => scope(() => {
    const p = join(freshDir(), "m.safetensors");
    saveFile(p, { a: tensor([1, 2, 3]), ids: tensor([4, 5], { dtype: "int64" }) });
    const a = full([3], 9);
    const untouched = () => assert.deepEqual(Array.from(a.toTypedArray() as Float32Array), [9, 9, 9]);
    assert.throws(() => loadFileInto(p, new Map([["a", a], ["ids", zeros([3], { dtype: "int64" })]])), /tensor "ids".*shape \[2\], the target \[3\]/);
    untouched();
    assert.throws(() => loadFileInto(p, new Map([["a", a], ["ids", zeros([2])]])), /tensor "ids".*holds I64, the target is float32/);
    untouched();
    assert.throws(() => loadFileInto(p, new Map([["a", a], ["zz", zeros([1])]])), /tensor "zz".*no such tensor/);
    untouched();
    assert.throws(() => loadFileInto(p, new Map([["a", zeros([6]).view(3, 2).select(1, 0)]])), /not contiguous/);
    untouched();
    loadFileInto(p, new Map([["ids", zeros([2], { dtype: "int64" })]])); // integers of the same dtype load
  }));

  test("countNonFinite counts NaN and ±infinity in every floating dtype, across chunks", () => scope(() => {
    const dir = freshDir();
    const values = [1, Number.NaN, Number.POSITIVE_INFINITY, -0, Number.NEGATIVE_INFINITY, -3.5, 65504];
    for (const dtype of ["float32", "float64", "bfloat16", "float16"] as DType[]) {
      const p = join(dir, `${dtype}.safetensors`);
      saveFile(p, { x: tensor(values).to({ dtype }), ids: tensor([7], { dtype: "int64" }) });
      const counts = loadFileInto(p, new Map([["x", zeros([values.length], { dtype })], ["ids", zeros([1], { dtype: "int64" })]]), { countNonFinite: true });
      assert.deepEqual(Object.fromEntries(counts), { x: { nan: 1, infinite: 2 } }, dtype);
      assert.equal(loadFileInto(p, new Map([["x", zeros([values.length], { dtype })]])).size, 0, "nothing counted unless asked");
    }
    // A NaN in the last 16 MiB chunk of a float32 tensor, an infinity in the first.
    const n = (1 << 24) + 8;
    const big = zeros([n]);
    big.narrow(0, n - 1, 1).fill_(Number.NaN);
    big.narrow(0, 0, 1).fill_(Number.POSITIVE_INFINITY);
    const p = join(dir, "big.safetensors");
    saveFile(p, { big });
    assert.deepEqual(loadFileInto(p, new Map([["big", zeros([n], { dtype: "bfloat16" })]]), { countNonFinite: true }).get("big"), { nan: 1, infinite: 1 });
  }));

  test("loadShardedInto reads the named tensors from the shards that hold them", () => scope(() => {
    const dir = freshDir();
    const sd = new Map(["e", "d", "c", "b", "a"].map((n, i) => [`layer.${n}`, arange(16).to({ dtype: "float32" }).add(i)]));
    saveSharded(dir, sd, { maxShardBytes: 150 });
    const targets = new Map(["layer.a", "layer.e"].map((n) => [n, zeros([16], { dtype: "bfloat16" })]));
    loadShardedInto(dir, targets);
    for (const [name, t] of targets) assert.ok(same(t, sd.get(name)!.to({ dtype: "bfloat16" })), name);
    assert.throws(() => loadShardedInto(dir, new Map([["layer.z", zeros([16])]])), /tensor "layer.z".*no such tensor/);
  }));
});
