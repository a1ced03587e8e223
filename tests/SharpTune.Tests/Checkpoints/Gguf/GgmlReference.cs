using System.Runtime.InteropServices;
using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Tests.Checkpoints.Gguf;

/// <summary>
/// ggml's own quantizer and dequantizer, called in the libggml-base that LLamaSharp loads
/// (ggml_quantize_chunk and ggml_get_type_traits(type)->to_float), as an exact reference.
/// </summary>
static class GgmlReference
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate nuint QuantizeChunk(int type, float[] src, byte[] dst, long start, long rows, long perRow, IntPtr imatrix);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate IntPtr GetTypeTraits(int type);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void ToFloat(byte[] x, float[] y, long k);

    static readonly Lazy<IntPtr> Library = new(() =>
    {
        LLama.Native.NativeApi.llama_empty_call();
        // libllama pulled libggml-base in beside it; find that exact file so both share one copy.
        string path = File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Last())
            .First(p => p.EndsWith("/libggml-base.so", StringComparison.Ordinal));
        return NativeLibrary.Load(path);
    });

    static T Export<T>(string name) where T : Delegate => Marshal.GetDelegateForFunctionPointer<T>(NativeLibrary.GetExport(Library.Value, name));

    /// <summary>Quantizes <paramref name="rows"/> rows of <paramref name="perRow"/> floats as ggml does (no importance matrix).</summary>
    public static byte[] Quantize(GgufTensorType type, float[] values, long rows, long perRow)
    {
        var dst = new byte[values.Length / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type)];
        nuint written = Export<QuantizeChunk>("ggml_quantize_chunk")((int)type, values, dst, 0, rows, perRow, IntPtr.Zero);
        Assert.Equal((nuint)dst.Length, written);
        return dst;
    }

    /// <summary>ggml's to_float for <paramref name="type"/> over whole blocks.</summary>
    public static float[] Dequantize(GgufTensorType type, byte[] blocks)
    {
        IntPtr traits = Export<GetTypeTraits>("ggml_get_type_traits")((int)type);
        // struct ggml_type_traits { const char* type_name; int64 blck_size; int64 blck_size_interleave;
        //                           size_t type_size; bool is_quantized; to_float; from_float_ref; }
        Assert.Equal(type.ToString(), Marshal.PtrToStringUTF8(Marshal.ReadIntPtr(traits, 0)), ignoreCase: true);
        Assert.Equal(GgufTensorTypes.BlockSize(type), Marshal.ReadInt64(traits, 8));
        Assert.Equal(GgufTensorTypes.BlockBytes(type), Marshal.ReadInt64(traits, 24));
        var toFloat = Marshal.GetDelegateForFunctionPointer<ToFloat>(Marshal.ReadIntPtr(traits, 40));
        var result = new float[blocks.Length / GgufTensorTypes.BlockBytes(type) * GgufTensorTypes.BlockSize(type)];
        toFloat(blocks, result, result.Length);
        return result;
    }
}
