using System.Text;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// The machine's fp32 matrix-product ceiling, measured two ways in turns: libtorch's product (what SharpTune
/// runs) and ONNX Runtime's MatMul (MLAS, its own kernels, no MKL). Fractions are stated against the higher
/// one, so a slow BLAS path can never make our own library the yardstick.
/// </summary>
public static class MatmulCeiling
{
    public sealed record Result(double LibTorchFlops, double OnnxRuntimeFlops)
    {
        public double Best => Math.Max(LibTorchFlops, OnnxRuntimeFlops);
        public string BestEngine => LibTorchFlops >= OnnxRuntimeFlops ? "libtorch" : "onnxruntime";
        public Result Max(Result other) => new(Math.Max(LibTorchFlops, other.LibTorchFlops), Math.Max(OnnxRuntimeFlops, other.OnnxRuntimeFlops));
    }

    /// <summary>libtorch's FLOP/s for an (m x k) by (k x n) product in <paramref name="type"/>: the best of <paramref name="repeats"/> after a warm-up.</summary>
    public static double Flops(int m, int k, int n, ScalarType type, int repeats)
    {
        using var a = randn(m, k).to(type);
        using var b = randn(k, n).to(type);
        double seconds = Timing.Seconds(() => { using var c = a.matmul(b); }, repeats);
        return 2.0 * m * k * n / seconds;
    }

    public static Result MeasureFp32(int size, int threads, int rounds)
    {
        using var a = randn(size, size);
        using var b = randn(size, size);
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        using var session = new InferenceSession(MatMulModel(size), options);
        float[] aData = a.data<float>().ToArray(), bData = b.data<float>().ToArray();
        long[] shape = [size, size];
        using var aValue = OrtValue.CreateTensorValueFromMemory(aData, shape);
        using var bValue = OrtValue.CreateTensorValueFromMemory(bData, shape);
        using var run = new RunOptions();
        var inputs = new Dictionary<string, OrtValue> { ["A"] = aValue, ["B"] = bValue };
        var best = Timing.Interleaved(rounds,
            () => { using var c = a.matmul(b); },
            () => { using var outputs = session.Run(run, inputs, ["C"]); });
        double flops = 2.0 * size * size * size;
        return new Result(flops / best[0], flops / best[1]);
    }

    /// <summary>An ONNX model (IR 8, opset 17) computing C = MatMul(A, B) for float (size x size) inputs.</summary>
    static byte[] MatMulModel(int size)
    {
        byte[] Value(string name) => Proto(w =>
        {
            w.Text(1, name);
            w.Message(2, type => type.Message(1, tensor =>
            {
                tensor.Varint(1, 1);                                                // elem_type FLOAT
                tensor.Message(2, shape => { shape.Message(1, d => d.Varint(1, size)); shape.Message(1, d => d.Varint(1, size)); });
            }));
        });
        return Proto(model =>
        {
            model.Varint(1, 8);                                                     // ir_version
            model.Message(8, opset => opset.Text(1, "").Varint(2, 17));             // opset_import
            model.Message(7, graph =>
            {
                graph.Message(1, node => node.Text(1, "A").Text(1, "B").Text(2, "C").Text(3, "matmul").Text(4, "MatMul"));
                graph.Text(2, "ceiling");
                graph.Bytes(11, Value("A")).Bytes(11, Value("B")).Bytes(12, Value("C"));
            });
        });
    }

    static byte[] Proto(Action<ProtoBuilder> write)
    {
        var builder = new ProtoBuilder();
        write(builder);
        return builder.Stream.ToArray();
    }

    /// <summary>The few protobuf encodings the model above needs: varints and length-delimited fields.</summary>
    sealed class ProtoBuilder
    {
        public readonly MemoryStream Stream = new();

        public ProtoBuilder Varint(int field, long value) { Raw(((ulong)field << 3) | 0); Raw((ulong)value); return this; }
        public ProtoBuilder Bytes(int field, byte[] value) { Raw(((ulong)field << 3) | 2); Raw((ulong)value.Length); Stream.Write(value); return this; }
        public ProtoBuilder Text(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));
        public ProtoBuilder Message(int field, Action<ProtoBuilder> write) => Bytes(field, Proto(write));

        void Raw(ulong value)
        {
            for (; value >= 0x80; value >>= 7) Stream.WriteByte((byte)(value | 0x80));
            Stream.WriteByte((byte)value);
        }
    }
}
