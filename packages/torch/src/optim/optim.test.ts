// AdamW and SGD against PyTorch, parameter groups, frozen parameters, the "every trainable
// parameter changed, every frozen one did not" step test, optimizer checkpoints through
// safetensors, and gradient clipping.
// Optimizer slots and module parameters outlive torch.scope, so each test disposes them when it
// ends, and the last test checks that nothing leaked.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, nn, optim, io, F, type Tensor } from "../index.js";

const liveAtStart = torch.memory().tensors;
const cleanups: (() => void)[] = [];
/** Frees an optimizer's slots when the current test ends. */
function ownOpt<O extends optim.Optimizer<{ lr: number }>>(opt: O): O {
  cleanups.push(() => { for (const t of opt.stateDict().tensors.values()) t.dispose(); });
  return opt;
}
/** Frees a module's parameters when the current test ends. */
function own<M extends nn.Module>(m: M): M {
  cleanups.push(() => { for (const p of m.parameters()) p.dispose(); });
  return m;
}
const test = (name: string, body: () => void): void => {
  it(name, () => {
    try { torch.scope(body); } finally { for (const c of cleanups.splice(0).reverse()) c(); }
  });
};

const dir = mkdtempSync(join(tmpdir(), "mindseye-optim-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const values = (t: Tensor): number[] => Array.from(t.toFloat64Values());

/** |got - expected| ≤ rel·|expected| for every element. */
function closeRel(got: number[], expected: number[], rel: number, what: string): void {
  assert.equal(got.length, expected.length, `${what}: ${got.length} values, expected ${expected.length}`);
  got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= rel * Math.abs(expected[i]!),
    `${what}[${i}]: got ${v}, expected ${expected[i]} (relative tolerance ${rel})\n  got      [${got.join(", ")}]\n  expected [${expected.join(", ")}]`));
}

// ---------------------------------------------------------------------------------------------
// The reference problem: w [2, 3], b [3] in float64, loss = ((X @ w + b)²).sum() for a fixed
// X [4, 2], five steps. Expected values printed by PyTorch 1.13 (the libtorch the addon links):
//
//   /usr/bin/python3 -c "
//   import torch; torch.set_default_dtype(torch.float64)
//   X = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25], [2.0, 0.5]])
//   w = torch.tensor([[0.5, -0.25, 1.0], [-0.75, 0.3, 0.2]], requires_grad=True)
//   b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
//   opt = torch.optim.AdamW([w, b])          # one line per case below
//   for _ in range(5): opt.zero_grad(); ((X @ w + b) ** 2).sum().backward(); opt.step()
//   print([repr(v) for v in w.detach().flatten().tolist()], [repr(v) for v in b.detach().tolist()])"

const X = [[1, -2], [0.5, 1.5], [-1, 0.25], [2, 0.5]];
const W0 = [[0.5, -0.25, 1], [-0.75, 0.3, 0.2]];
const B0 = [0.1, -0.2, 0.3];
const f64 = { dtype: "float64" } as const;

interface Problem { w: Tensor; b: Tensor; x: Tensor }
function problem(): Problem {
  return { w: torch.tensor(W0, { ...f64, requiresGrad: true }), b: torch.tensor(B0, { ...f64, requiresGrad: true }), x: torch.tensor(X, f64) };
}
function lossOf({ w, b, x }: Problem): Tensor { return x.matmul(w).add(b).square().sum(); }

/** Runs `steps` steps of the optimizer `make` builds on a fresh problem; returns w and b flattened. */
function run(make: (p: Problem) => optim.Optimizer<{ lr: number }>, steps = 5): { w: number[]; b: number[] } {
  const p = problem();
  const opt = ownOpt(make(p));
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    torch.scope(() => lossOf(p).backward());
    opt.step();
  }
  return { w: values(p.w), b: values(p.b) };
}

function expectPyTorch(got: { w: number[]; b: number[] }, w: number[], b: number[]): void {
  closeRel(got.w, w, 1e-6, "w");
  closeRel(got.b, b, 1e-6, "b");
}

describe("AdamW against PyTorch 1.13", () => {
  test("defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2)", () => {
    // torch.optim.AdamW([w, b])
    expectPyTorch(run(({ w, b }) => new optim.AdamW([w, b])),
      [0.4949761905475946, -0.2449894649345155, 0.9949506273822023, -0.7449631834732582, 0.2949865799400015, 0.19499332878548964],
      [0.09499700721711962, -0.19499217050088818, 0.2949858935774558]);
  });

  test("lr 0.1, betas (0.8, 0.99), eps 1e-6, weight decay 0.1", () => {
    // torch.optim.AdamW([w, b], lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    expectPyTorch(run(({ w, b }) => new optim.AdamW([w, b], { lr: 0.1, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1 })),
      [0.04382309631708059, 0.0945742938719991, 0.4799652819936516, -0.2448374248793134, -0.09814333261895206, 0.011807205251358692],
      [-0.22214803636336625, 0.1103975401616189, -0.1701871481713224]);
  });

  test("amsgrad (betas (0.9, 0.5), so the second moment falls and the running max matters)", () => {
    // torch.optim.AdamW([w, b], lr=0.1, betas=(0.9, 0.5), weight_decay=0.1, amsgrad=True)
    expectPyTorch(run(({ w, b }) => new optim.AdamW([w, b], { lr: 0.1, betas: [0.9, 0.5], weightDecay: 0.1, amsgrad: true })),
      [0.04569367499135012, 0.09595076092540436, 0.4733219935646383, -0.23983388106540174, -0.09487915787046926, -0.014146568732769173],
      [-0.22516344078186534, 0.11739307511607681, -0.17005833030205358]);
    // the same without amsgrad differs: the test above would catch amsgrad being ignored
    // torch.optim.AdamW([w, b], lr=0.1, betas=(0.9, 0.5), weight_decay=0.1)
    expectPyTorch(run(({ w, b }) => new optim.AdamW([w, b], { lr: 0.1, betas: [0.9, 0.5], weightDecay: 0.1 })),
      [-0.07455839798694089, 0.14927900049344084, 0.42511319317961943, -0.1836315150007232, -0.1814154415443056, -0.008756624540121584],
      [-0.27648029016325076, 0.1539865830152278, -0.2600704245873793]);
  });

  test("two parameter groups: weight decay 0.1 for w; weight decay 0 and lr 0.05 for b", () => {
    // torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "lr": 0.05}], lr=0.1)
    expectPyTorch(run(({ w, b }) => new optim.AdamW([{ params: [w], weightDecay: 0.1 }, { params: [b], weightDecay: 0, lr: 0.05 }], { lr: 0.1 })),
      [0.01918654967973489, 0.14971679918127476, 0.4702838158575281, -0.237671209132616, -0.11441510660158728, -0.019269659451329003],
      [-0.11685431650382824, 0.01323902100670623, 0.056246980507802295]);
  });

  test("groups take the defaults they do not override", () => {
    const { w, b } = problem();
    const opt = new optim.AdamW([{ params: [w], weightDecay: 0.5 }, { params: [b] }], { lr: 0.2, betas: [0.5, 0.6] });
    const [g0, g1] = opt.paramGroups;
    assert.deepEqual([g0!.lr, g0!.weightDecay, g0!.betas, g0!.eps, g0!.amsgrad, g0!.initialLr], [0.2, 0.5, [0.5, 0.6], 1e-8, false, 0.2]);
    assert.deepEqual([g1!.lr, g1!.weightDecay, g1!.betas], [0.2, 0.01, [0.5, 0.6]]);
    assert.equal(g0!.params[0], w);
  });
});

describe("SGD against PyTorch 1.13", () => {
  test("plain", () => {
    // torch.optim.SGD([w, b], lr=0.01)
    expectPyTorch(run(({ w, b }) => new optim.SGD([w, b], { lr: 0.01 })),
      [0.2261159141345813, -0.09079855387207274, 0.4882992826527294, -0.3583311805577467, 0.14493154135636505, 0.12410712565605041],
      [0.0006029270090960609, -0.10050985149478395, 0.035612590414338376]);
  });

  test("momentum 0.9 with dampening 0.5", () => {
    // torch.optim.SGD([w, b], lr=0.01, momentum=0.9, dampening=0.5)
    expectPyTorch(run(({ w, b }) => new optim.SGD([w, b], { lr: 0.01, momentum: 0.9, dampening: 0.5 })),
      [-0.01383649713719418, 0.04997789609139393, 0.04375734182009251, -0.0221652303722248, 0.011670649051887038, 0.06277023761585665],
      [-0.09020603861569129, -0.013851983610123214, -0.20132347494500227]);
  });

  test("Nesterov momentum 0.9", () => {
    // torch.optim.SGD([w, b], lr=0.01, momentum=0.9, nesterov=True)
    expectPyTorch(run(({ w, b }) => new optim.SGD([w, b], { lr: 0.01, momentum: 0.9, nesterov: true })),
      [-0.1430639659660323, 0.11512277880357791, -0.22673636270461456, 0.2167715311708353, -0.08162168319962562, -0.012908993210112338],
      [-0.10838683131457921, 0.036971653041663465, -0.28539272681515954]);
  });

  test("weight decay 0.1, without and with momentum", () => {
    // torch.optim.SGD([w, b], lr=0.01, weight_decay=0.1)
    expectPyTorch(run(({ w, b }) => new optim.SGD([w, b], { lr: 0.01, weightDecay: 0.1 })),
      [0.22479952769450284, -0.09023881675305476, 0.4855032879964189, -0.3562588315864288, 0.14409617103238542, 0.12342459169639279],
      [0.0005395084268543156, -0.09993896434108761, 0.03526413679358533]);
    // torch.optim.SGD([w, b], lr=0.01, momentum=0.9, weight_decay=0.1)
    expectPyTorch(run(({ w, b }) => new optim.SGD([w, b], { lr: 0.01, momentum: 0.9, weightDecay: 0.1 })),
      [-0.16688077943333776, 0.13524661295187657, -0.25313886738771857, 0.21745959293972936, -0.08268454384340723, 0.005208159851267444],
      [-0.13497783560001542, 0.043169255017626765, -0.33406657943086593]);
  });

  test("one plain step by hand: p - lr·g", () => {
    const w = torch.tensor([1, 2], { ...f64, requiresGrad: true });
    w.square().sum().backward(); // g = 2w = [2, 4]
    const opt = ownOpt(new optim.SGD([w], { lr: 0.25 }));
    opt.step();
    assert.deepEqual(values(w), [0.5, 1]);
  });

  test("Nesterov needs momentum > 0 and no dampening", () => {
    const w = torch.zeros([1], { requiresGrad: true });
    assert.throws(() => new optim.SGD([w], { nesterov: true }), /Nesterov momentum requires momentum > 0 and dampening = 0/);
    assert.throws(() => new optim.SGD([w], { nesterov: true, momentum: 0.9, dampening: 0.1 }), /Nesterov/);
  });
});

describe("frozen parameters and parameters without a gradient", () => {
  test("an optimizer refuses a parameter that does not require grad, naming its group", () => {
    const a = torch.zeros([2], { requiresGrad: true }), frozen = torch.zeros([2]);
    assert.throws(() => new optim.AdamW([a, frozen]), /group 0 holds a parameter that does not require grad/);
    assert.throws(() => new optim.SGD([{ params: [a] }, { params: [frozen] }]), /group 1 holds a parameter that does not require grad/);
  });

  test("a parameter in two groups is refused", () => {
    const a = torch.zeros([2], { requiresGrad: true });
    assert.throws(() => new optim.AdamW([{ params: [a] }, { params: [a] }]), /appears in more than one group/);
  });

  test("a parameter without .grad is skipped: no update (not even weight decay), no state", () => {
    for (const make of [
      (ps: Tensor[]) => new optim.AdamW(ps, { lr: 0.1, weightDecay: 0.5 }),
      (ps: Tensor[]) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.5 }),
    ]) {
      const used = torch.tensor([1, 2], { requiresGrad: true }), unused = torch.tensor([3, 4], { requiresGrad: true });
      const opt = ownOpt(make([used, unused]));
      used.square().sum().backward();
      opt.step();
      assert.notDeepEqual(values(used), [1, 2]);
      assert.deepEqual(values(unused), [3, 4]);
      const state = opt.stateDict();
      assert.deepEqual(state.meta.steps, { 0: 1 });
      assert.ok([...state.tensors.keys()].every((k) => k.startsWith("state.0.")), [...state.tensors.keys()].join(", "));
    }
  });

  class Net extends nn.Module {
    embed = new nn.Embedding(10, 4);
    fc = new nn.Linear(4, 4);
    norm = new nn.LayerNorm(4);
    head = new nn.Linear(4, 3);
    forward(ids: Tensor): Tensor { return this.head.forward(this.norm.forward(this.fc.forward(this.embed.forward(ids)).relu())); }
  }

  for (const [name, make] of [
    ["AdamW", (ps: Tensor[]) => new optim.AdamW(ps, { lr: 1e-2 })],
    ["SGD", (ps: Tensor[]) => new optim.SGD(ps, { lr: 1e-1, momentum: 0.9 })],
  ] as const) {
    test(`${name}: every trainable parameter changed after one step, every frozen one did not`, () => {
      torch.manualSeed(0);
      const net = own(new Net());
      net.embed.requiresGrad_(false);
      net.norm.requiresGrad_(false);
      const trainable = net.namedParameters().filter(([, p]) => p.requiresGrad);
      const frozen = net.namedParameters().filter(([, p]) => !p.requiresGrad);
      assert.deepEqual(frozen.map(([n]) => n), ["embed.weight", "norm.weight", "norm.bias"]);
      const before = new Map(net.namedParameters().map(([n, p]) => [n, values(p)]));
      const opt = ownOpt(make(trainable.map(([, p]) => p)));
      const ids = torch.tensor([[1, 2, 3], [4, 5, 6]], { dtype: "int64" });
      F.crossEntropy(net.forward(ids).reshape(6, 3), torch.tensor([0, 1, 2, 0, 1, 2], { dtype: "int64" })).backward();
      for (const [n, p] of frozen) assert.equal(p.grad, null, `${n} is frozen and gets no gradient`);
      opt.step();
      for (const [n, p] of trainable) assert.notDeepEqual(values(p), before.get(n), `${n} should have changed`);
      for (const [n, p] of frozen) assert.deepEqual(values(p), before.get(n), `${n} should not have changed`);
    });
  }

  test("zeroGrad sets every grad in every group to none", () => {
    const a = torch.ones([2], { requiresGrad: true }), b = torch.ones([2], { requiresGrad: true });
    const opt = ownOpt(new optim.SGD([{ params: [a] }, { params: [b] }]));
    a.mul(b).sum().backward();
    assert.ok(a.grad !== null && b.grad !== null);
    opt.zeroGrad();
    assert.equal(a.grad, null);
    assert.equal(b.grad, null);
  });
});

describe("optimizer state dict", () => {
  class Net extends nn.Module {
    fc1 = new nn.Linear(3, 4);
    fc2 = new nn.Linear(4, 2);
    forward(x: Tensor): Tensor { return this.fc2.forward(this.fc1.forward(x).tanh()); }
  }
  const data = () => {
    const g = new torch.Generator(42);
    return { x: torch.randn([8, 3], { generator: g }), y: torch.randn([8, 2], { generator: g }) };
  };
  /** Weights in one group (decay), biases in another (no decay), as a training recipe does. */
  const groupsOf = (net: Net) => [
    { params: [net.fc1.weight, net.fc2.weight], weightDecay: 0.1 },
    { params: [net.fc1.bias!, net.fc2.bias!], weightDecay: 0 },
  ];
  function train(net: Net, opt: optim.Optimizer<{ lr: number }>, steps: number): void {
    const { x, y } = data();
    for (let i = 0; i < steps; i++) {
      opt.zeroGrad();
      torch.scope(() => F.mseLoss(net.forward(x), y).backward());
      opt.step();
    }
  }
  /** Saves model and optimizer, as a checkpoint does: two safetensors files, the optimizer's meta as JSON. */
  function save(tag: string, net: Net, opt: optim.Optimizer<{ lr: number }>): void {
    io.saveFile(join(dir, `${tag}-model.safetensors`), net.stateDict());
    const state = opt.stateDict();
    io.saveFile(join(dir, `${tag}-optimizer.safetensors`), state.tensors, { optimizer: JSON.stringify(state.meta) });
  }
  function load(tag: string, net: Net, opt: optim.Optimizer<{ lr: number }>): void {
    net.loadStateDict(io.loadFile(join(dir, `${tag}-model.safetensors`)));
    const path = join(dir, `${tag}-optimizer.safetensors`);
    opt.loadStateDict({ tensors: io.loadFile(path), meta: JSON.parse(io.loadMetadata(path)!.optimizer!) as optim.OptimizerState["meta"] });
  }

  for (const [name, make] of [
    ["AdamW (amsgrad, two groups)", (net: Net) => new optim.AdamW(groupsOf(net), { lr: 1e-2, amsgrad: true })],
    ["SGD (Nesterov, two groups)", (net: Net) => new optim.SGD(groupsOf(net), { lr: 1e-1, momentum: 0.9, nesterov: true })],
  ] as const) {
    test(`${name}: 3 steps, save, load into a fresh model and optimizer, 3 more = 6 uninterrupted steps, bitwise`, () => {
      torch.manualSeed(1);
      const straight = own(new Net());
      const init = new Map([...straight.stateDict()].map(([k, t]) => [k, t.clone()]));
      train(straight, ownOpt(make(straight)), 6);

      const first = own(new Net());
      first.loadStateDict(init);
      const opt1 = ownOpt(make(first));
      train(first, opt1, 3);
      save(name.split(" ")[0]!, first, opt1);

      torch.manualSeed(99);
      const resumed = own(new Net());
      const opt2 = ownOpt(make(resumed));
      load(name.split(" ")[0]!, resumed, opt2);
      assert.deepEqual(opt2.stateDict().meta, opt1.stateDict().meta, "groups and step counts restored");
      train(resumed, opt2, 3);

      for (const [k, t] of straight.stateDict()) {
        assert.deepEqual(resumed.stateDict().get(k)!.toBytes(), t.toBytes(), `${k} differs from the uninterrupted run`);
      }
      assert.notDeepEqual(values(straight.fc1.weight), values(init.get("fc1.weight")!), "training moved the weights");
    });
  }

  test("stateDict names tensors state.<param index>.<slot> and groups by index; hyperparameters are restored", () => {
    torch.manualSeed(2);
    const net = own(new Net());
    const opt = ownOpt(new optim.AdamW(groupsOf(net), { lr: 1e-2 }));
    train(net, opt, 2);
    opt.paramGroups[0]!.lr = 0.003;
    const state = opt.stateDict();
    assert.deepEqual([...state.tensors.keys()].sort(), [0, 1, 2, 3].flatMap((i) => [`state.${i}.exp_avg`, `state.${i}.exp_avg_sq`]).sort());
    assert.deepEqual(state.tensors.get("state.1.exp_avg")!.shape, [2, 4], "index 1 is fc2.weight (group 0, second)");
    assert.deepEqual(state.meta.steps, { 0: 2, 1: 2, 2: 2, 3: 2 });
    assert.deepEqual(state.meta.groups.map((g) => g.params), [[0, 1], [2, 3]]);
    assert.deepEqual(state.meta.groups.map((g) => [g.lr, g.initialLr, g.weightDecay]), [[0.003, 1e-2, 0.1], [1e-2, 1e-2, 0]]);

    const fresh = ownOpt(new optim.AdamW(groupsOf(net), { lr: 1 }));
    fresh.loadStateDict({ tensors: state.tensors, meta: JSON.parse(JSON.stringify(state.meta)) as optim.OptimizerState["meta"] });
    assert.deepEqual(fresh.paramGroups.map((g) => [g.lr, g.initialLr, g.weightDecay]), [[0.003, 1e-2, 0.1], [1e-2, 1e-2, 0]]);
    assert.equal(fresh.paramGroups[0]!.params[0], net.fc1.weight, "the optimizer keeps its own parameters");
    // the slots are copies: stepping one optimizer leaves the other's state alone
    const mine = values(state.tensors.get("state.0.exp_avg")!);
    train(net, fresh, 1);
    assert.deepEqual(values(opt.stateDict().tensors.get("state.0.exp_avg")!), mine);
  });

  test("loading replaces all state: a stepped optimizer loaded with a fresh one's state steps as a fresh one", () => {
    torch.manualSeed(3);
    const netA = own(new Net());
    const init = new Map([...netA.stateDict()].map(([k, t]) => [k, t.clone()]));
    const netB = own(new Net());
    netB.loadStateDict(init);
    for (const make of [
      (net: Net) => new optim.AdamW(groupsOf(net), { lr: 1e-2 }),
      (net: Net) => new optim.SGD(groupsOf(net), { lr: 1e-1, momentum: 0.9 }),
    ]) {
      netA.loadStateDict(init);
      netB.loadStateDict(init);
      const optA = ownOpt(make(netA));
      train(netA, optA, 1);
      const optB = ownOpt(make(netB));
      const freshState = optB.stateDict();
      train(netB, optB, 3);
      netB.loadStateDict(init);
      optB.loadStateDict(freshState);
      assert.deepEqual(optB.stateDict().meta.steps, {});
      assert.equal(optB.stateDict().tensors.size, 0, "slots from before the load are gone");
      train(netB, optB, 1);
      for (const [k, t] of netA.stateDict()) assert.deepEqual(values(netB.stateDict().get(k)!), values(t), k);
    }
  });

  test("an optimizer may load its own state dict (the slot tensors are its own)", () => {
    torch.manualSeed(4);
    const net = own(new Net());
    const opt = ownOpt(new optim.AdamW(groupsOf(net), { lr: 1e-2 }));
    train(net, opt, 2);
    const before = [...opt.stateDict().tensors].map(([k, t]) => [k, values(t)]);
    opt.loadStateDict(opt.stateDict());
    assert.deepEqual([...opt.stateDict().tensors].map(([k, t]) => [k, values(t)]), before);
  });

  test("mismatched checkpoints raise clear errors and change nothing", () => {
    torch.manualSeed(5);
    const net = own(new Net());
    const opt = ownOpt(new optim.AdamW(groupsOf(net), { lr: 1e-2 }));
    train(net, opt, 1);
    const state = opt.stateDict();

    const one = ownOpt(new optim.AdamW(net.parameters(), { lr: 1e-2 }));
    assert.throws(() => one.loadStateDict(state), /checkpoint has 2 parameter groups, this optimizer has 1/);

    // group 0 fits, group 1 does not: nothing may be half-loaded
    const short = ownOpt(new optim.AdamW([
      { params: [net.fc1.weight, net.fc2.weight], lr: 0.5 },
      { params: [net.fc1.bias!] },
    ], { lr: 0.25 }));
    assert.throws(() => short.loadStateDict(state), /group 1 has 2 parameters in the checkpoint, 1 here/);
    assert.deepEqual(short.paramGroups.map((g) => g.lr), [0.5, 0.25], "a failed load leaves the hyperparameters alone");

    // same group sizes, other shapes: fc1 with 5 outputs
    class Wider extends nn.Module { fc1 = new nn.Linear(3, 5); fc2 = new nn.Linear(5, 2); }
    const wide = own(new Wider());
    const wopt = ownOpt(new optim.AdamW([
      { params: [wide.fc1.weight, wide.fc2.weight], weightDecay: 0.1 },
      { params: [wide.fc1.bias!, wide.fc2.bias!], weightDecay: 0 },
    ], { lr: 0.7 }));
    assert.throws(() => wopt.loadStateDict(state), /'state\.0\.exp_avg(_sq)?' has shape \[4,3\] but parameter 0 has shape \[5,3\]/);
    assert.deepEqual(wopt.paramGroups.map((g) => g.lr), [0.7, 0.7], "a failed load leaves the hyperparameters alone");
    assert.deepEqual(wopt.stateDict().meta.steps, {}, "and the step counts");

    assert.throws(() => opt.loadStateDict({ tensors: new Map([["state.9.exp_avg", torch.zeros([1])]]), meta: state.meta }),
      /unexpected tensor 'state\.9\.exp_avg'/);
    assert.throws(() => opt.loadStateDict({ tensors: new Map([["exp_avg", torch.zeros([1])]]), meta: state.meta }), /unexpected tensor 'exp_avg'/);
    assert.throws(() => opt.loadStateDict({ tensors: new Map(), meta: { ...state.meta, steps: { 9: 1 } } }),
      /step count for parameter 9, but this optimizer has 4 parameters/);
  });
});

describe("clipGradNorm", () => {
  const withGrad = (grad: number[]): Tensor => {
    const p = torch.zeros([grad.length], { requiresGrad: true });
    p.grad = torch.tensor(grad);
    return p;
  };

  test("returns the total norm before clipping: grads [3, 4] → 5, or [3] and [4] → 5", () => {
    assert.equal(optim.clipGradNorm([withGrad([3, 4])], 100), 5);
    const a = withGrad([3]), b = withGrad([4]);
    assert.equal(optim.clipGradNorm([a, b], 100), 5);
    assert.deepEqual(values(a.grad!), [3], "below maxNorm nothing is scaled");
    assert.deepEqual(values(b.grad!), [4]);
  });

  test("scales all gradients together so their norm is maxNorm", () => {
    const a = withGrad([3, 0]), b = withGrad([4]);
    const total = optim.clipGradNorm([a, b], 1);
    assert.equal(total, 5);
    closeRel(values(a.grad!), [0.6, 0], 1e-5, "a.grad");
    closeRel(values(b.grad!), [0.8], 1e-5, "b.grad");
    closeRel([optim.clipGradNorm([a, b], 100)], [1], 1e-5, "norm after clipping");
  });

  test("infinity norm: the largest absolute gradient", () => {
    const a = withGrad([3, -4]), b = withGrad([2]);
    assert.equal(optim.clipGradNorm([a, b], 2, { normType: Infinity }), 4);
    closeRel(values(a.grad!), [1.5, -2], 1e-5, "a.grad");
    closeRel(values(b.grad!), [1], 1e-5, "b.grad");
  });

  test("norm type 1: the sum of absolute values", () => {
    assert.equal(optim.clipGradNorm([withGrad([3, -4]), withGrad([2])], 100, { normType: 1 }), 9);
  });

  test("parameters without a gradient are ignored; none at all gives 0", () => {
    const none = torch.zeros([2], { requiresGrad: true });
    assert.equal(optim.clipGradNorm([none, withGrad([3, 4])], 100), 5);
    assert.equal(optim.clipGradNorm([none], 1), 0);
  });

  test("a NaN gradient: errorIfNonfinite throws; without it the NaN norm is returned", () => {
    const a = withGrad([1, NaN]);
    assert.throws(() => optim.clipGradNorm([a], 1, { errorIfNonfinite: true }), /non-finite \(NaN\)/);
    assert.ok(Number.isNaN(optim.clipGradNorm([a], 1)));
    assert.ok(values(a.grad!).every(Number.isNaN), "as PyTorch, a NaN norm makes every gradient NaN");
    const b = withGrad([1, Infinity]);
    assert.throws(() => optim.clipGradNorm([b], 1, { errorIfNonfinite: true }), /non-finite \(Infinity\)/);
  });
});

describe("leaks", () => {
  it("every test above freed its tensors", () => {
    assert.equal(torch.memory().tensors, liveAtStart);
  });
});
