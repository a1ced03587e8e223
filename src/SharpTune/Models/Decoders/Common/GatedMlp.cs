using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The gated feed-forward block, as HF <c>LlamaMLP</c>: <c>down_proj(act(gate_proj(x)) * up_proj(x))</c> (keys
/// <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>); SwiGLU with silu (Llama, Qwen2), GeGLU with gelu (Gemma).
/// </summary>
public sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> gate_proj;
    readonly nn.Module<Tensor, Tensor> up_proj;
    readonly nn.Module<Tensor, Tensor> down_proj;
    readonly Func<Tensor, Tensor> activation;

    /// <summary>The activations a gated block takes, by Hugging Face's names (<c>ACT2FN</c>).</summary>
    public static IReadOnlyDictionary<string, Func<Tensor, Tensor>> Activations { get; } = new Dictionary<string, Func<Tensor, Tensor>>
    {
        ["silu"] = x => nn.functional.silu(x),
        ["swish"] = x => nn.functional.silu(x),
        ["gelu"] = x => x.gelu(),                                                // exact (erf)
        ["gelu_pytorch_tanh"] = x => x.gelu(TorchSharp.Modules.GELU.Approximate.tanh),
        ["gelu_new"] = x => x.gelu(TorchSharp.Modules.GELU.Approximate.tanh),
    };

    /// <param name="activation">A key of <see cref="Activations"/>.</param>
    public GatedMlp(int hiddenSize, int intermediateSize, bool bias, LinearFactory linears, string path, string activation = "silu") : base(nameof(GatedMlp))
    {
        ActivationName = activation;
        this.activation = Activations.TryGetValue(activation, out var f) ? f
            : throw new ArgumentException($"activation '{activation}' is not one a gated MLP takes ({string.Join(", ", Activations.Keys)})", nameof(activation));
        gate_proj = linears(new($"{path}.gate_proj", hiddenSize, intermediateSize, bias));
        up_proj = linears(new($"{path}.up_proj", hiddenSize, intermediateSize, bias));
        down_proj = linears(new($"{path}.down_proj", intermediateSize, hiddenSize, bias));
        RegisterComponents();
    }

    /// <summary>The activation's Hugging Face name.</summary>
    internal string ActivationName { get; }

    internal (nn.Module<Tensor, Tensor> Gate, nn.Module<Tensor, Tensor> Up, nn.Module<Tensor, Tensor> Down) Projections => (gate_proj, up_proj, down_proj);

    /// <param name="hidden">(B, T, H)</param>
    /// <returns>(B, T, H)</returns>
    public override Tensor forward(Tensor hidden) =>
        down_proj.forward(activation(gate_proj.forward(hidden)) * up_proj.forward(hidden)); // (B, T, I) inside
}
