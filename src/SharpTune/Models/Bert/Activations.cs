using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>The activation functions named by <c>hidden_act</c> in a Hugging Face config.</summary>
internal static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => x.gelu(), // exact (erf) GELU, as HF's "gelu"
        "gelu_new" or "gelu_pytorch_tanh" => x => x.gelu(TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => x => x.relu(),
        "silu" or "swish" => x => nn.functional.silu(x),
        "tanh" => x => x.tanh(),
        _ => throw new ArgumentException($"hidden_act '{name}' is not supported"),
    };
}
