/**
 * The ONNX export, checked by the tool it is for: ONNX Runtime (onnxruntime-node, CPU) loads the file
 * and its logits on the CIFAR-10 sample's 1,000 test images match the core's forward (TypeScript
 * oracle) within 1e-5, with the same test accuracy; with and without --normalize.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import protobuf from 'protobufjs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CIFAR10_IMAGE_BYTES, createEngine, createOracleBackend, decodeSafetensors, initParams, isGradhubError, modelSpec,
  parseCifarBatch, pixelsToInput, safetensorsToParams, type CifarDataset, type ModelSpec,
} from '@gradhub/core';
import { modelToOnnx, ONNX_INPUT_NAME, ONNX_IR_VERSION, ONNX_OPSET, ONNX_OUTPUT_NAME, ONNX_SCHEMA } from '../src/onnx-export.js';
import { CIFAR10_DIR, REFERENCE_DIR } from '../../../test/fixtures/index.js';
import { INTERNAL } from '../../../test/support/errors.js';

const TOLERANCE = 1e-5;

let test: CifarDataset;
let trained: { spec: ModelSpec; params: Float32Array };

beforeAll(() => {
  test = parseCifarBatch(fs.readFileSync(path.join(CIFAR10_DIR, 'test_batch.bin')), 'test_batch.bin');
  const file = path.join(REFERENCE_DIR, 'cifar_trajectory/visible_final.safetensors');
  const spec = modelSpec([3072, 32, 10]);
  trained = { spec, params: safetensorsToParams(spec, decodeSafetensors(fs.readFileSync(file), file)) };
});

/** The core's logits (n, classes) and correct count on the test set. */
function coreForward(spec: ModelSpec, params: Float32Array, normalize: boolean): { logits: Float32Array; correct: number } {
  const engine = createEngine({ spec, backend: createOracleBackend(), maxBatch: test.count, chunk: 16, normalize });
  engine.params.set(params);
  const sums = engine.computeSums(test.pixels, test.labels, test.count, false);
  return { logits: engine.logits(test.count).slice(), correct: sums.correct };
}

/** ONNX Runtime's logits on the test set, input x = byte / 255 (the graph normalises by itself). */
async function onnxForward(model: Uint8Array, classes: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    expect(session.inputNames).toEqual([ONNX_INPUT_NAME]);
    expect(session.outputNames).toEqual([ONNX_OUTPUT_NAME]);
    const x = new Float32Array(test.count * CIFAR10_IMAGE_BYTES);
    pixelsToInput(test.pixels, 0, test.count, x, false);
    const out = await session.run({ [ONNX_INPUT_NAME]: new ort.Tensor('float32', x, [test.count, CIFAR10_IMAGE_BYTES]) });
    const logits = out[ONNX_OUTPUT_NAME];
    expect(logits.type).toBe('float32');
    expect(logits.dims).toEqual([test.count, classes]);
    return logits.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Samples whose first maximal logit is the label (the core's rule). */
function countCorrect(logits: Float32Array, classes: number, labels: Uint8Array): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === labels[i]) correct++;
  }
  return correct;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k] - b[k]));
  return m;
}

describe('modelToOnnx, run by ONNX Runtime', () => {
  for (const normalize of [false, true]) {
    it(`matches the core's forward on the CIFAR-10 sample test set (normalize: ${normalize})`, async () => {
      const { spec, params } = trained;
      const classes = spec.sizes[spec.sizes.length - 1];
      const core = coreForward(spec, params, normalize);
      const onnx = await onnxForward(modelToOnnx(spec, params, { normalize }), classes);
      const diff = maxAbsDiff(onnx, core.logits);
      const correct = countCorrect(onnx, classes, test.labels);
      console.log(
        `ONNX Runtime ${ort.env.versions.common}, model ${spec.sizes.join(',')} (visible_final), normalize ${normalize}: ` +
          `max |logit diff| vs core ${diff.toExponential(2)}, test accuracy ${(correct / test.count).toFixed(4)} ` +
          `(${correct}/${test.count}; core ${core.correct}/${test.count})`,
      );
      expect(diff).toBeLessThanOrEqual(TOLERANCE);
      expect(correct).toBe(core.correct);
    });
  }

  it('runs a deeper model (two hidden layers) within 1e-5 of the core', async () => {
    const spec = modelSpec([3072, 48, 24, 10]);
    const params = new Float32Array(spec.paramCount);
    initParams(spec, 7, params);
    for (const normalize of [false, true]) {
      const core = coreForward(spec, params, normalize);
      const onnx = await onnxForward(modelToOnnx(spec, params, { normalize }), 10);
      expect(maxAbsDiff(onnx, core.logits)).toBeLessThanOrEqual(TOLERANCE);
    }
  });
});

describe('modelToOnnx, the file', () => {
  it('is deterministic: the same parameters give the same bytes', () => {
    const { spec, params } = trained;
    const a = modelToOnnx(spec, params, { normalize: false });
    const b = modelToOnnx(spec, params.slice(), { normalize: false });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(modelToOnnx(spec, params, { normalize: true })).equals(Buffer.from(a))).toBe(false);
  });

  it('uses the official ONNX field numbers', () => {
    const root = protobuf.parse(ONNX_SCHEMA, { keepCase: true }).root;
    // From the ONNX specification (onnx/onnx.proto): message -> field -> number.
    const official: Record<string, Record<string, number>> = {
      ModelProto: { ir_version: 1, producer_name: 2, producer_version: 3, domain: 4, model_version: 5, doc_string: 6, graph: 7, opset_import: 8, metadata_props: 14 },
      OperatorSetIdProto: { domain: 1, version: 2 },
      StringStringEntryProto: { key: 1, value: 2 },
      GraphProto: { node: 1, name: 2, initializer: 5, doc_string: 10, input: 11, output: 12, value_info: 13 },
      NodeProto: { input: 1, output: 2, name: 3, op_type: 4, attribute: 5, doc_string: 6, domain: 7 },
      AttributeProto: { name: 1, f: 2, i: 3, s: 4, t: 5, g: 6, floats: 7, ints: 8, strings: 9, tensors: 10, graphs: 11, doc_string: 13, type: 20, ref_attr_name: 21 },
      TensorProto: { dims: 1, data_type: 2, float_data: 4, int32_data: 5, string_data: 6, int64_data: 7, name: 8, raw_data: 9, double_data: 10, uint64_data: 11, doc_string: 12, external_data: 13 },
      ValueInfoProto: { name: 1, type: 2, doc_string: 3 },
      TypeProto: { tensor_type: 1, denotation: 6 },
      'TypeProto.Tensor': { elem_type: 1, shape: 2 },
      TensorShapeProto: { dim: 1 },
      'TensorShapeProto.Dimension': { dim_value: 1, dim_param: 2, denotation: 3 },
    };
    for (const [message, fields] of Object.entries(official)) {
      const type = root.lookupType(`onnx.${message}`);
      const got = Object.fromEntries(type.fieldsArray.map((f) => [f.name, f.id]));
      expect(got, message).toEqual(fields);
    }
    expect(root.lookupEnum('onnx.TensorProto.DataType').values.FLOAT).toBe(1);
    expect(root.lookupEnum('onnx.AttributeProto.AttributeType').values.INT).toBe(2);
  });

  it('holds the documented graph: input, Gemm/Relu per layer, PyTorch-named initializers, metadata', () => {
    const { spec, params } = trained;
    const root = protobuf.parse(ONNX_SCHEMA, { keepCase: true }).root;
    const ModelProto = root.lookupType('onnx.ModelProto');
    const m = ModelProto.toObject(ModelProto.decode(modelToOnnx(spec, params, { normalize: true })), { longs: Number, defaults: false }) as any;
    expect(m.ir_version).toBe(ONNX_IR_VERSION);
    expect(m.opset_import).toEqual([{ version: ONNX_OPSET }]);
    expect(m.graph.node.map((n: any) => n.op_type)).toEqual(['Sub', 'Div', 'Gemm', 'Relu', 'Gemm']);
    expect(m.graph.node.at(-1).output).toEqual([ONNX_OUTPUT_NAME]);
    expect(m.graph.node[2].attribute).toEqual([{ name: 'transB', type: 2, i: 1 }]);
    expect(m.graph.initializer.map((t: any) => t.name)).toEqual(['input.mean', 'input.std', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']);
    const w0 = m.graph.initializer[2];
    expect(w0.dims).toEqual([32, 3072]);
    expect(w0.data_type).toBe(1);
    const raw: Uint8Array = w0.raw_data;
    expect(raw.length).toBe(4 * 32 * 3072);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    expect(dv.getFloat32(4 * 5, true)).toBe(params[5]);
    const dims = m.graph.input[0].type.tensor_type.shape.dim;
    expect(dims).toEqual([{ dim_param: 'N' }, { dim_value: 3072 }]);
    expect(m.graph.output[0].type.tensor_type.shape.dim).toEqual([{ dim_param: 'N' }, { dim_value: 10 }]);
    const meta = Object.fromEntries(m.metadata_props.map((e: any) => [e.key, e.value]));
    expect(meta['gradhub.model']).toBe('3072,32,10');
    expect(meta['gradhub.normalize']).toBe('true');
  });

  it('refuses parameters that do not fit the model, and normalisation of a non-CIFAR input', () => {
    const spec = modelSpec([12, 4, 3]);
    expect(() => modelToOnnx(spec, new Float32Array(spec.paramCount + 1), { normalize: false })).toThrow(INTERNAL);
    let err: unknown;
    try {
      modelToOnnx(spec, new Float32Array(spec.paramCount), { normalize: true });
    } catch (e) {
      err = e;
    }
    expect(isGradhubError(err, 'E_MODEL_MISMATCH')).toBe(true);
    expect(modelToOnnx(spec, new Float32Array(spec.paramCount), { normalize: false }).length).toBeGreaterThan(0);
  });
});
