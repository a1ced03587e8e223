using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Gguf;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// How a decoder is laid out in a GGUF file llama.cpp runs, as llama.cpp's <c>convert_hf_to_gguf.py</c> writes it: its
/// family's GGUF table (<see cref="IGgufTable"/>, the one <see cref="GgufModelMap"/> reads with) applied to the model's
/// config: the architecture's metadata, every Hugging Face key with its GGUF name and transform, and the extra tensors.
/// </summary>
sealed class GgufDecoderLayout
{
    GgufDecoderLayout(string architecture, IReadOnlyList<KeyValuePair<string, object>> metadata, IReadOnlyList<GgufTensorMapping> tensors,
        IReadOnlyList<(string Name, float[] Values)> extras)
    {
        Architecture = architecture;
        Metadata = metadata;
        Tensors = tensors;
        ByHfKey = tensors.ToDictionary(t => t.HfKey);
        Extras = extras;
    }

    /// <summary><c>general.architecture</c>.</summary>
    public string Architecture { get; }

    /// <summary>The <c>{arch}.*</c> keys, typed as llama.cpp reads them (u32 sizes, f32 epsilons and bases).</summary>
    public IReadOnlyList<KeyValuePair<string, object>> Metadata { get; }

    /// <summary>Every weight of the plain model, in the converter's order.</summary>
    public IReadOnlyList<GgufTensorMapping> Tensors { get; }

    public IReadOnlyDictionary<string, GgufTensorMapping> ByHfKey { get; }

    /// <summary>Tensors llama.cpp wants that the model holds as settings (Llama 3's <c>rope_freqs.weight</c>), always F32.</summary>
    public IReadOnlyList<(string Name, float[] Values)> Extras { get; }

    /// <summary>The layout of <paramref name="model"/>'s family, from its config; an unsupported family or setting is refused by name.</summary>
    public static GgufDecoderLayout For(ICausalLanguageModel model)
    {
        var json = model.ToConfigJson();
        var family = DecoderFamilies.ForConfig(json, "model config");
        var config = family.ParseConfig(json, "model config");
        var table = family.Gguf;
        return new GgufDecoderLayout(table.Architecture, table.Metadata(config), table.Tensors(config), table.ExtraTensors(config));
    }
}
