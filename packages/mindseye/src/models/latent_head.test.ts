import { test } from "node:test";
import assert from "node:assert/strict";
import { torch, nn, F, type Tensor, type Generator } from "@mindseye/torch";
import {
  LatentHead, LATENT_HEAD_PRESETS, resolveLatentHead, latentHeadFromHfConfig, latentHeadToHfConfig,
  latentTokens, appendLatentQueries, findLatentPositions, gatherLatentPositions, gatherLastPosition, gatherImagePositions, resizeTokenEmbeddings,
} from "./latent_head.js";
import { ConfigError } from "../config/errors.js";

const maxAbs = (t: Tensor) => torch.scope(() => t.abs().max().item());
const names = (m: nn.Module) => [...m.stateDict().keys()].sort();

test("LatentHead: linear and MLP shapes, weight names, forward as written", () => {
  const gen = new torch.Generator(1);
  const lin = new LatentHead({ type: "linear", inputSize: 64, latentSize: 32 }, { generator: gen });
  const mlp = new LatentHead(LATENT_HEAD_PRESETS.tiny, { generator: gen });
  assert.deepEqual(names(lin), ["proj.bias", "proj.weight"]);
  assert.deepEqual(names(mlp), ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]);
  assert.deepEqual(mlp.fc1!.weight.shape, [96, 64]);
  assert.deepEqual(mlp.fc2!.weight.shape, [32, 96]);
  torch.scope(() => {
    const h = torch.randn([2, 4, 64], { generator: gen }); // [B, K, H]
    const zl = lin.forward(h), zm = mlp.forward(h);
    assert.deepEqual(zl.shape, [2, 4, 32]);
    assert.deepEqual(zm.shape, [2, 4, 32]);
    assert.ok(maxAbs(zl.sub(h.matmul(lin.proj!.weight.t()).add(lin.proj!.bias!))) < 1e-5);
    const manual = F.linear(F.gelu(F.linear(h, mlp.fc1!.weight, mlp.fc1!.bias)), mlp.fc2!.weight, mlp.fc2!.bias);
    assert.ok(maxAbs(zm.sub(manual)) < 1e-6);
  });
});

test("LatentHead config: defaults, JSON round trip, errors", () => {
  const c = resolveLatentHead({ inputSize: 8, latentSize: 4 });
  assert.deepEqual({ ...c }, { type: "mlp", inputSize: 8, hiddenSize: 8, latentSize: 4, bias: true });
  assert.deepEqual(latentHeadFromHfConfig(latentHeadToHfConfig(LATENT_HEAD_PRESETS.tiny)), LATENT_HEAD_PRESETS.tiny);
  assert.deepEqual(latentHeadToHfConfig(LATENT_HEAD_PRESETS.tiny), { type: "mlp", input_size: 64, hidden_size: 96, latent_size: 32, bias: true });
  assert.throws(() => latentHeadFromHfConfig({ type: "mlp", input_size: 8, latent_size: 4, hiden_size: 3 }), /unknown field "hiden_size"/);
  assert.throws(() => latentHeadFromHfConfig({ type: "conv", input_size: 8, latent_size: 4 }), ConfigError);
  assert.throws(() => resolveLatentHead({ type: "mlp", inputSize: 8, latentSize: 0 }), /latentSize must be a positive integer/);
  const noBias = new LatentHead({ type: "linear", inputSize: 4, latentSize: 2, bias: false });
  assert.deepEqual(names(noBias), ["proj.weight"]);
});

test("latentTokens and appendLatentQueries build the inputs", () => {
  assert.deepEqual(latentTokens(3), ["<|latent_0|>", "<|latent_1|>", "<|latent_2|>"]);
  assert.deepEqual(appendLatentQueries([5, 6, 7], 2, [100, 101, 102]), [5, 6, 7, 100, 101]);
  assert.throws(() => appendLatentQueries([5], 4, [100, 101, 102]), /k must be an integer in 1\.\.3/);
  assert.throws(() => latentTokens(0), /positive integer/);
});

// hidden[b, t, :] = [100·b + t, -(100·b + t)], so each gathered row says where it came from.
function markedHidden(b: number, t: number): Tensor {
  const rows = Array.from({ length: b }, (_, i) => Array.from({ length: t }, (_, j) => [100 * i + j, -(100 * i + j)]));
  return torch.tensor(rows);
}

test("gatherLatentPositions picks latent_0..latent_{K-1} in order, wherever they are", () => {
  const L = [900, 901, 902];
  const ids = torch.tensor([
    [1, 2, 3, 900, 901, 902],  // right after the caption
    [0, 0, 7, 900, 901, 902],  // left-padded
    [902, 5, 900, 6, 901, 8],  // scattered and out of order
  ], { dtype: "int64" });
  torch.scope(() => {
    const out = gatherLatentPositions(markedHidden(3, 6), ids, L); // [B, K, 2]
    assert.deepEqual(out.shape, [3, 3, 2]);
    assert.deepEqual(out.tolist(), [
      [[3, -3], [4, -4], [5, -5]],
      [[103, -103], [104, -104], [105, -105]],
      [[202, -202], [204, -204], [200, -200]],
    ]);
  });
  assert.deepEqual(findLatentPositions(ids, L), [[3, 4, 5], [3, 4, 5], [2, 4, 0]]);
  assert.deepEqual(findLatentPositions([[900, 1, 901]], [901, 900]), [[2, 0]]);
});

test("gatherLatentPositions errors name the sequence and the token", () => {
  const L = [900, 901];
  const h = markedHidden(2, 4);
  const missing = torch.tensor([[1, 2, 900, 901], [1, 2, 3, 900]], { dtype: "int64" });
  assert.throws(() => gatherLatentPositions(h, missing, L), /sequence 1 lacks latent_1 \(id 901\)/);
  const twice = torch.tensor([[900, 900, 901, 1], [1, 2, 900, 901]], { dtype: "int64" });
  assert.throws(() => gatherLatentPositions(h, twice, L), /sequence 0 holds latent_0 \(id 900\) more than once \(positions 0 and 1\)/);
  const ok = torch.tensor([[1, 2, 900, 901], [1, 900, 901, 2]], { dtype: "int64" });
  assert.throws(() => gatherLatentPositions(markedHidden(2, 5), ok, L), /expected hidden \[B, T, H\] and inputIds \[B, T\]/);
  assert.throws(() => gatherLatentPositions(h, ok, [900, 900]), /given twice/);
  assert.throws(() => gatherLatentPositions(h, ok, []), /no latent token ids/);
});

/** A tiny causal "LM": embeddings, a linear map, and a running mean over time (so earlier tokens matter). */
class TinyLM extends nn.Module {
  embed_tokens: nn.Embedding;
  mix: nn.Linear;
  lm_head: nn.Linear;
  constructor(vocab: number, width: number, gen: Generator) {
    super();
    this.embed_tokens = new nn.Embedding(vocab, width, { generator: gen });
    this.mix = new nn.Linear(width, width, { generator: gen });
    this.lm_head = new nn.Linear(width, vocab, { bias: false, generator: gen });
    this.lm_head.weight = this.embed_tokens.weight; // tied, as in small Qwen2 models
  }
  /** ids [B, T] -> hidden [B, T, H] */
  hidden(ids: Tensor): Tensor {
    const x = this.mix.forward(this.embed_tokens.forward(ids)).tanh();
    const t = ids.shape[1]!;
    return x.cumsum(1).div(torch.arange(1, t + 1, 1, { dtype: "float32" }).view(1, t, 1));
  }
}

test("gradients reach the head, the latent positions only, and the latent token embeddings", () => {
  const gen = new torch.Generator(7);
  const lm = new TinyLM(20, 16, gen);
  const L = [17, 18, 19];
  const head = new LatentHead({ type: "mlp", inputSize: 16, hiddenSize: 24, latentSize: 8 }, { generator: gen });
  const ids = torch.tensor([appendLatentQueries([3, 4, 5], 3, L), [0, ...appendLatentQueries([6, 7], 3, L)]], { dtype: "int64" }); // [2, 6]
  torch.scope(() => {
    const hidden = lm.hidden(ids);
    hidden.retainGrad();
    const zHat = head.forward(gatherLatentPositions(hidden, ids, L)); // [2, 3, 8]
    const target = torch.randn([2, 3, 8], { generator: gen });
    F.mseLoss(zHat, target).backward();

    for (const [name, p] of head.namedParameters()) assert.ok(maxAbs(p.grad!) > 0, `head ${name} has a gradient`);
    const g = hidden.grad!; // [2, 6, 16]: nonzero exactly at the latent positions (3..5 in row 0, 3..5 in row 1)
    for (let b = 0; b < 2; b++) {
      for (let t = 0; t < 6; t++) {
        const norm = maxAbs(g.select(0, b).select(0, t));
        if (t >= 3) assert.ok(norm > 0, `position ${t} of sequence ${b} is a latent query and gets a gradient`);
        else assert.equal(norm, 0, `position ${t} of sequence ${b} is not gathered`);
      }
    }
    // Through the causal mixing the caption tokens' embeddings learn too, and so do the latent queries'.
    const eg = lm.embed_tokens.weight.grad!;
    for (const tok of [3, 4, 5, 6, 7, ...L]) assert.ok(maxAbs(eg.select(0, tok)) > 0, `embedding row ${tok} has a gradient`);
    assert.equal(maxAbs(eg.select(0, 12)), 0, "an unused token's row has none");
  });
});

test("resizeTokenEmbeddings (mean): old rows kept, new rows at the mean with a tiny spread, tie kept", () => {
  const gen = new torch.Generator(3);
  const lm = new TinyLM(20, 16, gen);
  const before = lm.embed_tokens.weight.clone();
  const oldParam = lm.embed_tokens.weight;
  oldParam.requiresGrad_(false);
  resizeTokenEmbeddings(lm.embed_tokens, 23, { lmHead: lm.lm_head, generator: gen });
  const w = lm.embed_tokens.weight;
  assert.deepEqual(w.shape, [23, 16]);
  assert.equal(lm.embed_tokens.numEmbeddings, 23);
  assert.equal(lm.lm_head.weight, w, "the output head still shares the embedding's Parameter");
  assert.equal(lm.lm_head.outFeatures, 23);
  assert.equal(w.requiresGrad, false, "requiresGrad carried over");
  assert.equal(oldParam.disposed, true, "the old weight is freed");
  torch.scope(() => {
    assert.equal(maxAbs(w.narrow(0, 0, 20).sub(before)), 0, "old rows unchanged");
    const mean = before.mean(0);
    const fresh = w.narrow(0, 20, 3);
    const dev = maxAbs(fresh.sub(mean));
    // transformers: N(μ, 1e-9·Σ), i.e. about 3e-5 of the embeddings' spread (≈1 here).
    assert.ok(dev > 0 && dev < 1e-3, `new rows within ${dev} of the mean`);
    assert.ok(maxAbs(fresh.select(0, 0).sub(fresh.select(0, 1))) > 0, "new rows are samples, not copies");
    assert.deepEqual(lm.embed_tokens.forward(torch.tensor([22], { dtype: "int64" })).shape, [1, 16]);
    assert.deepEqual(F.linear(lm.hidden(torch.tensor([[21, 22]], { dtype: "int64" })), lm.lm_head.weight).shape, [1, 2, 23]);
  });
});

test("resizeTokenEmbeddings: untied head with bias, normal init, shrinking, padding row", () => {
  const gen = new torch.Generator(11);
  const emb = new nn.Embedding(10, 8, { generator: gen, paddingIdx: 9 });
  const head = new nn.Linear(8, 10, { generator: gen });
  const oldHead = head.weight.clone(), oldBias = head.bias!.clone();
  resizeTokenEmbeddings(emb, 12, { lmHead: head, generator: gen });
  assert.notEqual(head.weight, emb.weight);
  assert.deepEqual(head.weight.shape, [12, 8]);
  assert.deepEqual(head.bias!.shape, [12]);
  torch.scope(() => {
    assert.equal(maxAbs(head.weight.narrow(0, 0, 10).sub(oldHead)), 0);
    assert.ok(maxAbs(head.weight.narrow(0, 10, 2).sub(oldHead.mean(0))) < 1e-3, "head rows at the head's own mean");
    assert.ok(Math.abs(head.bias!.narrow(0, 10, 2).mean().item() - oldBias.mean().item()) < 1e-6, "bias at the old bias mean");
  });

  const big = new nn.Embedding(50, 64, { generator: gen });
  torch.scope(() => resizeTokenEmbeddings(big, 250, { init: "normal", std: 0.02, generator: gen }));
  assert.equal(big.weight.disposed, false, "a resize inside torch.scope leaves the new weight to the module");
  torch.scope(() => {
    const s = big.weight.narrow(0, 50, 200).std().item(); // 12,800 seeded draws
    assert.ok(Math.abs(s - 0.02) < 0.002, `std ${s} ≈ 0.02`);
  });

  resizeTokenEmbeddings(emb, 9, { lmHead: head });
  assert.deepEqual(emb.weight.shape, [9, 8]);
  assert.equal(emb.paddingIdx, -1, "the padding row 9 no longer exists");
  assert.deepEqual(head.bias!.shape, [9]);
  assert.throws(() => resizeTokenEmbeddings(emb, 12, { lmHead: new nn.Linear(8, 5) }), /does not match the embedding \[9, 8\]/);
});

test("identity head: the hidden state itself when widths match, a linear projection when they differ", () => {
  const gen = new torch.Generator(2);
  const same = new LatentHead({ type: "identity", inputSize: 8, latentSize: 8 }, { generator: gen });
  const wider = new LatentHead({ type: "identity", inputSize: 8, latentSize: 4 }, { generator: gen });
  assert.deepEqual(names(same), [], "no weights at all");
  assert.deepEqual(names(wider), ["proj.bias", "proj.weight"]);
  torch.scope(() => {
    const h = torch.randn([2, 1, 8], { generator: gen });
    assert.equal(maxAbs(same.forward(h).sub(h)), 0);
    assert.ok(maxAbs(wider.forward(h).sub(h.matmul(wider.proj!.weight.t()).add(wider.proj!.bias!))) < 1e-6);
  });
  assert.deepEqual(latentHeadFromHfConfig(latentHeadToHfConfig(same.config)), same.config);
  assert.throws(() => resolveLatentHead({ type: "conv" as never, inputSize: 8, latentSize: 4 }), /type must be one of linear, mlp, identity/);
});

test("gatherLastPosition reads each sequence's last real token under left and right padding", () => {
  const hidden = markedHidden(2, 4);
  const mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]], { dtype: "int64" }); // left-padded, right-padded
  const h = gatherLastPosition(hidden, mask);
  assert.deepEqual(h.shape, [2, 1, 2]);
  assert.deepEqual(Array.from(h.toFloat64Values()), [3, -3, 101, -101]);
  assert.throws(() => gatherLastPosition(hidden, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]], { dtype: "int64" })), /sequence 0 has no token/);
  // Differentiable: the gradient lands on the gathered positions only.
  const x = markedHidden(1, 3).requiresGrad_();
  gatherLastPosition(x, torch.tensor([[1, 1, 1]], { dtype: "int64" })).sum().backward();
  assert.deepEqual(Array.from(x.grad!.toFloat64Values()), [0, 0, 0, 0, 1, 1]);
});

test("gatherImagePositions reads the image tokens in order; sequences must hold the same image", () => {
  const IMG = 7;
  const hidden = markedHidden(2, 5);
  const ids = torch.tensor([[1, IMG, IMG, 2, 3], [IMG, IMG, 4, 5, 0]], { dtype: "int64" });
  const v = gatherImagePositions(hidden, ids, IMG);
  assert.deepEqual(v.shape, [2, 2, 2]);
  assert.deepEqual(Array.from(v.toFloat64Values()), [1, -1, 2, -2, 100, -100, 101, -101]);
  assert.throws(() => gatherImagePositions(hidden, torch.tensor([[1, IMG, 2, 3, 4], [IMG, IMG, 4, 5, 0]], { dtype: "int64" }), IMG), /sequence 1 holds 2 image tokens/);
  assert.throws(() => gatherImagePositions(hidden, torch.tensor([[1, 2, 2, 3, 4], [1, 1, 4, 5, 0]], { dtype: "int64" }), IMG), /sequence 0 holds 0 image tokens/);
});
