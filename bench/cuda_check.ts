// bench:cuda-check — the CUDA path against the CPU, on a machine with a GPU (bench/gpu.sh runs it):
// a small Qwen2 with the same weights and batch on both devices in fp32 — logits, loss, every
// parameter's gradient after backward, one AdamW step, and 16 greedily generated tokens with the KV
// cache — then under bf16 autocast (an fp32 matmul gives bf16; the model's loss stays near fp32's).
// Prints each difference and `cuda check: ok` last, or exits 1 naming the first that is off.
//
//   node bench/dist/cuda_check.js [--device cuda]
import { parseArgs } from "node:util";
import { torch, F, optim, type Tensor, type Device } from "@mindseye/torch";
import { Qwen2ForCausalLM, resolveQwen2 } from "mindseye/dist/models/qwen2.js";
import { generate } from "mindseye/dist/models/generation.js";

const DEVICE = parseArgs({ options: { device: { type: "string", default: "cuda" } } }).values.device as Device;
if (DEVICE.startsWith("cuda") && !torch.cudaIsAvailable()) throw new Error(`no CUDA device visible to this build of the addon (libtorch ${torch.buildInfo().torchVersion})`);
console.log(`libtorch ${torch.buildInfo().torchVersion}, ${torch.buildInfo().cudaDeviceCount} CUDA device(s); checking ${DEVICE} against the CPU`);

const config = resolveQwen2({
  vocabSize: 512, hiddenSize: 128, intermediateSize: 352, numHiddenLayers: 3, numAttentionHeads: 4, numKeyValueHeads: 2,
  tieWordEmbeddings: true, maxPositionEmbeddings: 256,
});
const B = 4, T = 48, V = config.vocabSize;
const g = new torch.Generator(3);
const tokens = torch.randint(0, V, [B, T], { generator: g });
const targets = torch.randint(0, V, [B, T], { generator: g });

let failed = false;
const check = (what: string, diff: number, tolerance: number) => {
  const ok = diff <= tolerance;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}: ${diff.toExponential(2)} (tolerance ${tolerance.toExponential(0)})`);
  if (!ok) failed = true;
};
const maxDiff = (a: Tensor, b: Tensor) => a.to({ device: "cpu", dtype: "float32" }).sub(b.to({ device: "cpu", dtype: "float32" })).abs().max().item();

// The same weights on both devices: one model made on the CPU, a copy moved to the GPU.
const cpu = new Qwen2ForCausalLM(config, { generator: new torch.Generator(0) }).train();
const gpu = new Qwen2ForCausalLM(config, { generator: new torch.Generator(0) }).train().to({ device: DEVICE });
check("weights after the move", Math.max(...cpu.parameters().map((p, i) => maxDiff(p, gpu.parameters()[i]!))), 0);

const step = (model: Qwen2ForCausalLM, device: Device) => {
  const x = tokens.to({ device }), y = targets.to({ device });
  const logits = model.forward({ inputIds: x }).logits; // [B, T, V]
  const loss = F.crossEntropy(logits.view(-1, V), y.view(-1));
  loss.backward();
  return { logits, loss };
};
const a = step(cpu, "cpu"), b = step(gpu, DEVICE);
check("logits (fp32)", maxDiff(a.logits, b.logits), 1e-4);
check("loss (fp32)", Math.abs(a.loss.item() - b.loss.item()), 1e-5);
check("gradients, largest difference over all parameters", Math.max(...cpu.parameters().map((p, i) => maxDiff(p.grad!, gpu.parameters()[i]!.grad!))), 1e-4);

// One AdamW step from the same gradients (the GPU's, copied to the CPU model): Adam's first step
// is about lr·g/(|g| + eps) per weight, which would turn gradient differences near eps into
// differences near lr, so the step itself is compared on equal inputs.
torch.noGrad(() => cpu.parameters().forEach((p, i) => p.grad!.copy_(gpu.parameters()[i]!.grad!.to({ device: "cpu" }))));
for (const [model] of [[cpu], [gpu]] as const) new optim.AdamW(model.parameters(), { lr: 1e-3 }).step();
check("weights after one AdamW step from the same gradients", Math.max(...cpu.parameters().map((p, i) => maxDiff(p, gpu.parameters()[i]!))), 1e-6);

const greedy = (model: Qwen2ForCausalLM, device: Device) =>
  generate(model.eval(), { inputIds: tokens.narrow(1, 0, 8).to({ device }), maxNewTokens: 16 }).tokens;
const [onCpu, onGpu] = [greedy(cpu, "cpu"), greedy(gpu, DEVICE)];
check("greedy tokens that differ (of 64)", onCpu.flat().filter((t, i) => t !== onGpu.flat()[i]).length, 0);

const mixed = torch.noGrad(() => torch.autocast(() => {
  const w = gpu.parameters()[0]!; // [V, D] fp32
  const logits = gpu.forward({ inputIds: tokens.to({ device: DEVICE }) }).logits;
  return { dtype: torch.matmul(w, w.t()).dtype, loss: F.crossEntropy(logits.float().view(-1, V), targets.to({ device: DEVICE }).view(-1)).item() };
}));
const fp32Loss = torch.noGrad(() => F.crossEntropy(gpu.forward({ inputIds: tokens.to({ device: DEVICE }) }).logits.view(-1, V), targets.to({ device: DEVICE }).view(-1)).item());
console.log(`bf16 autocast: an fp32 matmul gives ${mixed.dtype}, the loss is ${mixed.loss.toFixed(5)} against fp32's ${fp32Loss.toFixed(5)}`);
check("matmul under autocast not in bfloat16 (0 = it is)", mixed.dtype === "bfloat16" ? 0 : 1, 0);
check("loss under bf16 autocast against fp32", Math.abs(mixed.loss - fp32Loss), 2e-2);

if (failed) {
  console.error("cuda check: FAILED");
  process.exit(1);
}
console.log("cuda check: ok");
