/**
 * CIFAR-10 binary records, bytes only (no I/O): parse batch files, join them, and turn pixels into
 * the model's float32 input exactly as torchvision would.
 *
 * Format (official binary release, `cifar-10-batches-bin/`): a file is records of 3073 bytes, no
 * header: 1 label byte (0..9), then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue, each plane
 * 32x32 row-major. A dataset keeps labels (N) and pixels (N, 3072) apart, pixels in file order, so a
 * sample's 3072 bytes are already the flatten of its (3, 32, 32) CHW tensor.
 */
import { ErrorCode, GradhubError, internalError } from './errors.js';

/** Pixel bytes of one image: 3 planes x 32 x 32. */
export const CIFAR10_IMAGE_BYTES = 3072;
/** Same as CIFAR10_IMAGE_BYTES: the model's input size (3 x 32 x 32). */
export const CIFAR_PIXELS = CIFAR10_IMAGE_BYTES;
/** Bytes of one record: 1 label byte + the image. */
export const CIFAR10_RECORD_BYTES = 1 + CIFAR10_IMAGE_BYTES;
/** Number of classes (labels are 0..9). */
export const CIFAR10_CLASSES = 10;
/** The class names of the official `batches.meta.txt`, index 0..9. */
export const CIFAR10_CLASS_NAMES: readonly string[] = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
];

/**
 * Per-channel (R, G, B) mean and standard deviation of the 50,000 CIFAR-10 training images after
 * ToTensor (bytes / 255), over all images and pixels, rounded to 4 digits: full precision
 * mean 0.49139968, 0.48215841, 0.44653091 and std 0.24703223, 0.24348513, 0.26158784, computed as
 * `train_set.data.mean(axis=(0,1,2)) / 255` and `.std(axis=(0,1,2)) / 255` (see the discussions in
 * github.com/kuangliu/pytorch-cifar issues #16/#19 and MadryLab/robustness issue #70). These are the
 * usual `transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))` values; NOT the
 * often-copied std (0.2023, 0.1994, 0.2010), which averages per-image stds.
 */
export const CIFAR10_MEAN: readonly [number, number, number] = [0.4914, 0.4822, 0.4465];
export const CIFAR10_STD: readonly [number, number, number] = [0.247, 0.2435, 0.2616];

/** A set of CIFAR-10 samples: labels (count) and pixels (count, 3072) in file order. */
export interface CifarDataset {
  readonly count: number;
  /** (count) class indices 0..9. */
  readonly labels: Uint8Array;
  /** (count, 3072) bytes: planes R, G, B, each 32x32 row-major. */
  readonly pixels: Uint8Array;
}

/**
 * Parse one CIFAR-10 binary batch file's bytes. `fileName` only names the file in errors.
 * Returns fresh arrays (the input is not kept). Throws GradhubError E_DATA_TRUNCATED when the size
 * is not a positive multiple of 3073, E_DATA_CORRUPT when a label is outside 0..9.
 */
export function parseCifarBatch(bytes: Uint8Array, fileName: string): CifarDataset {
  const n = bytes.length;
  if (n === 0 || n % CIFAR10_RECORD_BYTES !== 0) {
    const whole = Math.floor(n / CIFAR10_RECORD_BYTES);
    throw new GradhubError(
      ErrorCode.E_DATA_TRUNCATED,
      `${fileName}: ${n} bytes is not a whole number of CIFAR-10 records (3073 bytes each: 1 label + 3072 pixels; ` +
        `${whole} whole records and ${n - whole * CIFAR10_RECORD_BYTES} bytes left over). The file is truncated or is not a ` +
        `CIFAR-10 binary batch: delete it and download the dataset again, or point --data at a folder with intact files.`,
    );
  }
  const count = n / CIFAR10_RECORD_BYTES;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * CIFAR10_IMAGE_BYTES);
  for (let i = 0; i < count; i++) {
    const at = i * CIFAR10_RECORD_BYTES;
    const label = bytes[at];
    if (label >= CIFAR10_CLASSES) {
      throw new GradhubError(
        ErrorCode.E_DATA_CORRUPT,
        `${fileName}: record ${i} (byte offset ${at}) has label ${label}, but CIFAR-10 labels are 0..9. The file is corrupt ` +
          `or is not a CIFAR-10 batch (CIFAR-100 records have 2 label bytes): replace it with the official file.`,
      );
    }
    labels[i] = label;
    pixels.set(bytes.subarray(at + 1, at + CIFAR10_RECORD_BYTES), i * CIFAR10_IMAGE_BYTES);
  }
  return { count, labels, pixels };
}

/** Join datasets in order (e.g. data_batch_1..5). Returns the input itself when there is one. */
export function concatBatches(batches: readonly CifarDataset[]): CifarDataset {
  if (batches.length === 1) return batches[0];
  let count = 0;
  for (const b of batches) count += b.count;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * CIFAR10_IMAGE_BYTES);
  let at = 0;
  for (const b of batches) {
    labels.set(b.labels.subarray(0, b.count), at);
    pixels.set(b.pixels.subarray(0, b.count * CIFAR10_IMAGE_BYTES), at * CIFAR10_IMAGE_BYTES);
    at += b.count;
  }
  return { count, labels, pixels };
}

/**
 * Parse `batches.meta.txt`: one class name a line, index 0..9; blank lines (the official file ends
 * with some) are skipped. Throws E_DATA_CORRUPT unless there are exactly 10 names.
 */
export function parseClassNames(text: string, fileName: string): string[] {
  const names = text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length !== CIFAR10_CLASSES) {
    throw new GradhubError(
      ErrorCode.E_DATA_CORRUPT,
      `${fileName}: expected ${CIFAR10_CLASSES} class names (one a line), found ${names.length}. ` +
        `Replace it with the official batches.meta.txt, or delete it to use the standard CIFAR-10 names.`,
    );
  }
  return names;
}

// Byte -> float32 tables, one entry per (channel, byte value): the conversion is a pure function of
// the byte, so a table gives the same bits as computing it, without the per-pixel divisions.
//   plain:      x = fround(b / 255)                      == torch: uint8 -> float32, then / 255 (ToTensor)
//   normalized: y = fround(fround(x - m[c]) / s[c])      == torchvision Normalize: tensor.sub_(mean).div_(std)
//               with m[c] = fround(CIFAR10_MEAN[c]), s[c] = fround(CIFAR10_STD[c]) (mean/std become float32 tensors)
// b / 255 and (x - m) / s are computed in float64 and rounded once: for a single + - * / of float32
// operands the float64 result rounded to float32 is the correctly rounded float32 result.
const PLAIN = new Float32Array(256);
const NORMALIZED = new Float32Array(3 * 256);
for (let b = 0; b < 256; b++) PLAIN[b] = Math.fround(b / 255);
for (let c = 0; c < 3; c++) {
  const m = Math.fround(CIFAR10_MEAN[c]);
  const s = Math.fround(CIFAR10_STD[c]);
  for (let b = 0; b < 256; b++) NORMALIZED[c * 256 + b] = Math.fround(Math.fround(PLAIN[b] - m) / s);
}

/**
 * Write the model input of samples [start, start + count) of `pixels` into out (count, 3072):
 * out[i*3072 + j] = x(pixels[(start+i)*3072 + j]), channel c = floor(j / 1024), so each row is the
 * flatten of the sample's (3, 32, 32) tensor as torchvision gives it.
 *   normalize = false: x = fround(byte / 255), bit-identical to `ToTensor()` (`torch.tensor(byte) / 255` in float32).
 *   normalize = true:  x = fround(fround(x - mean[c]) / std[c]), bit-identical to `Normalize(CIFAR10_MEAN, CIFAR10_STD)`
 *                      after ToTensor (each op in float32, mean and std rounded to float32 first).
 * `pixels` is (N, 3072) bytes; `out` needs at least count * 3072 floats (extra ones are left as they are).
 */
export function pixelsToInput(pixels: Uint8Array, start: number, count: number, out: Float32Array, normalize: boolean): void {
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0) {
    throw internalError(`pixelsToInput: start (${start}) and count (${count}) must be non-negative integers`);
  }
  const from = start * CIFAR10_IMAGE_BYTES;
  const len = count * CIFAR10_IMAGE_BYTES;
  if (from + len > pixels.length) {
    throw internalError(`pixelsToInput: samples [${start}, ${start + count}) are past the end of ${pixels.length / CIFAR10_IMAGE_BYTES} samples`);
  }
  if (out.length < len) throw internalError(`pixelsToInput: out has ${out.length} floats, ${count} samples need ${len}`);
  if (!normalize) {
    for (let j = 0; j < len; j++) out[j] = PLAIN[pixels[from + j]];
    return;
  }
  // 1024 pixels a plane: plane p of sample i uses table c = p.
  for (let i = 0; i < count; i++) {
    const src = from + i * CIFAR10_IMAGE_BYTES;
    const dst = i * CIFAR10_IMAGE_BYTES;
    for (let c = 0; c < 3; c++) {
      const base = c * 256;
      const o = c * 1024;
      for (let p = 0; p < 1024; p++) out[dst + o + p] = NORMALIZED[base + pixels[src + o + p]];
    }
  }
}
