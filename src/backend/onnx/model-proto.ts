// Writing ONNX models: the part of ONNX's ModelProto (onnx/onnx.proto, field numbers as published)
// that a graph of float32 tensors needs, and a small builder for such graphs. Nothing here reads
// models; ONNX Runtime does.
import protobuf from 'protobufjs';

const ONNX_SCHEMA = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 },
          },
        },
        ValueInfoProto: { fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } } },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
          },
        },
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } },
          nested: { Dimension: { fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } } } },
        },
        TypeProto: {
          fields: { tensorType: { type: 'Tensor', id: 1 } },
          nested: { Tensor: { fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } } } },
        },
        OperatorSetIdProto: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
      },
    },
  },
};

const ModelProto = protobuf.Root.fromJSON(ONNX_SCHEMA).lookupType('onnx.ModelProto');

/** TensorProto.DataType values (FLOAT also for Cast's `to`) and AttributeProto.AttributeType values used here. */
export const FLOAT = 1;
const INT64 = 7;
const ATTR = { INT: 2, STRING: 3, INTS: 7 } as const;

/** ONNX IR version 8 and the default domain's opset 17: what ONNX Runtime 1.14 and later run. */
const IR_VERSION = 8;
const OPSET = 17;

/** Attribute values: integers, integer lists and strings (the graphs here need no float attributes). */
export type AttrValue = number | string | number[];
export type Attrs = Record<string, AttrValue>;

/** A dimension: a size, or the name of one given at run time (the microbatch's). */
export type Dim = number | string;

function attribute(name: string, value: AttrValue): Record<string, unknown> {
  if (typeof value === 'string') return { name, type: ATTR.STRING, s: Buffer.from(value) };
  if (Array.isArray(value)) return { name, type: ATTR.INTS, ints: value };
  return { name, type: ATTR.INT, i: value };
}

function valueInfo(name: string, dims: Dim[]): Record<string, unknown> {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim } } } };
}

/** A graph under construction: value names are made unique by the builder. */
export class Graph {
  private readonly nodes: Record<string, unknown>[] = [];
  private readonly initializers: Record<string, unknown>[] = [];
  private readonly inputs: Record<string, unknown>[] = [];
  private readonly outputs: Record<string, unknown>[] = [];
  private next = 0;

  /** A float32 graph input. */
  input(name: string, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  /** Marks `value` as the graph output `name` (an Identity when the names differ). */
  output(value: string, name: string, dims: Dim[]): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `out_${name}` });
    this.outputs.push(valueInfo(name, dims));
  }

  /** A constant float32 tensor. */
  constFloat(values: ArrayLike<number>, dims: number[]): string {
    const data = Float32Array.from(values);
    return this.constant(FLOAT, Buffer.from(data.buffer, data.byteOffset, data.byteLength), dims);
  }

  /** A constant int64 tensor (shapes, axes, pads). */
  constInt64(values: number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.constant(INT64, Buffer.from(data.buffer), [values.length]);
  }

  private constant(dataType: number, rawData: Buffer, dims: number[]): string {
    const name = `const${this.next++}`;
    this.initializers.push({ name, dataType, dims, rawData });
    return name;
  }

  /** One node with one output; returns the output's name. */
  op(opType: string, input: string[], attrs: Attrs = {}): string {
    return this.opOutputs(opType, input, 1, attrs)[0];
  }

  /** One node with `count` outputs; returns their names. */
  opOutputs(opType: string, input: string[], count: number, attrs: Attrs = {}): string[] {
    const name = `${opType.toLowerCase()}${this.next++}`;
    const output = Array.from({ length: count }, (_, i) => (i === 0 ? name : `${name}_${i}`));
    const attributes = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    this.nodes.push({ opType, input, output, name, attribute: attributes });
    return output;
  }

  /** The serialised ModelProto. */
  encode(name: string): Uint8Array {
    const model = {
      irVersion: IR_VERSION,
      producerName: 'lenet-dist',
      opsetImport: [{ domain: '', version: OPSET }],
      graph: { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    };
    const err = ModelProto.verify(model);
    if (err) throw new Error(`ONNX model '${name}': ${err}`);
    return ModelProto.encode(ModelProto.fromObject(model)).finish();
  }
}
