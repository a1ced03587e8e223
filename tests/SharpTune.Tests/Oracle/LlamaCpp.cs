using LLama;
using LLama.Common;
using LLama.Native;

namespace SharpTune.Tests.Oracle;

/// <summary>llama.cpp (through LLamaSharp) as an independent implementation to check SharpTune's decoders against.</summary>
sealed class LlamaCpp : IDisposable
{
    static LlamaCpp()
    {
        NativeApi.llama_empty_call();
        NativeLogConfig.llama_log_set((level, message) => { });
    }

    readonly LLamaWeights weights;
    readonly LLamaContext context;

    public LlamaCpp(string path, int contextSize = 256)
    {
        // F32 key/value cache: the default f16 cache would round what we compare.
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextSize, BatchSize = (uint)contextSize, UBatchSize = (uint)contextSize,
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, Threads = 2, BatchThreads = 2,
            // Flash attention on the CPU converts queries to f16; the reference path keeps fp32 throughout.
            FlashAttention = false,
        };
        weights = LLamaWeights.LoadFromFile(parameters);
        context = weights.CreateContext(parameters);
    }

    public int VocabSize => weights.Vocab.Count;

    /// <summary>Logits of every position, (T, V), from one decode of the whole sequence.</summary>
    public float[][] Logits(IReadOnlyList<int> tokens)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, logits: true);
        var status = context.Decode(batch);
        if (status != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {status}");
        return Enumerable.Range(0, tokens.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <summary>Greedy continuation, one decode per new token, as llama.cpp's own generation runs.</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int count)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Count; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, logits: i == prompt.Count - 1);
        if (context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp decode failed");
        var output = new List<int>();
        int position = prompt.Count;
        for (int step = 0; step < count; step++)
        {
            var logits = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1);
            int next = ArgMax(logits);
            output.Add(next);
            batch.Clear();
            batch.Add((LLamaToken)next, position++, LLamaSeqId.Zero, logits: true);
            if (context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp decode failed");
        }
        return output;
    }

    /// <summary>llama.cpp's own tokenizer.</summary>
    public int[] Tokenize(string text, bool addBos, bool special) =>
        context.Tokenize(text, addBos, special).Select(t => (int)t).ToArray();

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
