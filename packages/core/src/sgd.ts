/**
 * torch.optim.SGD on the flat buffer (docs/design.md "Invariant 5: SGD is torch.optim.SGD"), fused with the division of the reduced
 * gradient sum by the loss denominator (docs/design.md "Invariant 1: loss semantics"). For each element, float32 arithmetic
 * (every operation rounded), in PyTorch's order:
 *
 *   g = gsum / denom                      (maximize: g = -(gsum / denom), computed as gsum / -denom)
 *   if weight_decay != 0:  g = g + weight_decay * p
 *   if momentum != 0:
 *     buf = first step ? g : momentum * buf + (1 - dampening) * g
 *     g   = nesterov ? g + momentum * buf : buf
 *   p = p - lr * g
 *
 * `maximize` (torch.optim.SGD(maximize=True)) negates the gradient before everything else; IEEE
 * division rounds symmetrically, so gsum / -denom is -(gsum / denom) to the bit (signed zeros
 * included) and the loops need no extra operation.
 *
 * The momentum buffer does not exist before the first step (PyTorch sets buf = g then, ignoring
 * dampening): `state.momentumBuffer` is null until then, and a checkpoint keeps that distinction.
 */
import { internalError } from './errors.js';
export interface SgdOptions {
  readonly lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** Ascend instead of descend (torch.optim.SGD's maximize); default false. */
  readonly maximize?: boolean;
}

/** The denominator the loops divide by: -denom when maximizing (see the module comment). */
export function signedDenom(denom: number, o: SgdOptions): number {
  return o.maximize === true ? -denom : denom;
}

export interface SgdState {
  momentumBuffer: Float32Array | null;
}

export function validateSgd(o: SgdOptions): void {
  const finite = (v: number, name: string): void => {
    if (!Number.isFinite(v) || v < 0) throw internalError(`--${name} must be a finite number >= 0, got ${v}`);
  };
  finite(o.lr, 'lr');
  finite(o.momentum, 'momentum');
  finite(o.dampening, 'dampening');
  finite(o.weightDecay, 'weight-decay');
  if (o.maximize !== undefined && typeof o.maximize !== 'boolean') throw new TypeError(`maximize must be a boolean, got ${String(o.maximize)}`);
  // torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening"
  if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw internalError('--nesterov requires --momentum > 0 and --dampening 0 (as torch.optim.SGD)');
}

/**
 * One SGD step on `params` in place. `gsum` (same layout) is left unchanged.
 *
 * The update is dispatched once per call to a loop specialised for the case (plain, weight decay,
 * momentum first step, momentum, nesterov; each with and without weight decay), so the hot loops
 * carry no per-element branches. Every loop performs exactly the float32 operations of the formula
 * in the module comment, in the same order (test/sgd.test.ts checks them bit for bit against the
 * straightforward loop).
 */
export function sgdStep(params: Float32Array, gsum: Float32Array, denom: number, o: SgdOptions, state: SgdState): void {
  const n = params.length;
  if (gsum.length !== n) throw internalError(`sgdStep: gradient has ${gsum.length} floats, parameters ${n}`);
  const f = Math.fround;
  const lr = f(o.lr);
  const wd = f(o.weightDecay);
  const mom = f(o.momentum);
  const damp1 = f(1 - o.dampening);
  const d = f(signedDenom(denom, o));
  const decay = o.weightDecay !== 0;
  if (o.momentum === 0) {
    if (decay) plainDecay(params, gsum, n, d, lr, wd);
    else plain(params, gsum, n, d, lr);
    return;
  }
  const buf = state.momentumBuffer;
  if (buf === null) {
    // PyTorch's first step: buf = g (dampening ignored).
    const b = (state.momentumBuffer = new Float32Array(n));
    if (o.nesterov) {
      if (decay) firstNesterovDecay(params, gsum, b, n, d, lr, wd, mom);
      else firstNesterov(params, gsum, b, n, d, lr, mom);
    } else if (decay) firstDecay(params, gsum, b, n, d, lr, wd);
    else first(params, gsum, b, n, d, lr);
    return;
  }
  if (buf.length !== n) throw internalError(`sgdStep: momentum buffer has ${buf.length} floats, parameters ${n}`);
  if (o.nesterov) {
    if (decay) nesterovDecay(params, gsum, buf, n, d, lr, wd, mom, damp1);
    else nesterov(params, gsum, buf, n, d, lr, mom, damp1);
  } else if (decay) momentumDecay(params, gsum, buf, n, d, lr, wd, mom, damp1);
  else momentum(params, gsum, buf, n, d, lr, mom, damp1);
}

// The specialised loops. Arguments are float32 values already (Math.fround); `f` rounds every
// multiply, add and divide to float32, as the module comment's formula does.
const f = Math.fround;

/** g = gsum/d; p -= lr*g */
function plain(p: Float32Array, gs: Float32Array, n: number, d: number, lr: number): void {
  for (let i = 0; i < n; i++) {
    const g = f(gs[i] / d);
    p[i] = f(p[i] - f(lr * g));
  }
}

/** g = gsum/d + wd*p; p -= lr*g */
function plainDecay(p: Float32Array, gs: Float32Array, n: number, d: number, lr: number, wd: number): void {
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    const g = f(f(gs[i] / d) + f(wd * pi));
    p[i] = f(pi - f(lr * g));
  }
}

/** g = gsum/d; buf = g; p -= lr*buf */
function first(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number): void {
  for (let i = 0; i < n; i++) {
    const g = f(gs[i] / d);
    buf[i] = g;
    p[i] = f(p[i] - f(lr * g));
  }
}

/** g = gsum/d + wd*p; buf = g; p -= lr*buf */
function firstDecay(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, wd: number): void {
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    const g = f(f(gs[i] / d) + f(wd * pi));
    buf[i] = g;
    p[i] = f(pi - f(lr * g));
  }
}

/** g = gsum/d; buf = g; p -= lr*(g + m*buf) */
function firstNesterov(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, mom: number): void {
  for (let i = 0; i < n; i++) {
    const g = f(gs[i] / d);
    buf[i] = g;
    p[i] = f(p[i] - f(lr * f(g + f(mom * g))));
  }
}

/** g = gsum/d + wd*p; buf = g; p -= lr*(g + m*buf) */
function firstNesterovDecay(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, wd: number, mom: number): void {
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    const g = f(f(gs[i] / d) + f(wd * pi));
    buf[i] = g;
    p[i] = f(pi - f(lr * f(g + f(mom * g))));
  }
}

/** g = gsum/d; buf = m*buf + (1-damp)*g; p -= lr*buf */
function momentum(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, mom: number, damp1: number): void {
  for (let i = 0; i < n; i++) {
    const g = f(gs[i] / d);
    const b = f(f(mom * buf[i]) + f(damp1 * g));
    buf[i] = b;
    p[i] = f(p[i] - f(lr * b));
  }
}

/** g = gsum/d + wd*p; buf = m*buf + (1-damp)*g; p -= lr*buf */
function momentumDecay(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, wd: number, mom: number, damp1: number): void {
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    const g = f(f(gs[i] / d) + f(wd * pi));
    const b = f(f(mom * buf[i]) + f(damp1 * g));
    buf[i] = b;
    p[i] = f(pi - f(lr * b));
  }
}

/** g = gsum/d; buf = m*buf + (1-damp)*g; p -= lr*(g + m*buf) */
function nesterov(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, mom: number, damp1: number): void {
  for (let i = 0; i < n; i++) {
    const g = f(gs[i] / d);
    const b = f(f(mom * buf[i]) + f(damp1 * g));
    buf[i] = b;
    p[i] = f(p[i] - f(lr * f(g + f(mom * b))));
  }
}

/** g = gsum/d + wd*p; buf = m*buf + (1-damp)*g; p -= lr*(g + m*buf) */
function nesterovDecay(p: Float32Array, gs: Float32Array, buf: Float32Array, n: number, d: number, lr: number, wd: number, mom: number, damp1: number): void {
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    const g = f(f(gs[i] / d) + f(wd * pi));
    const b = f(f(mom * buf[i]) + f(damp1 * g));
    buf[i] = b;
    p[i] = f(pi - f(lr * f(g + f(mom * b))));
  }
}
