using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders.Common;
using static TorchSharp.torch;

namespace SharpTune.Models.Memory;

/// <summary>What trains in a step, and how, as the memory estimate needs it.</summary>
/// <param name="TrainableParameters">Parameters that get gradients and optimizer state (held in fp32).</param>
/// <param name="TrainableAreExtra">The trained parameters are added to the base (adapters, prompt modules) rather than part of its weights.</param>
/// <param name="OptimizerStates">fp32 values the optimizer keeps per trained parameter: AdamW and Adam 2, SGD with momentum 1.</param>
/// <param name="BaseTrains">Whole base layers train (full fine-tuning, freeze:K): their backward holds weight-gradient temporaries too.</param>
/// <param name="ChunkedLoss">The language-model loss runs over 32 MiB chunks of logits (every method but the prompt ones).</param>
public sealed record TrainingLoad(
    long TrainableParameters, bool TrainableAreExtra, int OptimizerStates, int Batch, int Length,
    bool Checkpointing, bool ChunkedLoss, bool BaseTrains);

/// <summary>
/// Memory estimates from a model's shape (its config, or a GGUF header's tensor types and shapes) before any weight is
/// read, calibrated against measured peaks (docs/decoders.md, "Memory when fine-tuning" and "Memory when loading").
/// </summary>
/// <remarks>
/// Calibration against peak resident sets measured with Qwen2.5-0.5B's shapes at 4 x 512 tokens (bench decoder-memory;
/// measured, then estimated): LoRA r8 on every projection over a bf16 base with checkpointing 3,305 MB, 3,476 (+5.2 %);
/// the same with whole fp32 logits 9,163, 8,943 (-2.4 %); without checkpointing 8,025, 8,233 (+2.6 %); LoRA over fp32
/// 9,745, 9,981 (+2.4 %); full fine-tuning 17,218, 17,359 (+0.8 %). Loading: 1.09 to 1.22 times the weights with the runtime
/// (decoder-load), and a Qwen2.5-7B Q4_0 file generating in bf16 peaked at 15.3 GiB (estimated 15.9). The tests hold each
/// within 6 %. Tiny models are mostly runtime (a 2-layer llama: generate 191 MB measured, 201 estimated; a LoRA step 222,
/// 202). Encoders are not calibrated: minilm's default run (full, 16 x 128 tokens) peaked at 2,129 MB against 1,670
/// estimated, its ONNX import's transient not counted.
/// </remarks>
public static class MemoryEstimator
{
    /// <summary>The process before any model: .NET, libtorch and MKL, the tokenizer (151 MB measured by decoder-load, rounded up).</summary>
    public const long RuntimeBytes = 200_000_000;

    /// <summary>What loading adds over the weights: one 8 MB chunk being decoded, allocator slack (measured 1.02 to 1.07x).</summary>
    const double LoadOverhead = 0.05;

    /// <summary>
    /// Saved activations per token and layer, in units of the hidden size and the feed-forward width, at 4 bytes each:
    /// fitted to the measured fp32 LoRA step (7.6 GB over 2,048 tokens x 24 layers at H 896, I 4,864). It covers the
    /// layer's saved tensors, the adapters' fp32 inputs and what glibc's heap keeps between them.
    /// </summary>
    const int PerHidden = 16, PerIntermediate = 5;

    /// <summary>A bf16 base keeps activations in 0.9 of fp32's room: most of what a step holds (LoRA's fp32 inputs, the norms' and rotary's fp32 math) stays fp32 (measured 6.8 GB against 7.6).</summary>
    const double Bf16ActivationShare = 0.9;

    /// <summary>Checkpointing keeps each layer's input and at a time the layers recomputed in the backward pass: seven layers' activations measured (heap slack included), at most the model's layers.</summary>
    const int CheckpointedLayersHeld = 7;

    /// <summary>Full fine-tuning's backward holds each product's weight gradient beside the activations: 1.2 times LoRA's (measured).</summary>
    const double BaseTrainingActivationShare = 1.2;

    /// <summary>The chunked loss: a 32 MiB chunk of logits, its softmax and gradient products (CausalLmLoss.DefaultChunkBytes).</summary>
    const long ChunkedLossBytes = 4L * 32 * 1024 * 1024;

    /// <summary>Whole fp32 logits, their log-softmax and the gradients of both, with slack: 4.5 copies of (tokens x vocabulary) fp32 (measured 5.9 GB at 2,048 x 151,936).</summary>
    const double FullLogitsCopies = 4.5;

    /// <summary>Bytes of one element of <paramref name="dtype"/>.</summary>
    public static int ElementBytes(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Int16 => 2,
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new ArgumentException($"no element size known for {dtype}"),
    };

    /// <summary>
    /// Bytes one GGUF tensor takes once loaded as <paramref name="dtype"/> (dequantized: every element in that dtype).
    /// The per-tensor seam: a loader that keeps quantized blocks as stored counts <see cref="StoredBytes"/> for them instead
    /// and passes its own function to <see cref="WeightBytes(GgufModelMap, Func{GgufTensorInfo, long})"/>.
    /// </summary>
    public static long WeightBytes(GgufTensorInfo tensor, ScalarType dtype) => tensor.Shape.Aggregate(1L, (a, d) => a * d) * ElementBytes(dtype);

    /// <summary>Bytes of a GGUF tensor as stored in the file (its blocks, for a quantized type).</summary>
    public static long StoredBytes(GgufTensorInfo tensor) => tensor.ByteSize;

    /// <summary>The model's weights from a GGUF header: every tensor the model reads, counted by <paramref name="bytesOf"/>; no data is read.</summary>
    public static long WeightBytes(GgufModelMap map, Func<GgufTensorInfo, long> bytesOf) =>
        map.Tensors.Sum(m => bytesOf(map.File.GetTensor(m.GgufName)));

    /// <summary>
    /// The weights of a GGUF file read with <c>--dtype stored</c>: its matrices at their stored size (the mapped file's
    /// pages), vectors (norms, biases) in float32.
    /// </summary>
    public static long StoredWeightBytes(GgufModelMap map) => WeightBytes(map, t => t.Shape.Length == 2 ? StoredBytes(t) : WeightBytes(t, ScalarType.Float32));

    /// <summary>The model's weights from a GGUF header, each tensor in <paramref name="dtype"/>.</summary>
    public static long WeightBytes(GgufModelMap map, ScalarType dtype) => WeightBytes(map, t => WeightBytes(t, dtype));

    /// <summary>
    /// The weights of the model at <paramref name="model"/> in <paramref name="dtype"/>: from the tensors of a .gguf file's
    /// header, else from the config's <paramref name="shape"/>.
    /// </summary>
    public static long WeightBytes(string model, IBackboneShape shape, ScalarType dtype) =>
        File.Exists(model) && model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
            ? WeightBytes(GgufModelMap.Open(model), dtype)
            : WeightBytes(shape, dtype);

    /// <summary>The weights of a model of this shape in <paramref name="dtype"/>, from its config.</summary>
    public static long WeightBytes(IBackboneShape shape, ScalarType dtype) => ParameterCount(shape) * ElementBytes(dtype);

    /// <summary>
    /// The weights of a model of this shape quantized on load into blocks of <paramref name="type"/>: every matrix whose
    /// rows are whole blocks at the block's size, the rest (and norms, biases, learned positions) in float32.
    /// </summary>
    public static long QuantizedWeightBytes(IBackboneShape shape, GgufTensorType type)
    {
        int block = GgufTensorTypes.BlockSize(type);
        long Matrix(long rows, long columns) => columns % block == 0 ? rows * (columns / block) * GgufTensorTypes.BlockBytes(type) : rows * columns * 4;
        long h = shape.HiddenSize;
        long linears = shape.LinearSites.Sum(s => Matrix(s.OutFeatures, s.InFeatures) + (s.Bias ? 4L * s.OutFeatures : 0));
        bool tied = shape is not IDecoderConfig decoder || decoder.Info.TiedEmbeddings;
        long embeddings = Matrix(shape.Vocabulary, h) * (tied ? 1 : 2);
        long rest = ParameterCount(shape) - shape.LinearSites.Sum(s => (long)s.InFeatures * s.OutFeatures + (s.Bias ? s.OutFeatures : 0))
                    - (long)shape.Vocabulary * h * (tied ? 1 : 2);
        return linears + embeddings + rest * 4;
    }

    /// <summary>
    /// Parameters of a model of this shape, from its config: every Linear layer, the token embeddings, an untied output
    /// head, learned positions (GPT-2, BERT) and the norms.
    /// </summary>
    public static long ParameterCount(IBackboneShape shape)
    {
        long h = shape.HiddenSize;
        long linears = shape.LinearSites.Sum(s => (long)s.InFeatures * s.OutFeatures + (s.Bias ? s.OutFeatures : 0));
        long embeddings = (long)shape.Vocabulary * h;
        bool tied = shape is not IDecoderConfig decoder || decoder.Info.TiedEmbeddings;
        long positions = (long)shape.LearnedPositions * h;
        // LayerNorm (GPT-2, BERT) has a weight and a bias, RMSNorm (Llama, Qwen2) a weight: two per layer and one more.
        long norms = (shape.NormsHaveBias ? 2 : 1) * h * (2L * shape.LayerCount + 1);
        return linears + embeddings * (tied ? 1 : 2) + positions + norms;
    }

    /// <summary>
    /// Inference (generate, chat, perplexity, predict, export): the weights as loaded, plus a forward pass over
    /// <paramref name="batch"/> sequences of <paramref name="tokens"/>: the key/value cache, the layer's working tensors
    /// and the fp32 logits.
    /// </summary>
    /// <param name="mapped">The weights are a memory-mapped file's pages (<c>--dtype stored</c>): no copy is made while loading.</param>
    public static MemoryEstimate Inference(IBackboneShape shape, long weightBytes, ScalarType dtype, int batch, int tokens, bool mapped = false)
    {
        long n = (long)batch * tokens, h = shape.HiddenSize, e = ElementBytes(dtype);
        long cache = shape is IDecoderConfig ? 2L * shape.LayerCount * shape.KeyValueHeadCount * shape.HeadSize * e * n : 0;
        long working = n * (4 * h + 2 * Intermediate(shape)) * e;
        long logits = shape is IDecoderConfig ? 2 * n * shape.Vocabulary * 4 : 0;   // the fp32 logits and one working copy (log-softmax, sampling)
        long load = mapped ? 0 : (long)(weightBytes * LoadOverhead);
        return new MemoryEstimate(weightBytes, 0, 0, load + cache + working + logits, RuntimeBytes);
    }

    /// <summary>
    /// A training step: the weights as held (<paramref name="baseDtype"/>), fp32 gradients and optimizer state for what
    /// trains (and the trained parameters themselves when they are added), the activations at the batch and length (with
    /// checkpointing or not), and the loss's logits (chunked or whole).
    /// </summary>
    public static MemoryEstimate Training(IBackboneShape shape, long weightBytes, ScalarType baseDtype, TrainingLoad load)
    {
        long tokens = (long)load.Batch * load.Length, h = shape.HiddenSize, layers = shape.LayerCount;
        double share = baseDtype == ScalarType.Float32 ? 1 : Bf16ActivationShare;
        double perTokenLayer = 4 * share * (PerHidden * h + PerIntermediate * Intermediate(shape));
        // Encoders run attention with dropout through the reference math: scores, probabilities and dropped copies fp32, and the mask.
        if (shape.AttentionScoresHeld) perTokenLayer += 13.0 * shape.AttentionHeads * load.Length;
        double activations = load.Checkpointing
            ? tokens * layers * h * ElementBytes(baseDtype) + Math.Min(CheckpointedLayersHeld, layers) * tokens * perTokenLayer
            : tokens * layers * perTokenLayer * (load.BaseTrains ? BaseTrainingActivationShare : 1);
        double wholeLogits = FullLogitsCopies * tokens * shape.Vocabulary * 4;   // a batch smaller than one chunk is one chunk
        double loss = shape is not IDecoderConfig ? 0 : load.ChunkedLoss ? Math.Min(ChunkedLossBytes, wholeLogits) : wholeLogits;
        long trained = load.TrainableParameters * 4;
        return new MemoryEstimate(weightBytes + (load.TrainableAreExtra ? trained : 0), trained, trained * load.OptimizerStates,
            (long)(activations + loss), RuntimeBytes);
    }

    /// <summary>The feed-forward width: the widest Linear output of a layer.</summary>
    static long Intermediate(IBackboneShape shape) => shape.LinearSites.Count == 0 ? 4L * shape.HiddenSize
        : shape.LinearSites.Max(s => Math.Max(s.InFeatures, s.OutFeatures) == shape.Vocabulary ? 0 : Math.Max(s.InFeatures, s.OutFeatures));
}
