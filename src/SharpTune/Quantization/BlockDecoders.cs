using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Quantization;

/// <summary>One row of blocks to fp32, bit for bit as ggml's dequantize_row_* (and <see cref="GgufDequantize"/>).</summary>
static unsafe class BlockDecoders
{
    public static void Row(GgufTensorType type, ReadOnlySpan<byte> blocks, float* dst, int columns) =>
        GgufDequantize.Blocks(type, blocks, new Span<float>(dst, columns));
}
