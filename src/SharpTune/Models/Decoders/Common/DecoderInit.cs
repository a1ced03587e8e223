using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>Hugging Face's initialisation of a freshly built decoder (<c>_init_weights</c>), so a model built from a config alone behaves like one from <c>from_config</c>.</summary>
public static class DecoderInit
{
    /// <summary>Matrices and embeddings ~ N(0, <paramref name="std"/>), biases 0; norm weights keep their ones.</summary>
    public static void Apply(nn.Module module, double std)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (name, parameter) in module.named_parameters())
        {
            if (parameter.dim() >= 2) parameter.normal_(0, std);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
        }
    }
}
