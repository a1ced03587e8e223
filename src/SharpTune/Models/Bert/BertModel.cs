using SharpTune.Models.Common;
using SharpTune.Distributed;
using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>The stack of transformer blocks: HF <c>BertEncoder</c> (keys <c>encoder.layer.{i}.*</c>).</summary>
public sealed class BertEncoder : nn.Module
{
    readonly ModuleList<BertLayer> layer;

    public BertEncoder(BertConfig config, LinearFactory linears) : base(nameof(BertEncoder))
    {
        layer = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => new BertLayer(config, linears, $"encoder.layer.{i}")).ToArray());
        RegisterComponents();
    }

    public IReadOnlyList<BertLayer> Layers => layer.ToList();

    public Tensor forward(Tensor hidden, Tensor? additiveMask, IReadOnlyList<KeyValuePrefix>? prefixes)
    {
        for (int i = 0; i < layer.Count; i++)
            hidden = layer[i].forward(LayerBoundary.Enter(hidden, layer[i]), additiveMask, prefixes?[i]);   // backward's "layer done" signal
        return hidden;
    }
}

/// <summary>Dense + tanh over the first token: HF <c>BertPooler</c> (keys <c>pooler.dense.*</c>).</summary>
public sealed class BertPooler : nn.Module
{
    readonly nn.Module<Tensor, Tensor> dense;

    public BertPooler(BertConfig config, LinearFactory linears) : base(nameof(BertPooler))
    {
        dense = linears(new LinearSite("pooler.dense", config.HiddenSize, config.HiddenSize));
        RegisterComponents();
    }

    /// <param name="first">(B, H): the hidden state of the [CLS] token.</param>
    /// <returns>(B, H) in the dtype of <paramref name="first"/> (a bf16 product's result is brought back for the head).</returns>
    public Tensor forward(Tensor first) => dense.forward(first).tanh().to(first.dtype);
}

/// <summary>The encoder's outputs: every token's last hidden state and, where the model has a pooler, the pooled [CLS].</summary>
/// <param name="LastHiddenState">(B, T, H)</param>
/// <param name="PooledOutput">(B, H), or null for a model without pooler.</param>
public sealed record BertOutput(Tensor LastHiddenState, Tensor? PooledOutput) : IDisposable
{
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PooledOutput?.Dispose();
    }
}

/// <summary>
/// A BERT encoder whose <c>state_dict()</c> keys are exactly Hugging Face's <c>BertModel</c> keys.
/// Besides token ids it accepts <c>inputs_embeds</c> (input-side prompts) and a per-layer key/value
/// prefix (prefix tuning, P-tuning v2), so every parameter-efficient method plugs in without touching it.
/// </summary>
public sealed class BertModel : nn.Module
{
    readonly BertEmbeddings embeddings;
    readonly BertEncoder encoder;
    readonly BertPooler? pooler;

    /// <param name="config">The architecture.</param>
    /// <param name="addPoolingLayer">Whether the model has HF's pooler (dense + tanh over [CLS]).</param>
    /// <param name="linears">Creates every Linear layer by its module path; parameter-efficient methods wrap them here.</param>
    public BertModel(BertConfig config, bool addPoolingLayer = true, LinearFactory? linears = null) : base(nameof(BertModel))
    {
        Config = config.Validate();
        linears ??= LinearFactories.Plain;
        embeddings = new BertEmbeddings(config);
        encoder = new BertEncoder(config, linears);
        if (addPoolingLayer) pooler = new BertPooler(config, linears);
        RegisterComponents();
    }

    public BertConfig Config { get; }

    public BertEmbeddings Embeddings => embeddings;

    public BertEncoder Encoder => encoder;

    public bool HasPooler => pooler is not null;

    /// <summary>Runs the encoder.</summary>
    /// <param name="inputIds">(B, T) int64, or null when <paramref name="inputsEmbeds"/> is given.</param>
    /// <param name="attentionMask">(B, T): 1 for real tokens, 0 for padding; null means all real.</param>
    /// <param name="tokenTypeIds">(B, T) int64, or null for all zeros.</param>
    /// <param name="inputsEmbeds">(B, T, H) embeddings used instead of looking up <paramref name="inputIds"/>.</param>
    /// <param name="prefixes">One key/value prefix per layer, each (B, N, P, D); the mask gets P ones in front for them.</param>
    /// <param name="poolPosition">The position the pooler reads: 0 ([CLS]), or P when P prompt vectors stand in front of it.</param>
    public BertOutput forward(
        Tensor? inputIds,
        Tensor? attentionMask = null,
        Tensor? tokenTypeIds = null,
        Tensor? inputsEmbeds = null,
        IReadOnlyList<KeyValuePrefix>? prefixes = null,
        int poolPosition = 0)
    {
        using var scope = NewDisposeScope();
        if ((inputIds is null) == (inputsEmbeds is null))
            throw new ArgumentException("Give exactly one of input ids and input embeddings.");
        if (prefixes is not null && prefixes.Count != Config.NumHiddenLayers)
            throw new ArgumentException($"Expected {Config.NumHiddenLayers} layer prefixes, got {prefixes.Count}.");

        var hidden = embeddings.forward(inputIds, tokenTypeIds, inputsEmbeds); // (B, T, H)
        var mask = AdditiveMask(attentionMask, hidden, prefixes);
        hidden = encoder.forward(hidden, mask, prefixes);
        var pooled = pooler?.forward(hidden[.., poolPosition]);
        return new BertOutput(hidden.MoveToOuterDisposeScope(), pooled?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// (B, T) keep-mask → (B, 1, 1, P+T) additive mask: 0 where attended, the dtype's minimum elsewhere
    /// (as HF does, so a fully masked row still yields finite values). Prefix positions are always attended.
    /// </summary>
    static Tensor? AdditiveMask(Tensor? attentionMask, Tensor hidden, IReadOnlyList<KeyValuePrefix>? prefixes)
    {
        if (attentionMask is null && prefixes is null) return null;
        long batch = hidden.shape[0], length = hidden.shape[1];
        var keep = attentionMask ?? ones(batch, length, ScalarType.Int64, hidden.device);
        if (keep.shape.Length != 2 || keep.shape[0] != batch || keep.shape[1] != length)
            throw new ArgumentException($"attention mask has shape [{string.Join(", ", keep.shape)}], expected [{batch}, {length}].");
        // Without padding the mask changes nothing; leaving it out lets SDPA take its faster unmasked kernel.
        if (prefixes is null && !keep.eq(0).any().item<bool>()) return null;
        if (prefixes is { Count: > 0 })
        {
            long prefixLength = prefixes[0].Key.shape[2];
            keep = cat([ones(batch, prefixLength, keep.dtype, keep.device), keep], 1); // (B, P+T)
        }
        var blocked = keep.eq(0).to(hidden.dtype) * TorchSharp.torch.finfo(hidden.dtype).min;
        return blocked.view(batch, 1, 1, -1);
    }
}
