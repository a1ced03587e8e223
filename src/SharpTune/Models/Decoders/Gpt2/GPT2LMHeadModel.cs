using System.Text.Json.Nodes;
using SharpTune.Distributed;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>Token and learned position embeddings, the blocks and the final LayerNorm: HF <c>GPT2Model</c> (keys <c>transformer.*</c>).</summary>
public sealed class Gpt2Model : nn.Module
{
    readonly nn.Module<Tensor, Tensor> wte; // nn.Embedding, or a StoredEmbedding over a file's blocks
    readonly Embedding wpe;
    readonly ModuleList<Gpt2Block> h;
    readonly LayerNorm ln_f;
    readonly Gpt2Config config;

    public Gpt2Model(Gpt2Config config, LinearFactory linears, QuantizedMatrix? storedEmbedding = null) : base(nameof(Gpt2Model))
    {
        wte = storedEmbedding is null ? nn.Embedding(config.VocabSize, config.NEmbd) : new StoredEmbedding(storedEmbedding);
        wpe = nn.Embedding(config.NPositions, config.NEmbd);
        h = nn.ModuleList(Enumerable.Range(0, config.NLayer).Select(i => new Gpt2Block(config, i, linears)).ToArray());
        ln_f = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        this.config = config;
        RegisterComponents();
    }

    /// <summary>The token embedding matrix (V, E), which the tied language-model head shares.</summary>
    public Parameter EmbeddingWeight => (wte as Embedding)?.weight
        ?? throw new InvalidOperationException("the token embeddings are kept in the file's blocks (--dtype stored); there is no dense matrix");

    /// <summary>The token embedding's blocks when it is kept stored, else null.</summary>
    public QuantizedMatrix? StoredEmbeddingWeight => (wte as StoredEmbedding)?.Weight;

    /// <summary>The token embeddings (B, T, E) of ids (B, T).</summary>
    public Tensor EmbedTokens(Tensor inputIds) => wte.forward(inputIds);

    /// <summary>The blocks, in order.</summary>
    public IEnumerable<Gpt2Block> Blocks => h;

    /// <param name="tokens">(B, T, E): token embeddings, or a prompt method's virtual tokens in front of them.</param>
    /// <returns>The final hidden states (B, T, E), after <c>ln_f</c>.</returns>
    public Tensor forward(Tensor tokens, Tensor? attentionMask, Tensor? positionIds, KeyValueCache? cache)
    {
        var inputs = DecoderInputs.Prepare(tokens, attentionMask, positionIds, cache?.Length ?? 0, tokens.dtype);
        long last = inputs.PositionIds.numel() == 0 ? 0 : inputs.PositionIds.max().item<long>();
        if (last >= config.NPositions)
            throw new ArgumentException($"position {last} is beyond GPT-2's learned positions (n_positions {config.NPositions})");
        var hidden = nn.functional.dropout(tokens + wpe.forward(inputs.PositionIds), config.EmbdPdrop, training);
        foreach (var block in h) hidden = block.forward(LayerBoundary.Enter(hidden, block), inputs, cache);   // backward's "layer done" signal
        return ln_f.forward(hidden);
    }
}

/// <summary>
/// A GPT-2 language model whose <c>state_dict()</c> keys are exactly Hugging Face's <c>GPT2LMHeadModel</c> keys
/// (<c>transformer.wte.weight</c>, <c>transformer.h.{i}.attn.c_attn.weight</c>, ...). The head is tied to
/// <c>transformer.wte</c> (no <c>lm_head.weight</c> key) unless <c>tie_word_embeddings</c> is false. The constructor leaves
/// TorchSharp's default initialisation; <see cref="PretrainedDecoder.Create"/> applies Hugging Face's (<see cref="DecoderInit"/>).
/// </summary>
public sealed class GPT2LMHeadModel : nn.Module, ICausalLanguageModel, IGradientCheckpointing, ILanguageModelHead
{
    readonly Gpt2Model transformer;
    readonly nn.Module<Tensor, Tensor>? lm_head; // nn.Linear, or a StoredLinear over a file's blocks; null when tied

    /// <param name="config">The architecture (validated here).</param>
    /// <param name="linears">Creates every Conv1D layer of the blocks (sites marked <see cref="LinearSite.Transposed"/>,
    /// weight stored (in, out)); parameter-efficient methods wrap them here.</param>
    /// <param name="stored">The token embedding and head kept in their file's blocks (<c>--dtype stored</c>), or null.</param>
    public GPT2LMHeadModel(Gpt2Config config, LinearFactory? linears = null, StoredEmbeddings? stored = null) : base(nameof(GPT2LMHeadModel))
    {
        config.Validate("config");
        Config = config;
        transformer = new Gpt2Model(config, linears ?? DecoderLinears.Plain, stored?.Tokens);
        if (!config.TieWordEmbeddings)
            lm_head = stored?.Head is { } head
                ? new StoredLinear(new LinearSite("lm_head", config.NEmbd, config.VocabSize, Bias: false) { Stored = head })
                : nn.Linear(config.NEmbd, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public Gpt2Config Config { get; }

    public DecoderInfo Info => Config.Info;

    public IBackboneShape Shape => Config;

    public nn.Module Module => this;

    public JsonObject ToConfigJson() => DecoderConfigJson.ToJson(Config);

    public KeyValueCache NewCache() => new(Config.NLayer);

    public Tensor EmbedTokens(Tensor inputIds) => transformer.EmbedTokens(inputIds);

    /// <summary>The token embedding matrix (V, H); over stored blocks, a dequantized float32 copy made for this call (frozen).</summary>
    public Parameter WordEmbeddings => transformer.StoredEmbeddingWeight is { } stored
        ? new Parameter(QuantizedOps.Dequantize(stored), requires_grad: false)
        : transformer.EmbeddingWeight;

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return ForwardEmbeddings(transformer.EmbedTokens(inputIds), attentionMask, positionIds, cache).MoveToOuterDisposeScope();
    }

    public Tensor ForwardEmbeddings(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return Logits(transformer.forward(inputsEmbeds, attentionMask, positionIds, cache)).MoveToOuterDisposeScope();   // (B, T, V)
    }

    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var logits = lm_head is not null ? lm_head.forward(hidden)
            : transformer.StoredEmbeddingWeight is { } tied ? QuantizedOps.Linear(hidden, tied, null, roundActivations: !training)
            : nn.functional.linear(hidden, transformer.EmbeddingWeight);
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public bool GradientCheckpointing
    {
        get => transformer.Blocks.Any(b => b.GradientCheckpointing);
        set { foreach (var block in transformer.Blocks) block.GradientCheckpointing = value; }
    }

    public Tensor ForwardHidden(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return transformer.forward(inputsEmbeds, attentionMask, positionIds, cache).MoveToOuterDisposeScope(); // (B, T, E)
    }

    public Tensor HeadWeight => lm_head switch
    {
        Linear dense => dense.weight!,
        StoredLinear => throw new InvalidOperationException("the head is kept in the file's blocks (--dtype stored); see StoredHead"),
        _ => transformer.EmbeddingWeight,
    };

    public QuantizedMatrix? StoredHead => lm_head is StoredLinear stored ? stored.Weight : lm_head is null ? transformer.StoredEmbeddingWeight : null;

    public Tensor? HeadBias => null;
}
