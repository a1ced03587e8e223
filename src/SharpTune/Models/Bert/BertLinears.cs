using SharpTune.Models;

namespace SharpTune.Models.Bert;

/// <summary>
/// The encoder's Linear layers. The encoder asks a <see cref="LinearFactory"/> for each by its Hugging Face module
/// path (such as <c>encoder.layer.3.attention.self.query</c>); every BERT Linear has a bias.
/// </summary>
public static class BertLinears
{
    /// <summary>
    /// The module path of every Linear layer the encoder asks its factory for, in build order, so a method can
    /// check its target names before building. The pooler is listed though a model may be built without it.
    /// </summary>
    public static IReadOnlyList<string> Paths(BertConfig config) => Sites(config).Select(s => s.Path).ToList();

    /// <summary>Every Linear layer of the encoder with its sizes, in build order (the pooler last).</summary>
    public static IReadOnlyList<LinearSite> Sites(BertConfig config)
    {
        int h = config.HiddenSize, inner = config.IntermediateSize;
        var sites = new List<LinearSite>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string layer = $"encoder.layer.{i}";
            sites.AddRange([new($"{layer}.attention.self.query", h, h), new($"{layer}.attention.self.key", h, h),
                new($"{layer}.attention.self.value", h, h), new($"{layer}.attention.output.dense", h, h),
                new($"{layer}.intermediate.dense", h, inner), new($"{layer}.output.dense", inner, h)]);
        }
        sites.Add(new("pooler.dense", h, h));
        return sites;
    }
}

