using SharpTune.Models;
using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PromptTuning;

/// <summary>
/// Prompt tuning (Lester 2021): P trainable vectors in front of the word embeddings. Follows PEFT's
/// <c>PromptEmbedding</c>: one <c>embedding</c> (P, H), whose weight is also what PEFT saves.
/// </summary>
public sealed class PromptEmbedding : PromptModule
{
    readonly Embedding embedding;

    /// <param name="wordEmbeddings">The backbone's token embedding matrix (V, H): sample_vocab and text start from its rows.</param>
    public PromptEmbedding(PromptTuningOptions options, IBackboneShape backbone, Tensor wordEmbeddings)
        : base(nameof(PromptEmbedding), options.VirtualTokens, backbone.HiddenSize)
    {
        embedding = nn.Embedding(options.VirtualTokens, backbone.HiddenSize); // (P, H), N(0, 1): PEFT's RANDOM
        RegisterComponents();

        if (options.Init == PromptInit.Random) return;
        var table = wordEmbeddings; // (V, H)
        using var scope = NewDisposeScope();
        var ids = options.Init == PromptInit.SampleVocab
            ? randint(0, table.shape[0], [options.VirtualTokens], dtype: ScalarType.Int64) // with replacement, as PEFT
            : tensor(options.TextTokenIds().Select(id => (long)id).ToArray());
        using (no_grad())
            embedding.weight!.copy_(table.index_select(0, ids.to(table.device)).to(ScalarType.Float32)); // (P, H)
    }

    protected override Tensor Encode() => embedding.weight!; // (P, H)

    /// <summary>The table is the parameter itself: loading it restores the module exactly.</summary>
    public override void LoadPromptEmbeddings(Tensor promptEmbeddings)
    {
        using (no_grad()) embedding.weight!.copy_(promptEmbeddings);
        Unfix();
    }

    public override EncoderInputs Prepare(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds) =>
        PrependToWordEmbeddings(encoder, inputIds, attentionMask, tokenTypeIds);
}
