using LLama;
using LLama.Common;
using LLama.Native;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// llama.cpp (through LLamaSharp) on a GGUF file: one decode of a whole prompt, and greedy generation with one decode
/// per token, as its own tools run them. F32 key/value cache and no flash attention, as SharpTune's cache and
/// attention are plain fp32 (or the weights' dtype).
/// </summary>
public sealed class LlamaCppEngine : IDisposable
{
    static LlamaCppEngine()
    {
        NativeApi.llama_empty_call();                                           // loads the native library before any other call
        NativeLogConfig.llama_log_set((level, message) => { });
    }

    readonly LLamaWeights weights;
    readonly LLamaContext context;
    readonly LLamaBatch batch = new();

    public LlamaCppEngine(string path, int contextSize, int batchSize, int threads)
    {
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextSize, BatchSize = (uint)batchSize, UBatchSize = (uint)batchSize,
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, Threads = threads, BatchThreads = threads,
            FlashAttention = false,
        };
        weights = LLamaWeights.LoadFromFile(parameters);
        context = weights.CreateContext(parameters);
    }

    /// <summary>Writes a Q4_K_M copy of <paramref name="source"/> with llama.cpp's quantizer, unless it exists.</summary>
    public static void QuantizeQ4KM(string source, string destination, int threads)
    {
        if (File.Exists(destination)) return;
        string partial = destination + ".partial";
        if (!LLamaQuantizer.Quantize(source, partial, LLamaFtype.MOSTLY_Q4_K_M, threads, allowRequantize: true, quantizeOutputTensor: true))
            throw new InvalidOperationException($"llama.cpp could not quantize {source} to Q4_K_M");
        File.Move(partial, destination);
    }

    /// <summary>Processes <paramref name="tokens"/> from an empty cache in one decode; logits of the last position only, as llama.cpp does for a prompt.</summary>
    public void Prompt(IReadOnlyList<int> tokens)
    {
        context.NativeHandle.MemoryClear(true);
        batch.Clear();
        for (int i = 0; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, logits: i == tokens.Count - 1);
        Decode();
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/>: <paramref name="count"/> tokens, one decode of the prompt then one per token.</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int count)
    {
        Prompt(prompt);
        var output = new List<int>(count);
        int position = prompt.Count;
        while (true)
        {
            int next = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            output.Add(next);
            if (output.Count == count) return output;
            batch.Clear();
            batch.Add((LLamaToken)next, position++, LLamaSeqId.Zero, logits: true);
            Decode();
        }
    }

    void Decode()
    {
        var status = context.Decode(batch);
        if (status != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {status}");
    }

    static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    public void Dispose()
    {
        context.Dispose();
        weights.Dispose();
    }
}
