// The standard layers, initialised as PyTorch initialises them.
import { Tensor } from "../tensor.js";
import * as F from "../functional.js";
import { empty, ones, zeros } from "../creation.js";
import type { DType, Device } from "../dtype.js";
import type { Generator } from "../random.js";
import { Module, Parameter } from "./module.js";
import * as init from "./init.js";

export interface FactoryOptions {
  dtype?: DType;
  device?: Device;
  /** Seeded generator for the initial weights (the global one if absent). */
  generator?: Generator;
}
const factory = (o: FactoryOptions) => ({ dtype: o.dtype ?? "float32", device: o.device ?? "cpu" });
/** A Parameter taking over a freshly made tensor (the temporary wrapper is freed at once). */
function own(t: Tensor): Parameter {
  const p = new Parameter(t);
  t.dispose();
  return p;
}

/** y = x Wᵀ + b; weight [out, in] and bias [out] ~ U(-1/√in, 1/√in), as torch.nn.Linear. */
export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | null;
  constructor(public inFeatures: number, public outFeatures: number, o: FactoryOptions & { bias?: boolean } = {}) {
    super();
    this.weight = own(empty([outFeatures, inFeatures], factory(o)));
    init.kaimingUniform_(this.weight, { a: Math.sqrt(5), generator: o.generator });
    this.bias = null;
    if (o.bias ?? true) {
      this.bias = own(empty([outFeatures], factory(o)));
      const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
      init.uniform_(this.bias, -bound, bound, o.generator);
    }
  }
  /** x [.., in] -> [.., out] */
  forward(x: Tensor): Tensor { return F.linear(x, this.weight, this.bias); }
}

/** A lookup table, weight [num, dim] ~ N(0, 1), as torch.nn.Embedding. */
export class Embedding extends Module {
  weight: Parameter;
  paddingIdx: number;
  constructor(public numEmbeddings: number, public embeddingDim: number, o: FactoryOptions & { paddingIdx?: number } = {}) {
    super();
    // As torch: a negative paddingIdx counts from the end; none means no padding row (-1 natively).
    const pad = o.paddingIdx;
    if (pad !== undefined && (!Number.isInteger(pad) || pad >= numEmbeddings || pad < -numEmbeddings)) {
      throw new RangeError(`Embedding: paddingIdx ${pad} is outside the ${numEmbeddings} embeddings`);
    }
    this.weight = own(empty([numEmbeddings, embeddingDim], factory(o)));
    init.normal_(this.weight, 0, 1, o.generator);
    this.paddingIdx = pad === undefined ? -1 : pad < 0 ? numEmbeddings + pad : pad;
    if (this.paddingIdx >= 0) {
      const row = this.weight.select(0, this.paddingIdx);
      init.zeros_(row);
      row.dispose();
    }
  }
  /** int64 indices [..] -> [.., dim] */
  forward(indices: Tensor): Tensor { return F.embedding(indices, this.weight, this.paddingIdx); }
}

export class LayerNorm extends Module {
  weight: Parameter | null;
  bias: Parameter | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly eps = 1e-5, o: FactoryOptions & { elementwiseAffine?: boolean; bias?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape;
    const affine = o.elementwiseAffine ?? true;
    this.weight = affine ? own(ones(this.normalizedShape, factory(o))) : null;
    this.bias = affine && (o.bias ?? true) ? own(zeros(this.normalizedShape, factory(o))) : null;
  }
  forward(x: Tensor): Tensor { return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps); }
}

/** RMSNorm over the last dim with a learned scale (Qwen2RMSNorm: float32 inside, weight after cast). */
export class RMSNorm extends Module {
  weight: Parameter;
  constructor(readonly dim: number, readonly eps = 1e-6, o: FactoryOptions = {}) {
    super();
    this.weight = own(ones([dim], factory(o)));
  }
  forward(x: Tensor): Tensor { return F.rmsNorm(x, this.weight, this.eps); }
}

export interface ConvOptions extends FactoryOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
  bias?: boolean;
}

abstract class ConvNd extends Module {
  weight: Parameter;
  bias: Parameter | null;
  protected readonly opts: F.ConvOptions;
  constructor(inChannels: number, outChannels: number, kernel: number[], o: ConvOptions) {
    super();
    const groups = o.groups ?? 1;
    if (inChannels % groups || outChannels % groups) throw new RangeError(`conv: channels ${inChannels}→${outChannels} not divisible by groups ${groups}`);
    this.weight = own(empty([outChannels, inChannels / groups, ...kernel], factory(o)));
    init.kaimingUniform_(this.weight, { a: Math.sqrt(5), generator: o.generator });
    this.bias = null;
    if (o.bias ?? true) {
      const fanIn = (inChannels / groups) * kernel.reduce((a, b) => a * b, 1);
      this.bias = own(empty([outChannels], factory(o)));
      init.uniform_(this.bias, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn), o.generator);
    }
    this.opts = { stride: o.stride ?? 1, padding: o.padding ?? 0, dilation: o.dilation ?? 1, groups };
  }
}

/** x [N, Cin, H, W] -> [N, Cout, H', W'] */
export class Conv2d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: number | [number, number], o: ConvOptions = {}) {
    super(inChannels, outChannels, typeof kernelSize === "number" ? [kernelSize, kernelSize] : kernelSize, o);
  }
  forward(x: Tensor): Tensor { return F.conv2d(x, this.weight, this.bias, this.opts); }
}

/** x [N, Cin, T, H, W] -> [N, Cout, T', H', W'] */
export class Conv3d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: number | [number, number, number], o: ConvOptions = {}) {
    super(inChannels, outChannels, typeof kernelSize === "number" ? [kernelSize, kernelSize, kernelSize] : kernelSize, o);
  }
  forward(x: Tensor): Tensor { return F.conv3d(x, this.weight, this.bias, this.opts); }
}

/** Dropout active only in training mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor { return F.dropout(x, this.p, this.training); }
}
