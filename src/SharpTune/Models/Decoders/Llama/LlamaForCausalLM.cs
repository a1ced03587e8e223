using System.Text.Json.Nodes;
using SharpTune.Distributed;
using SharpTune.Models.Decoders.Common;
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
        mlp = new GatedMlp(config.HiddenSize, config.IntermediateSize, config.MlpBias, linears, $"{path}.mlp");
        input_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        this.index = index;
        RegisterComponents();
    }

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
    readonly Embedding embed_tokens;
    readonly ModuleList<LlamaDecoderLayer> layers;
    readonly RmsNorm norm;
    readonly RotaryEmbedding rotary;

    public LlamaModel(LlamaConfig config, LinearFactory linears) : base(nameof(LlamaModel))
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaDecoderLayer(config, linears, i)).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        rotary = new RotaryEmbedding(config.HeadDim, config.Theta, config.Scaling);
        RegisterComponents();
    }

    /// <summary>The token embedding matrix (V, H), which a tied language-model head shares.</summary>
    public Parameter EmbeddingWeight => embed_tokens.weight!;

    /// <summary>The decoder layers, in order.</summary>
    public IEnumerable<LlamaDecoderLayer> Layers => layers;

    /// <summary>The token embeddings (B, T, H) of ids (B, T).</summary>
    public Tensor EmbedTokens(Tensor inputIds) => embed_tokens.forward(inputIds);

    /// <param name="hidden">(B, T, H): token embeddings, or a prompt method's virtual tokens in front of them.</param>
    /// <returns>The final hidden states (B, T, H), after the last norm.</returns>
    public Tensor forward(Tensor hidden, Tensor? attentionMask, Tensor? positionIds, KeyValueCache? cache)
    {
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
public class LlamaForCausalLM : nn.Module, ICausalLanguageModel, IGradientCheckpointing, ILanguageModelHead
{
    readonly LlamaModel model;
    readonly Linear? lm_head;

    /// <param name="config">The architecture (validated here).</param>
    /// <param name="linears">Creates every Linear layer of the blocks by its module path; parameter-efficient methods wrap them here.</param>
    public LlamaForCausalLM(LlamaConfig config, LinearFactory? linears = null) : base(nameof(LlamaForCausalLM))
    {
        config.Validate("config");
        Config = config;
        model = new LlamaModel(config, linears ?? DecoderLinears.Plain);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public LlamaConfig Config { get; }

    public DecoderInfo Info => Config.Info;

    public IBackboneShape Shape => Config;

    public nn.Module Module => this;

    public JsonObject ToConfigJson() => DecoderConfigJson.ToJson(Config);

    public KeyValueCache NewCache() => new(Config.NumHiddenLayers);

    public Tensor EmbedTokens(Tensor inputIds) => model.EmbedTokens(inputIds);

    public Parameter WordEmbeddings => model.EmbeddingWeight;

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return ForwardEmbeddings(model.EmbedTokens(inputIds), attentionMask, positionIds, cache).MoveToOuterDisposeScope();
    }

    public Tensor ForwardEmbeddings(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        var hidden = model.forward(inputsEmbeds, attentionMask, positionIds, cache);            // (B, T, H)
        var logits = lm_head is null ? nn.functional.linear(hidden, model.EmbeddingWeight) : lm_head.forward(hidden); // (B, T, V)
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

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

    public Tensor HeadWeight => lm_head?.weight ?? model.EmbeddingWeight;

    public Tensor? HeadBias => null;
}
