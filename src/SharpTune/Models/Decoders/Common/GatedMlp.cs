using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The SwiGLU feed-forward block, as HF <c>LlamaMLP</c>: <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>
/// (keys <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>).
/// </summary>
public sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> gate_proj;
    readonly nn.Module<Tensor, Tensor> up_proj;
    readonly nn.Module<Tensor, Tensor> down_proj;

    public GatedMlp(int hiddenSize, int intermediateSize, bool bias, LinearFactory linears, string path) : base(nameof(GatedMlp))
    {
        gate_proj = linears(new($"{path}.gate_proj", hiddenSize, intermediateSize, bias));
        up_proj = linears(new($"{path}.up_proj", hiddenSize, intermediateSize, bias));
        down_proj = linears(new($"{path}.down_proj", intermediateSize, hiddenSize, bias));
        RegisterComponents();
    }

    /// <param name="hidden">(B, T, H)</param>
    /// <returns>(B, T, H)</returns>
    public override Tensor forward(Tensor hidden) =>
        down_proj.forward(nn.functional.silu(gate_proj.forward(hidden)) * up_proj.forward(hidden)); // (B, T, I) inside
}
