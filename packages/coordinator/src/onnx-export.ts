/**
 * ONNX export of the MLP: a model file ONNX Runtime (and any ONNX reader) runs, written with
 * protobufjs from the official ONNX schema (the subset of onnx.proto3 it needs, field numbers as
 * upstream, embedded below as ONNX_SCHEMA so the built package needs no file next to it). Bytes only, no I/O.
 *
 * The graph (opset 13, IR version 7), for sizes [d0, ..., dL]:
 *   input  "input"  float (N, d0), N dynamic: for CIFAR-10, x = byte / 255 in [0, 1], each row the
 *                   flatten of the image's (3, 32, 32) CHW planes R, G, B (the bytes of a record in
 *                   file order), exactly what `pixelsToInput(..., normalize = false)` gives;
 *   [normalize]     Sub("input.mean") then Div("input.std"): (x - mean[c]) / std[c] per channel,
 *                   with the CIFAR-10 mean/std as float32 (N, 3072) broadcasts, when the run used
 *                   --normalize (so callers always feed x in [0, 1]);
 *   layer i         Gemm(h, layers.{i}.weight, layers.{i}.bias, transB = 1): h W^T + b, then Relu
 *                   for every layer but the last;
 *   output "logits" float (N, dL): raw logits, no softmax.
 * Weights are initializers named as in PyTorch (`layers.{i}.weight` (out, in), `layers.{i}.bias`),
 * float32 little-endian in `raw_data`. `metadata_props` record the sizes and the normalize flag.
 *
 * Deterministic: no dates, ids or host names; protobufjs writes fields in field-number order, so the
 * same parameters and options give the same bytes.
 */
import protobuf from 'protobufjs';
import { CIFAR10_IMAGE_BYTES, CIFAR10_MEAN, CIFAR10_STD, ErrorCode, GradhubError, tensorEntries, type ModelSpec, internalError } from '@gradhub/core';

/** ONNX IR version written (IR 7: ONNX 1.7+, every ONNX Runtime since 1.3). */
export const ONNX_IR_VERSION = 7;
/** Default-domain operator set written: Gemm, Relu, Sub and Div as of opset 13. */
export const ONNX_OPSET = 13;
/** Name of the graph's input: float (N, d0). */
export const ONNX_INPUT_NAME = 'input';
/** Name of the graph's output: float (N, classes). */
export const ONNX_OUTPUT_NAME = 'logits';

export interface OnnxExportOptions {
  /**
   * The run used --normalize: the graph applies the CIFAR-10 per-channel (x - mean) / std to its
   * input itself, so the input is always x = byte / 255. Needs d0 = 3072.
   */
  readonly normalize: boolean;
  /** Extra `metadata_props` (string values that do not change between identical runs). */
  readonly metadata?: Readonly<Record<string, string>>;
}

// TensorProto.DataType.FLOAT and AttributeProto.AttributeType.INT (onnx.proto).
const FLOAT = 1;
const ATTR_INT = 2;

/**
 * Encode the model of `spec` with the flat parameters `params` (spec's layout, docs/design.md "Invariant 2: one flat parameter buffer")
 * as an ONNX ModelProto. Throws E_INTERNAL when params do not fit spec, GradhubError E_MODEL_MISMATCH
 * when normalize is asked for a model whose input is not a CIFAR-10 image.
 */
export function modelToOnnx(spec: ModelSpec, params: Float32Array, options: OnnxExportOptions): Uint8Array {
  if (params.length !== spec.paramCount) {
    throw internalError(`modelToOnnx: params hold ${params.length} floats, model ${spec.sizes.join(',')} has ${spec.paramCount}`);
  }
  const d0 = spec.sizes[0];
  const classes = spec.sizes[spec.sizes.length - 1];
  if (options.normalize && d0 !== CIFAR10_IMAGE_BYTES) {
    throw new GradhubError(
      ErrorCode.E_MODEL_MISMATCH,
      `the model's input size is ${d0}: the CIFAR-10 normalisation (--normalize) needs ${CIFAR10_IMAGE_BYTES} (3 x 32 x 32)`,
    );
  }

  const initializer: unknown[] = [];
  const node: unknown[] = [];
  let h = ONNX_INPUT_NAME;
  if (options.normalize) {
    const mean = new Float32Array(d0);
    const std = new Float32Array(d0);
    for (let j = 0; j < d0; j++) {
      const c = Math.floor(j / (d0 / 3));
      mean[j] = CIFAR10_MEAN[c];
      std[j] = CIFAR10_STD[c];
    }
    initializer.push(tensor('input.mean', [d0], mean), tensor('input.std', [d0], std));
    node.push(
      { name: 'normalize/Sub', op_type: 'Sub', input: [h, 'input.mean'], output: ['input.centered'] },
      { name: 'normalize/Div', op_type: 'Div', input: ['input.centered', 'input.std'], output: ['input.normalized'] },
    );
    h = 'input.normalized';
  }
  const last = spec.layers.length - 1;
  for (const t of tensorEntries(spec)) initializer.push(tensor(t.name, t.shape, params.subarray(t.offset, t.offset + t.length)));
  for (const l of spec.layers) {
    const gemmOut = l.index === last ? ONNX_OUTPUT_NAME : `layers.${l.index}.gemm`;
    node.push({
      name: `layers.${l.index}/Gemm`, op_type: 'Gemm',
      input: [h, `layers.${l.index}.weight`, `layers.${l.index}.bias`], output: [gemmOut],
      attribute: [{ name: 'transB', type: ATTR_INT, i: 1 }],
    });
    h = gemmOut;
    if (l.index < last) {
      const reluOut = `layers.${l.index}.relu`;
      node.push({ name: `layers.${l.index}/Relu`, op_type: 'Relu', input: [h], output: [reluOut] });
      h = reluOut;
    }
  }

  const inputDoc = options.normalize
    ? 'float32 (N, 3072): x = byte / 255 in [0, 1], CHW planes R, G, B flattened; the graph normalises with the CIFAR-10 mean/std itself'
    : `float32 (N, ${d0}): x = byte / 255 in [0, 1], CHW planes R, G, B flattened`;
  const metadata: Record<string, string> = {
    'gradhub.model': spec.sizes.join(','),
    'gradhub.normalize': String(options.normalize),
    'gradhub.input': inputDoc,
    ...options.metadata,
  };
  const model = {
    ir_version: ONNX_IR_VERSION,
    opset_import: [{ version: ONNX_OPSET }], // no domain: the default (ai.onnx) operator set
    producer_name: 'gradhub',
    doc_string: `gradhub MLP ${spec.sizes.join(',')} (ReLU between layers, raw logits out). Input "${ONNX_INPUT_NAME}": ${inputDoc}.`,
    graph: {
      name: 'gradhub_mlp',
      node,
      initializer,
      input: [valueInfo(ONNX_INPUT_NAME, d0, inputDoc)],
      output: [valueInfo(ONNX_OUTPUT_NAME, classes, `float32 (N, ${classes}): raw logits (no softmax)`)],
    },
    metadata_props: Object.entries(metadata).map(([key, value]) => ({ key, value })),
  };
  const ModelProto = onnxRoot().lookupType('onnx.ModelProto');
  const problem = ModelProto.verify(model);
  if (problem !== null) throw new GradhubError(ErrorCode.E_INTERNAL, `modelToOnnx built an invalid ModelProto: ${problem}`);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** The protobufjs root of ONNX_SCHEMA (parsed once; field names as in the .proto). */
export function onnxRoot(): protobuf.Root {
  root ??= protobuf.parse(ONNX_SCHEMA, { keepCase: true }).root;
  return root;
}
let root: protobuf.Root | undefined;

/** A float32 TensorProto with little-endian raw_data. */
function tensor(name: string, dims: readonly number[], data: Float32Array): Record<string, unknown> {
  const raw = new Uint8Array(4 * data.length);
  const view = new DataView(raw.buffer);
  for (let k = 0; k < data.length; k++) view.setFloat32(4 * k, data[k], true);
  return { name, dims: [...dims], data_type: FLOAT, raw_data: raw };
}

/** A float tensor (N, width) ValueInfoProto, N symbolic. */
function valueInfo(name: string, width: number, doc: string): Record<string, unknown> {
  return {
    name,
    doc_string: doc,
    type: { tensor_type: { elem_type: FLOAT, shape: { dim: [{ dim_param: 'N' }, { dim_value: width }] } } },
  };
}

/**
 * The text of `onnx/onnx.proto` next to this module (a subset of the official ONNX schema with its
 * field numbers). Embedded so the built package needs no data file; a test checks it equals the file.
 */
export const ONNX_SCHEMA = `// A subset of the official ONNX schema (github.com/onnx/onnx, onnx/onnx.proto3, "ONNX Project
// Contributors", MIT license): the messages gradhub's exporter writes, copied with their official
// names, types and field numbers. Fields and messages left out (sparse tensors, training info,
// functions, segments, external data locations, quantization annotations) are ones gradhub never
// writes; a reader with the full schema reads these files unchanged.
//
// Do not renumber anything here. packages/coordinator/src/onnx-export.ts embeds this exact text
// (ONNX_SCHEMA); a test checks that the two are identical.

syntax = "proto3";

package onnx;

// Versioning (docs/IR.md): the IR version a model targets is ModelProto.ir_version.
enum Version {
  _START_VERSION = 0;
  IR_VERSION_2017_10_10 = 0x0000000000000001;
  IR_VERSION_2017_10_30 = 0x0000000000000002;
  IR_VERSION_2017_11_3 = 0x0000000000000003;
  IR_VERSION_2019_1_22 = 0x0000000000000004;
  IR_VERSION_2019_3_18 = 0x0000000000000005;
  IR_VERSION_2019_9_19 = 0x0000000000000006;
  // IR VERSION 7 published on May 8, 2020
  IR_VERSION = 0x0000000000000007;
}

// A named attribute containing either singular float, integer, string, graph,
// and tensor values, or repeated float, integer, string, graph, and tensor values.
// An AttributeProto MUST contain the name field, and *only one* of the
// following content fields, effectively enforcing a C/C++ union equivalent.
message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0;
    FLOAT = 1;
    INT = 2;
    STRING = 3;
    TENSOR = 4;
    GRAPH = 5;
    SPARSE_TENSOR = 11;

    FLOATS = 6;
    INTS = 7;
    STRINGS = 8;
    TENSORS = 9;
    GRAPHS = 10;
    SPARSE_TENSORS = 12;
  }

  // The name field MUST be present for this version of the IR.
  string name = 1;           // namespace Attribute

  // if ref_attr_name is not empty, ref_attr_name is the attribute name in parent function.
  string ref_attr_name = 21;

  // A human-readable documentation for this attribute. Markdown is allowed.
  string doc_string = 13;

  // The type field MUST be present for this version of the IR.
  AttributeType type = 20;   // discriminator that indicates which field below is in use

  // Exactly ONE of the following fields must be present for this version of the IR
  float f = 2;               // float
  int64 i = 3;               // int
  bytes s = 4;               // UTF-8 string
  TensorProto t = 5;         // tensor value
  GraphProto g = 6;          // graph

  repeated float floats = 7;          // list of floats
  repeated int64 ints = 8;            // list of ints
  repeated bytes strings = 9;         // list of UTF-8 strings
  repeated TensorProto tensors = 10;  // list of tensors
  repeated GraphProto graphs = 11;    // list of graph
}

// Defines information on value, including the name, the type, and
// the shape of the value.
message ValueInfoProto {
  // This field MUST be present in this version of the IR.
  string name = 1;     // namespace Value
  // This field MUST be present in this version of the IR for
  // inputs and outputs of the top-level graph.
  TypeProto type = 2;
  // A human-readable documentation for this value. Markdown is allowed.
  string doc_string = 3;
}

// Computation graphs are made up of a DAG of nodes, which represent what is
// commonly called a "layer" or "pipeline stage" in machine learning frameworks.
message NodeProto {
  repeated string input = 1;    // namespace Value
  repeated string output = 2;   // namespace Value

  // An optional identifier for this node in a graph.
  string name = 3;     // namespace Node

  // The symbolic identifier of the Operator to execute.
  string op_type = 4;  // namespace Operator
  // The domain of the OperatorSet that specifies the operator named by op_type.
  string domain = 7;   // namespace Domain

  // Additional named attributes.
  repeated AttributeProto attribute = 5;

  // A human-readable documentation for this node. Markdown is allowed.
  string doc_string = 6;
}

// ModelProto is a top-level file/container format for bundling a ML model and
// associating its computation graph with metadata.
message ModelProto {
  // The version of the IR this model targets. See Version enum above.
  // This field MUST be present.
  int64 ir_version = 1;

  // The OperatorSets this model relies on.
  repeated OperatorSetIdProto opset_import = 8;

  // The name of the framework or tool used to generate this model.
  string producer_name = 2;

  // The version of the framework or tool used to generate this model.
  string producer_version = 3;

  // Domain name of the model.
  string domain = 4;

  // The version of the graph encoded. See Version enum below.
  int64 model_version = 5;

  // A human-readable documentation for this model. Markdown is allowed.
  string doc_string = 6;

  // The parameterized graph that is evaluated to execute the model.
  GraphProto graph = 7;

  // Named metadata values; keys should be distinct.
  repeated StringStringEntryProto metadata_props = 14;
}

// StringStringEntryProto follows the pattern for cross-proto-version maps.
message StringStringEntryProto {
  string key = 1;
  string value = 2;
}

// A graph defines the computational logic of a model and is comprised of a parameterized
// list of nodes that form a directed acyclic graph based on their inputs and outputs.
message GraphProto {
  // The nodes in the graph, sorted topologically.
  repeated NodeProto node = 1;

  // The name of the graph.
  string name = 2;   // namespace Graph

  // A list of named tensor values, used to specify constant inputs of the graph.
  repeated TensorProto initializer = 5;

  // A human-readable documentation for this graph. Markdown is allowed.
  string doc_string = 10;

  // The inputs and outputs of the graph.
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;

  // Information for the values in the graph.
  repeated ValueInfoProto value_info = 13;
}

// A serialized tensor value.
message TensorProto {
  enum DataType {
    UNDEFINED = 0;
    // Basic types.
    FLOAT = 1;   // float
    UINT8 = 2;   // uint8_t
    INT8 = 3;    // int8_t
    UINT16 = 4;  // uint16_t
    INT16 = 5;   // int16_t
    INT32 = 6;   // int32_t
    INT64 = 7;   // int64_t
    STRING = 8;  // string
    BOOL = 9;    // bool
    FLOAT16 = 10;
    DOUBLE = 11;
    UINT32 = 12;
    UINT64 = 13;
    COMPLEX64 = 14;     // complex with float32 real and imaginary components
    COMPLEX128 = 15;    // complex with float64 real and imaginary components
    BFLOAT16 = 16;
  }

  // The shape of the tensor.
  repeated int64 dims = 1;

  // The data type of the tensor.
  // This field MUST have a valid TensorProto.DataType value
  int32 data_type = 2;

  // For float and complex64 values
  repeated float float_data = 4 [packed = true];

  // For int32, uint8, int8, uint16, int16, bool, and float16 values
  repeated int32 int32_data = 5 [packed = true];

  // For strings.
  repeated bytes string_data = 6;

  // For int64.
  repeated int64 int64_data = 7 [packed = true];

  // Optionally, a name for the tensor.
  string name = 8; // namespace Value

  // A human-readable documentation for this tensor. Markdown is allowed.
  string doc_string = 12;

  // When this raw_data field is used to store tensor value, elements MUST
  // be stored in as fixed-width, little-endian order.
  // Floating-point data types MUST be stored in IEEE 754 format.
  bytes raw_data = 9;

  // external_data stores key-value pairs describing data location.
  repeated StringStringEntryProto external_data = 13;

  // For double
  repeated double double_data = 10 [packed = true];

  // For uint64 and uint32 values
  repeated uint64 uint64_data = 11 [packed = true];
}

// Defines a tensor shape. A dimension can be either an integer value
// or a symbolic variable. A symbolic variable represents an unknown
// dimension.
message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;   // namespace Shape
    };
    // Standard denotation can optionally be used to denote tensor
    // dimensions with standard semantic descriptions.
    string denotation = 3;
  };
  repeated Dimension dim = 1;
}

// The standard ONNX data types.
message TypeProto {
  message Tensor {
    // This field MUST NOT have the value of UNDEFINED
    // This field MUST have a valid TensorProto.DataType value
    // This field MUST be present for this version of the IR.
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }

  oneof value {
    // The type of a tensor.
    Tensor tensor_type = 1;
  }

  // An optional denotation can be used to denote the whole
  // type with a standard semantic description as to what is
  // stored inside.
  string denotation = 6;
}

// OperatorSets are uniquely identified by a (domain, opset_version) pair.
message OperatorSetIdProto {
  // The domain of the operator set being identified.
  // The empty string ("") or absence of this field implies the operator
  // set that is defined as part of the ONNX specification.
  string domain = 1;

  // The version of the operator set being identified.
  // This field MUST be present in this version of the IR.
  int64 version = 2;
}
`;
