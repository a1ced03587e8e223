using SharpTune.Models.Decoders;
using SharpTune.Models;
using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Prefix;

/// <summary>
/// Prefix tuning (Li &amp; Liang 2021) and P-tuning v2 (Liu 2022): a key/value prefix of P positions in every
/// layer. Follows PEFT's <c>PrefixEncoder</c> and its keys: <c>embedding</c> (P, H) and <c>transform.{0,2}</c>
/// with the projection, else <c>embedding</c> (P, L*2*H) alone. The row layout is PEFT's: per layer, key
/// then value, each H = N*D wide.
/// </summary>
/// <remarks>
/// Zero init (PEFT's <c>init_weights="zero"</c>) makes every key and value zero, which is not a no-op: each
/// query scores 0 against every prefix position, so softmax still gives the prefix weight and each real
/// token's attention output shrinks by Z/(Z+P), Z = sum of exp(score) over the real keys. No finite key
/// gives a prefix weight of exactly zero for every query, so no initial prefix leaves BERT unchanged; zero
/// is the most neutral start (no direction, inputs' own attention pattern kept) and still trains, since the
/// last projection layer (or the table) gets a gradient from the first step.
/// </remarks>
public sealed class PrefixEncoder : PromptModule
{
    readonly Embedding embedding;
    readonly Sequential? transform;
    readonly Dropout dropout;
    readonly int layers, heads, headSize;

    /// <remarks>Over grouped-query attention the prefix has the key/value heads' width, KV·D, as PEFT sizes it (peft#1901).</remarks>
    public PrefixEncoder(PrefixOptions options, IBackboneShape backbone)
        : base(nameof(PrefixEncoder), options.VirtualTokens, 2L * backbone.LayerCount * backbone.KeyValueHeadCount * backbone.HeadSize)
    {
        layers = backbone.LayerCount;
        heads = backbone.KeyValueHeadCount;
        headSize = backbone.HeadSize;
        int tokenDim = heads * headSize;
        Projection = options.Projection;
        if (options.Projection)
        {
            embedding = nn.Embedding(options.VirtualTokens, tokenDim); // (P, H)
            transform = nn.Sequential(
                nn.Linear(tokenDim, options.EncoderHidden), nn.Tanh(), nn.Linear(options.EncoderHidden, OutputSize)); // → (P, L*2*H)
        }
        else
        {
            embedding = nn.Embedding(options.VirtualTokens, OutputSize); // (P, L*2*H)
        }
        dropout = nn.Dropout(options.Dropout);
        RegisterComponents();

        if (!options.ZeroInit) return;
        using (no_grad())
        {
            if (transform is not null)
            {
                var last = (Linear)transform[2];
                last.weight!.zero_();
                last.bias!.zero_();
            }
            else
            {
                embedding.weight!.zero_();
            }
        }
    }

    /// <summary>Whether the prefix comes through the projection (prefix tuning) or is the table itself (P-tuning v2).</summary>
    public bool Projection { get; }

    protected override Tensor Encode() =>
        transform is null ? embedding.weight! : transform.forward(embedding.weight!); // (P, L*2*H)

    /// <summary>Without the projection the table is the parameter itself: loading it restores the module exactly.</summary>
    public override void LoadPromptEmbeddings(Tensor promptEmbeddings)
    {
        if (transform is not null)
        {
            base.LoadPromptEmbeddings(promptEmbeddings);
            return;
        }
        using (no_grad()) embedding.weight!.copy_(promptEmbeddings);
        Unfix();
    }

    /// <summary>The ids, mask and token types pass unchanged; BertModel puts P ones in front of the mask for the prefix.</summary>
    public override EncoderInputs Prepare(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds) =>
        new(inputIds, null, attentionMask, tokenTypeIds, Prefixes(inputIds.shape[0]), 0);

    public override DecoderPromptKind Kind => DecoderPromptKind.KeyValuePrefix;

    /// <summary>Each layer's keys and values (B, KV, P, D) into an empty decoder cache (as PEFT passes them as <c>past_key_values</c>).</summary>
    public override void FillPrefix(KeyValueCache cache, long batch, ScalarType dtype)
    {
        if (cache.Layers != layers) throw new ArgumentException($"the cache has {cache.Layers} layers, the prefix {layers}");
        using var scope = NewDisposeScope();
        var prefixes = Prefixes(batch);
        for (int i = 0; i < layers; i++) cache.Append(i, prefixes[i].Key.to(dtype), prefixes[i].Value.to(dtype));
    }

    /// <summary>One (key, value) pair per layer, each (B, N, P, D).</summary>
    public IReadOnlyList<KeyValuePrefix> Prefixes(long batch)
    {
        var past = Output().view(1, VirtualTokens, 2 * layers, heads, headSize).expand(batch, -1, -1, -1, -1); // (B, P, 2L, N, D)
        past = dropout.forward(past).permute(2, 0, 3, 1, 4); // (2L, B, N, P, D)
        return Enumerable.Range(0, layers).Select(i => new KeyValuePrefix(past[2 * i], past[2 * i + 1])).ToList();
    }
}
