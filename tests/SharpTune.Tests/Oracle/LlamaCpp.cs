using LLama;
using LLama.Common;
using LLama.Native;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// llama.cpp (through LLamaSharp) on a GGUF file, as an independent implementation: the tests check SharpTune's
/// decoders against it, and the decoder-speed bench (which compiles this file in) times it. F32 key/value cache and
/// no flash attention, as SharpTune's cache and attention are plain fp32 (its CPU flash attention rounds queries to f16).
/// </summary>
sealed class LlamaCpp : IDisposable
{
    static LlamaCpp()
    {
        NativeApi.llama_empty_call();                                           // loads the native library before any other call
        NativeLogConfig.llama_log_set((level, message) => { });
    }

    readonly LLamaWeights weights;
    readonly LLamaContext context;
    readonly LLamaBatch batch = new();

    /// <param name="adapter">A LoRA adapter GGUF applied at scale 1, as <c>llama-cli --lora</c> does.</param>
    public LlamaCpp(string path, int contextSize = 256, int? batchSize = null, int threads = 2, string? adapter = null)
    {
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextSize, BatchSize = (uint)(batchSize ?? contextSize), UBatchSize = (uint)(batchSize ?? contextSize),
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, Threads = threads, BatchThreads = threads,
            FlashAttention = false,
        };
        weights = LLamaWeights.LoadFromFile(parameters);
        context = weights.CreateContext(parameters);
        if (adapter is not null) context.NativeHandle.SetLoraAdapters([(weights.NativeHandle.LoadLoraFromFile(adapter), 1f)]);
    }

    public int VocabSize => weights.Vocab.Count;

    /// <summary>llama.cpp's own quantizer; throws when it refuses.</summary>
    public static void Quantize(string source, string destination, LLamaFtype type, int threads = 2)
    {
        if (!LLamaQuantizer.Quantize(source, destination, type, threads, allowRequantize: true, quantizeOutputTensor: true))
            throw new InvalidOperationException($"llama.cpp could not quantize {source} to {type}");
    }

    /// <summary>Logits of every position, (T, V), from one decode of the whole sequence.</summary>
    public float[][] Logits(IReadOnlyList<int> tokens)
    {
        Decode(tokens, allLogits: true);
        return Enumerable.Range(0, tokens.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <summary>Perplexity of <paramref name="tokens"/> (every position after the first) from one decode of the whole sequence.</summary>
    public double Perplexity(IReadOnlyList<int> tokens)
    {
        var logits = Logits(tokens);
        double nll = 0;
        for (int t = 0; t + 1 < tokens.Count; t++)
        {
            double max = logits[t].Max(), sum = logits[t].Sum(v => Math.Exp(v - max));
            nll -= logits[t][tokens[t + 1]] - max - Math.Log(sum);
        }
        return Math.Exp(nll / (tokens.Count - 1));
    }

    /// <summary>Processes <paramref name="tokens"/> from an empty cache in one decode; logits of the last position only, as llama.cpp does for a prompt.</summary>
    public void Prompt(IReadOnlyList<int> tokens) => Decode(tokens, allLogits: false);

    /// <summary>Greedy continuation of <paramref name="prompt"/>: one decode of the prompt, then one per token, as llama.cpp's own generation runs.</summary>
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

    /// <summary>llama.cpp's own tokenizer.</summary>
    public int[] Tokenize(string text, bool addBos, bool special) =>
        context.Tokenize(text, addBos, special).Select(t => (int)t).ToArray();

    void Decode(IReadOnlyList<int> tokens, bool allLogits)
    {
        context.NativeHandle.MemoryClear(true);
        batch.Clear();
        for (int i = 0; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, logits: allLogits || i == tokens.Count - 1);
        Decode();
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
