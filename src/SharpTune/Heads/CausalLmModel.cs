using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// A decoder trained as a language model, with a prompt method's module when one is chosen (PEFT's
/// <c>PeftModelForCausalLM</c>). Its parameters carry the decoder's own Hugging Face names (<c>model.layers.0...</c>,
/// <c>lm_head.weight</c>) plus <c>prompt_encoder.*</c>, so adapter files use PEFT's keys. It is itself an
/// <see cref="ICausalLanguageModel"/>: generation, scoring and export see the adapted model, and the prompt's virtual
/// tokens stay inside (callers pass and get back only their own positions).
/// </summary>
public sealed class CausalLmModel : nn.Module, ICausalLanguageModel, ITunableModel, IStepDecoding
{
    readonly ICausalLanguageModel decoder;
    readonly IDecoderInputAdapter? prompt;

    /// <param name="decoder">The language model (its children are registered here under their own names).</param>
    /// <param name="promptEncoder">A prompt method's module implementing <see cref="IDecoderInputAdapter"/>, or null.</param>
    public CausalLmModel(ICausalLanguageModel decoder, nn.Module? promptEncoder = null) : base(nameof(CausalLmModel))
    {
        if (promptEncoder is not null and not IDecoderInputAdapter)
            throw new ArgumentException($"{promptEncoder.GetType().Name} does not implement {nameof(IDecoderInputAdapter)}.");
        if (decoder.Module.named_parameters(recurse: false).Any())
            throw new ArgumentException($"{decoder.GetType().Name} holds parameters outside its submodules; they would lose their names here");
        this.decoder = decoder;
        foreach (var (name, child) in decoder.Module.named_children()) register_module(name, child);
        if (promptEncoder is not null) register_module("prompt_encoder", promptEncoder);
        prompt = promptEncoder as IDecoderInputAdapter;
        PromptEncoder = promptEncoder;
    }

    /// <summary>The wrapped language model (without the prompt).</summary>
    public ICausalLanguageModel Decoder => decoder;

    public nn.Module? PromptEncoder { get; }

    /// <summary>Whether the prompt module's virtual tokens go in front (PEFT's <c>disable_adapter()</c> clears it: the base alone).</summary>
    public bool PromptEnabled { get; set; } = true;

    IDecoderInputAdapter? ActivePrompt => PromptEnabled ? prompt : null;

    /// <summary>P: the prompt's virtual tokens (0 without a prompt method).</summary>
    public int VirtualTokens => prompt?.VirtualTokens ?? 0;

    public IBackboneShape Backbone => decoder.Shape;

    public IBackboneShape Shape => decoder.Shape;

    public nn.Module Module => this;

    /// <summary>A language model has no separate head: <c>lm_head</c> is part of the pretrained model.</summary>
    public bool IsHead(string parameterName) => false;

    public string PeftTaskType => "CAUSAL_LM";

    public IReadOnlyList<string> ModulesToSave => [];

    /// <summary>The decoder's sizes; the context left to callers is shortened by the prompt's P positions.</summary>
    public DecoderInfo Info => decoder.Info with { ContextLength = decoder.Info.ContextLength - VirtualTokens };

    public KeyValueCache NewCache() => decoder.NewCache();

    public JsonObject ToConfigJson() => decoder.ToConfigJson();

    public Tensor EmbedTokens(Tensor inputIds) => decoder.EmbedTokens(inputIds);

    public Parameter WordEmbeddings => decoder.WordEmbeddings;

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null) =>
        ForwardEmbeddings(decoder.EmbedTokens(inputIds), attentionMask, positionIds, cache);

    /// <summary>The decoder's, when no prompt's virtual tokens go in front; else the whole forward's last row.</summary>
    public Tensor ForwardLast(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        if (ActivePrompt is null) return decoder.ForwardLast(inputIds, attentionMask, positionIds, cache);
        using var scope = NewDisposeScope();
        return Forward(inputIds, attentionMask, positionIds, cache).select(1, inputIds.shape[1] - 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The decoder's step decoder when no prompt module is active (an adapter's layers are the decoder's own, which the
    /// step computes where it can); a prompt's virtual tokens or prefix go through the modules' forward.
    /// </summary>
    public StepDecoder? CreateStepDecoder() => ActivePrompt is null ? (decoder as IStepDecoding)?.CreateStepDecoder() : null;

    /// <summary>
    /// Logits (B, T, V) for the caller's T positions. With a prompt, the virtual tokens go in front when nothing is
    /// cached yet (a prefix fills the cache first), the mask gets P ones in front and the caller's positions move by P;
    /// the logits of virtual positions are dropped.
    /// </summary>
    public Tensor ForwardEmbeddings(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        var prompt = ActivePrompt;
        if (prompt is null) return decoder.ForwardEmbeddings(inputsEmbeds, attentionMask, positionIds, cache);
        if (attentionMask is { } m && m.dim() == 3)
            throw new ArgumentException("packed batches (a per-query attention mask) do not combine with prompt methods: their virtual tokens belong to one example");
        using var scope = NewDisposeScope();
        long batch = inputsEmbeds.shape[0], length = inputsEmbeds.shape[1];
        int p = prompt.VirtualTokens;
        bool first = cache is null || cache.Length == 0;
        long callerPast = cache is null ? 0 : Math.Max(0, cache.Length - p);
        attentionMask ??= ones(batch, callerPast + length, ScalarType.Int64, inputsEmbeds.device);
        var mask = cat([ones(batch, p, attentionMask.dtype, attentionMask.device), attentionMask], 1);   // (B, P + past + T)
        positionIds ??= RealPositions(attentionMask, callerPast, length);
        var positions = positionIds + p;                                                                  // (B, T)

        KeyValueCache? own = null;
        try
        {
            if (prompt.Kind == DecoderPromptKind.KeyValuePrefix)
            {
                if (cache is null) cache = own = decoder.NewCache();
                if (first) prompt.FillPrefix(cache, batch, inputsEmbeds.dtype);
                return decoder.ForwardEmbeddings(inputsEmbeds, mask, positions, cache).MoveToOuterDisposeScope();
            }
            if (!first) return decoder.ForwardEmbeddings(inputsEmbeds, mask, positions, cache).MoveToOuterDisposeScope();
            var embeds = cat([prompt.PromptEmbeddings(batch, inputsEmbeds.dtype), inputsEmbeds], 1);      // (B, P + T, H)
            var virtualPositions = arange(p, dtype: ScalarType.Int64, device: positions.device).unsqueeze(0).expand(batch, p);
            var logits = decoder.ForwardEmbeddings(embeds, mask, cat([virtualPositions, positions], 1), cache); // (B, P + T, V)
            return logits.narrow(1, p, length).MoveToOuterDisposeScope();
        }
        finally
        {
            own?.Dispose();
        }
    }

    /// <summary>
    /// The training loss: mean next-token cross-entropy over the positions whose label is not -100 (transformers' shift:
    /// position t predicts label t + 1). <paramref name="labels"/> (B, T) int64.
    /// </summary>
    /// <param name="positionIds">(B, T), for packed rows whose positions restart with each example; null: from the mask.</param>
    /// <remarks>
    /// Without a prompt method the head and the loss run over chunks of tokens (<see cref="CausalLmLoss"/>), so a large
    /// vocabulary's logits and their gradient are never whole in memory; with one, the logits of the batch are.
    /// </remarks>
    public Tensor Loss(Tensor inputIds, Tensor attentionMask, Tensor labels, Tensor? positionIds = null)
    {
        using var scope = NewDisposeScope();
        if (ActivePrompt is null && decoder is ILanguageModelHead head)
        {
            var hidden = head.ForwardHidden(decoder.EmbedTokens(inputIds), attentionMask, positionIds);       // (B, T, H)
            var loss = head.StoredHead is { } stored
                ? CausalLmLoss.Compute(hidden, stored, head.HeadBias, labels, roundActivations: !training)
                : CausalLmLoss.Compute(hidden, head.HeadWeight, head.HeadBias, labels);
            return loss.MoveToOuterDisposeScope();
        }
        var logits = Forward(inputIds, attentionMask, positionIds);                                        // (B, T, V)
        long vocabulary = logits.shape[2];
        var predicted = logits.narrow(1, 0, logits.shape[1] - 1).reshape(-1, vocabulary);                // (B·(T-1), V)
        var targets = labels.narrow(1, 1, labels.shape[1] - 1).reshape(-1);                               // (B·(T-1))
        return nn.functional.cross_entropy(predicted, targets, ignore_index: -100).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Each sequence's summed log-probability of its labelled tokens (B, float64), position t scored on label t + 1 as
    /// <see cref="Loss"/>: what preference objectives compare. Without a prompt method each sequence goes through the
    /// chunked head (<see cref="CausalLmLoss"/>), so the (B, T, V) logits are never whole in memory; with one, they are.
    /// </summary>
    public Tensor LabelledLogProbs(Tensor inputIds, Tensor attentionMask, Tensor labels)
    {
        using var scope = NewDisposeScope();
        if (ActivePrompt is null && decoder is ILanguageModelHead head)
        {
            var hidden = head.ForwardHidden(decoder.EmbedTokens(inputIds), attentionMask, null);              // (B, T, H)
            var sums = new List<Tensor>();
            for (long b = 0; b < hidden.shape[0]; b++)
            {
                var (rows, targets) = (hidden.narrow(0, b, 1), labels.narrow(0, b, 1));
                var (negative, _) = head.StoredHead is { } stored
                    ? CausalLmLoss.Sum(rows, stored, head.HeadBias, targets, roundActivations: !training)
                    : CausalLmLoss.Sum(rows, head.HeadWeight, head.HeadBias, targets);
                sums.Add(-negative.to(ScalarType.Float64));
            }
            return stack(sums).MoveToOuterDisposeScope();
        }
        var logits = Forward(inputIds, attentionMask);                                                     // (B, T, V)
        long batch = logits.shape[0], length = logits.shape[1], vocabulary = logits.shape[2];
        var picked = -nn.functional.cross_entropy(logits.narrow(1, 0, length - 1).reshape(-1, vocabulary).to(ScalarType.Float32),
            labels.narrow(1, 1, length - 1).reshape(-1), ignore_index: -100, reduction: nn.Reduction.None).reshape(batch, length - 1);   // 0 where ignored
        return picked.to(ScalarType.Float64).sum(1).MoveToOuterDisposeScope();
    }

    /// <summary>Positions counting real tokens only, as the decoders derive them (left padding starts real text at 0).</summary>
    static Tensor RealPositions(Tensor attentionMask, long past, long length) =>
        (attentionMask.to(ScalarType.Int64).cumsum(-1) - 1).clamp_min(0).narrow(1, past, length);
}
