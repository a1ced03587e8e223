using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Tests;

/// <summary>Tiny random models with odd sizes, so shape bugs show and tests stay fast.</summary>
public static class TestModels
{
    public static BertConfig TinyConfig { get; } = new()
    {
        VocabSize = 99,
        HiddenSize = 32,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        IntermediateSize = 37,
        MaxPositionEmbeddings = 64,
        TypeVocabSize = 2,
        LayerNormEps = 1e-12,
    };

    public static BertModel TinyModel(int seed = 7, bool pooler = true)
    {
        manual_seed(seed);
        var model = new BertModel(TinyConfig, pooler);
        model.eval();
        return model;
    }

    /// <summary>A fresh temporary folder, deleted when disposed.</summary>
    public sealed class TempFolder : IDisposable
    {
        public TempFolder() => Directory.CreateDirectory(Path);
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sharptune-tests", Guid.NewGuid().ToString("N"));
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose()
        {
            try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
        }
    }
}
