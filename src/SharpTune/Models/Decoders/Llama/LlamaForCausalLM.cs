using System.Text.Json.Nodes;
using SharpTune.Distributed;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>One pre-norm transformer block, as HF <c>LlamaDecoderLayer</c> (keys <c>model.layers.{i}.*</c>).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    readonly GroupedQueryAttention self_attn;
    readonly GatedMlp mlp;
    readonly RmsNorm input_layernorm;
    readonly RmsNorm post_attention_layernorm;
    readonly int index;

    public LlamaDecoderLayer(LlamaConfig config, LinearFactory linears, int index) : base(nameof(LlamaDecoderLayer))
    {
        string path = $"model.layers.{index}";
        self_attn = new GroupedQueryAttention(config.Attention, linears, $"{path}.self_attn");
        mlp = new GatedMlp(config.HiddenSize, config.IntermediateSize, config.MlpBias, linears, $"{path}.mlp", config.MlpActivation);
        input_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, config.NormWeightsFromOne);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, config.NormWeightsFromOne);
        this.index = index;
        RegisterComponents();
    }

    internal GroupedQueryAttention Attention => self_attn;
    internal GatedMlp Mlp => mlp;
    internal (RmsNorm Input, RmsNorm PostAttention) Norms => (input_layernorm, post_attention_layernorm);

    /// <summary>Whether training forwards keep only this block's input and recompute the rest in the backward pass (<see cref="ActivationCheckpoint"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <param name="hidden">(B, T, H)</param>
    /// <returns>(B, T, H)</returns>
    public Tensor forward(Tensor hidden, Tensor cos, Tensor sin, DecoderInputs inputs, KeyValueCache? cache)
    {
        if (GradientCheckpointing && cache is null && ActivationCheckpoint.Applies(this))
            return ActivationCheckpoint.Run(
                t => Block(t[0]!, t[1]!, t[2]!, inputs with { Mask = t[3], PositionIds = t[4]! }, null),
                [hidden, cos, sin, inputs.Mask, inputs.PositionIds], parameters());
        return Block(hidden, cos, sin, inputs, cache);
    }

    Tensor Block(Tensor hidden, Tensor cos, Tensor sin, DecoderInputs inputs, KeyValueCache? cache)
    {
        hidden = hidden + self_attn.forward(input_layernorm.forward(hidden), cos, sin, inputs, cache, index);
        return hidden + mlp.forward(post_attention_layernorm.forward(hidden));
    }
}

/// <summary>Embeddings, the blocks and the final norm: HF <c>LlamaModel</c> (keys <c>model.*</c>).</summary>
public sealed class LlamaModel : nn.Module
{
    readonly nn.Module<Tensor, Tensor> embed_tokens; // nn.Embedding, or a StoredEmbedding over a file's blocks
    readonly ModuleList<LlamaDecoderLayer> layers;
    readonly RmsNorm norm;
    readonly RotaryEmbedding rotary;
    readonly double? embeddingScale;

    public LlamaModel(LlamaConfig config, LinearFactory linears, QuantizedMatrix? storedEmbedding = null) : base(nameof(LlamaModel))
    {
        embed_tokens = storedEmbedding is null ? nn.Embedding(config.VocabSize, config.HiddenSize) : new StoredEmbedding(storedEmbedding);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaDecoderLayer(config, linears, i)).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, config.NormWeightsFromOne);
        rotary = new RotaryEmbedding(config.HeadDim, config.Theta, config.Scaling);
        embeddingScale = config.EmbeddingScale;
        RegisterComponents();
    }

    /// <summary>The token embedding matrix (V, H), which a tied language-model head shares (dense models only).</summary>
    public Parameter EmbeddingWeight => (embed_tokens as Embedding)?.weight
        ?? throw new InvalidOperationException("the token embeddings are kept in the file's blocks (--dtype stored); there is no dense matrix");

    /// <summary>The token embedding's blocks when it is kept stored, else null.</summary>
    public QuantizedMatrix? StoredEmbeddingWeight => (embed_tokens as StoredEmbedding)?.Weight;

    internal nn.Module<Tensor, Tensor> TokenEmbedding => embed_tokens;
    internal RmsNorm FinalNorm => norm;
    internal RotaryEmbedding Rotary => rotary;
    internal double? EmbeddingScale => embeddingScale;

    /// <summary>The decoder layers, in order.</summary>
    public IEnumerable<LlamaDecoderLayer> Layers => layers;

    /// <summary>The token embeddings (B, T, H) of ids (B, T).</summary>
    public Tensor EmbedTokens(Tensor inputIds) => embed_tokens.forward(inputIds);

    /// <param name="hidden">(B, T, H): token embeddings, or a prompt method's virtual tokens in front of them (scaled
    /// alike where the config scales embeddings, as HF's GemmaModel scales whatever <c>inputs_embeds</c> it is given).</param>
    /// <returns>The final hidden states (B, T, H), after the last norm.</returns>
    public Tensor forward(Tensor hidden, Tensor? attentionMask, Tensor? positionIds, KeyValueCache? cache)
    {
        if (embeddingScale is { } scale) hidden = hidden * tensor(scale, dtype: hidden.dtype, device: hidden.device); // the factor in the model's dtype, as HF
        var inputs = DecoderInputs.Prepare(hidden, attentionMask, positionIds, cache?.Length ?? 0, hidden.dtype);
        var (cos, sin) = rotary.CosSin(inputs.PositionIds, hidden.dtype);                      // (B, T, D)
        foreach (var layer in layers) hidden = layer.forward(LayerBoundary.Enter(hidden, layer), cos, sin, inputs, cache);   // backward's "layer done" signal
        return norm.forward(hidden);
    }
}

/// <summary>
/// A Llama language model whose <c>state_dict()</c> keys are exactly Hugging Face's <c>LlamaForCausalLM</c> keys
/// (<c>model.embed_tokens.weight</c>, <c>model.layers.{i}.self_attn.q_proj.weight</c>, ..., <c>lm_head.weight</c>).
/// With <c>tie_word_embeddings</c> there is no <c>lm_head</c>: the head is the embedding matrix, as in HF's saved files.
/// Qwen2 and Mistral use this module with their own configs. The constructor leaves TorchSharp's default initialisation;
/// <see cref="PretrainedDecoder.Create"/> applies Hugging Face's (<see cref="DecoderInit"/>); loading, whose weights overwrite it, skips it.
/// </summary>
public class LlamaForCausalLM : nn.Module, ICausalLanguageModel, IGradientCheckpointing, ILanguageModelHead, IStepDecoding
{
    readonly LlamaModel model;
    readonly nn.Module<Tensor, Tensor>? lm_head; // nn.Linear, or a StoredLinear over a file's blocks; null when tied

    /// <param name="config">The architecture (validated here).</param>
    /// <param name="linears">Creates every Linear layer of the blocks by its module path; parameter-efficient methods wrap them here.</param>
    /// <param name="stored">The token embedding and head kept in their file's blocks (<c>--dtype stored</c>), or null.</param>
    public LlamaForCausalLM(LlamaConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null) : base(nameof(LlamaForCausalLM))
    {
        config.Validate("config");
        Config = config;
        model = new LlamaModel(config, linears ?? DecoderLinears.Plain, stored?.Tokens);
        if (!config.TieWordEmbeddings)
            lm_head = stored?.Head is { } head
                ? new StoredLinear(new LinearSite("lm_head", config.HiddenSize, config.VocabSize, Bias: false) { Stored = head })
                : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public LlamaConfig Config { get; }

    internal LlamaModel Model => model;

    /// <summary>The untied head (a Linear or a StoredLinear), or null when the head is the token embedding.</summary>
    internal nn.Module<Tensor, Tensor>? Head => lm_head;

    public DecoderInfo Info => Config.Info;

    public IBackboneShape Shape => Config;

    public nn.Module Module => this;

    public JsonObject ToConfigJson() => DecoderConfigJson.ToJson(Config);

    public KeyValueCache NewCache() => new(Config.NumHiddenLayers);

    public Tensor EmbedTokens(Tensor inputIds) => model.EmbedTokens(inputIds);

    /// <summary>The token embedding matrix (V, H); over stored blocks, a dequantized float32 copy made for this call (frozen).</summary>
    public Parameter WordEmbeddings => model.StoredEmbeddingWeight is { } stored
        ? new Parameter(QuantizedOps.Dequantize(stored), requires_grad: false)
        : model.EmbeddingWeight;

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return ForwardEmbeddings(model.EmbedTokens(inputIds), attentionMask, positionIds, cache).MoveToOuterDisposeScope();
    }

    public Tensor ForwardEmbeddings(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return Logits(model.forward(inputsEmbeds, attentionMask, positionIds, cache)).MoveToOuterDisposeScope();   // (B, T, V)
    }

    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var logits = lm_head is not null ? lm_head.forward(hidden)
            : model.StoredEmbeddingWeight is { } tied ? QuantizedOps.Linear(hidden, tied, null, roundActivations: !training)
            : nn.functional.linear(hidden, model.EmbeddingWeight);
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public StepDecoder? CreateStepDecoder() => LlamaStepDecoder.TryCreate(this);

    public bool GradientCheckpointing
    {
        get => model.Layers.Any(l => l.GradientCheckpointing);
        set { foreach (var layer in model.Layers) layer.GradientCheckpointing = value; }
    }

    public Tensor ForwardHidden(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return model.forward(inputsEmbeds, attentionMask, positionIds, cache).MoveToOuterDisposeScope(); // (B, T, H)
    }

    public Tensor HeadWeight => lm_head switch
    {
        Linear dense => dense.weight!,
        StoredLinear => throw new InvalidOperationException("the head is kept in the file's blocks (--dtype stored); see StoredHead"),
        _ => model.EmbeddingWeight,
    };

    public QuantizedMatrix? StoredHead => lm_head is StoredLinear stored ? stored.Weight : lm_head is null ? model.StoredEmbeddingWeight : null;

    public Tensor? HeadBias => null;
}
