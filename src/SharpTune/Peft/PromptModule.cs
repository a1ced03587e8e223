using SharpTune.Models.Decoders;
using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// The module of a prompt method (prompt tuning, P-tuning, prefix tuning, P-tuning v2). It computes one
/// table, <see cref="Output"/> (P, O), that PEFT saves as <c>prompt_embeddings</c>: O = H for input-side
/// prompts, L*2*H for key/value prefixes. Built into <see cref="Heads.TaskModel"/> as <c>prompt_encoder</c>,
/// so its parameters appear in <c>state_dict()</c> as <c>prompt_encoder.embedding.weight</c>, ...
/// </summary>
/// <remarks>
/// A PEFT adapter holds only that table, not the MLP, LSTM or projection that produced it (peft#1607).
/// Loaded alone it makes the module <see cref="IsFixed"/>: <see cref="Output"/> returns the stored table and
/// the module's own parameters no longer take part, as in PEFT's <c>inference_mode</c>. Methods whose table
/// is their only parameter (prompt tuning, P-tuning v2) copy it back into the parameter instead.
/// </remarks>
public abstract class PromptModule : nn.Module, IEncoderInputAdapter, IDecoderInputAdapter
{
    Tensor? fixedOutput; // (P, O) when loaded from prompt_embeddings alone; never a registered buffer

    protected PromptModule(string name, int virtualTokens, long outputSize) : base(name)
    {
        VirtualTokens = virtualTokens;
        OutputSize = outputSize;
    }

    /// <summary>P, the number of virtual tokens.</summary>
    public int VirtualTokens { get; }

    /// <summary>O, the width of one row of <see cref="Output"/>.</summary>
    public long OutputSize { get; }

    /// <summary>Whether <see cref="Output"/> is a stored table rather than computed from the parameters.</summary>
    public bool IsFixed => fixedOutput is not null;

    /// <summary>The encoder's output (P, O): what PEFT saves as <c>prompt_embeddings</c>.</summary>
    public Tensor Output() => fixedOutput is { } table ? table.to(parameters().First().device) : Encode();

    /// <summary>Computes the output from the module's parameters: (P, O).</summary>
    protected abstract Tensor Encode();

    /// <summary>
    /// Takes a saved <c>prompt_embeddings</c> table (P, O), shape already checked. By default the module becomes
    /// <see cref="IsFixed"/> and its parameters, now unused, stop training; modules whose parameter is the
    /// table itself override this to copy it in.
    /// </summary>
    public virtual void LoadPromptEmbeddings(Tensor promptEmbeddings)
    {
        fixedOutput = promptEmbeddings.detach().to(ScalarType.Float32).clone().DetachFromDisposeScope();
        foreach (var parameter in parameters()) parameter.requires_grad = false;
    }

    /// <summary>Leaves the fixed mode: the parameters produce the output again (after loading them; Freeze decides what trains).</summary>
    public void Unfix() => fixedOutput = null;

    public abstract EncoderInputs Prepare(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds);

    /// <summary>Input-side prompts unless a module says it is a key/value prefix.</summary>
    public virtual DecoderPromptKind Kind => DecoderPromptKind.InputEmbeddings;

    /// <summary>The output as (B, P, H) embeddings in front of a decoder's tokens.</summary>
    public Tensor PromptEmbeddings(long batch, ScalarType dtype) => Output().to(dtype).unsqueeze(0).expand(batch, -1, -1);

    /// <summary>Only key/value prefix modules fill a cache.</summary>
    public virtual void FillPrefix(KeyValueCache cache, long batch, ScalarType dtype) =>
        throw new NotSupportedException($"{GetType().Name} puts embeddings in front of the input, not a key/value prefix");

    /// <summary>
    /// Input-side prompts (METHODS.md): the output goes in front of the raw word embeddings, and positions,
    /// token types and LayerNorm then cover all P+T positions, so the mask gets P ones and the token types
    /// P zeros in front; the real [CLS] sits at position P.
    /// </summary>
    protected EncoderInputs PrependToWordEmbeddings(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds)
    {
        long batch = inputIds.shape[0];
        var words = encoder.Embeddings.EmbedTokens(inputIds); // (B, T, H)
        var prompts = Output().to(words.dtype).unsqueeze(0).expand(batch, -1, -1); // (B, P, H)
        var embeds = cat([prompts, words], 1); // (B, P+T, H)
        var mask = cat([ones(batch, VirtualTokens, attentionMask.dtype, attentionMask.device), attentionMask], 1); // (B, P+T)
        var types = cat([zeros(batch, VirtualTokens, tokenTypeIds.dtype, tokenTypeIds.device), tokenTypeIds], 1); // (B, P+T)
        return new EncoderInputs(null, embeds, mask, types, null, VirtualTokens);
    }
}
