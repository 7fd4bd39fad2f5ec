/**
 * torch.optim.SGD on the flat buffer (DESIGN invariant 5), fused with the division of the reduced
 * gradient sum by the loss denominator (DESIGN invariant 1). For each element, float32 arithmetic
 * (every operation rounded), in PyTorch's order:
 *
 *   g = gsum / denom
 *   if weight_decay != 0:  g = g + weight_decay * p
 *   if momentum != 0:
 *     buf = first step ? g : momentum * buf + (1 - dampening) * g
 *     g   = nesterov ? g + momentum * buf : buf
 *   p = p - lr * g
 *
 * The momentum buffer does not exist before the first step (PyTorch sets buf = g then, ignoring
 * dampening): `state.momentumBuffer` is null until then, and a checkpoint keeps that distinction.
 */
export interface SgdOptions {
  readonly lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
}

export interface SgdState {
  momentumBuffer: Float32Array | null;
}

export function validateSgd(o: SgdOptions): void {
  const finite = (v: number, name: string): void => {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`--${name} must be a finite number >= 0, got ${v}`);
  };
  finite(o.lr, 'lr');
  finite(o.momentum, 'momentum');
  finite(o.dampening, 'dampening');
  finite(o.weightDecay, 'weight-decay');
  // torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening"
  if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new RangeError('--nesterov requires --momentum > 0 and --dampening 0 (as torch.optim.SGD)');
}

/** One SGD step on `params` in place. `gsum` (same layout) is left unchanged. */
export function sgdStep(params: Float32Array, gsum: Float32Array, denom: number, o: SgdOptions, state: SgdState): void {
  const n = params.length;
  if (gsum.length !== n) throw new RangeError(`sgdStep: gradient has ${gsum.length} floats, parameters ${n}`);
  const f = Math.fround;
  const lr = f(o.lr);
  const wd = f(o.weightDecay);
  const mom = f(o.momentum);
  const damp1 = f(1 - o.dampening);
  const d = f(denom);
  const decay = o.weightDecay !== 0;
  if (o.momentum === 0) {
    for (let i = 0; i < n; i++) {
      let g = f(gsum[i] / d);
      if (decay) g = f(g + f(wd * params[i]));
      params[i] = f(params[i] - f(lr * g));
    }
    return;
  }
  let buf = state.momentumBuffer;
  const first = buf === null;
  if (buf === null) buf = state.momentumBuffer = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let g = f(gsum[i] / d);
    if (decay) g = f(g + f(wd * params[i]));
    const b = first ? g : f(f(mom * buf[i]) + f(damp1 * g));
    buf[i] = b;
    g = o.nesterov ? f(g + f(mom * b)) : b;
    params[i] = f(params[i] - f(lr * g));
  }
}
