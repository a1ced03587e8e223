using System.Text.Json.Nodes;
using SharpTune.ModelFolders;
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders;

public class LanguageModelMemoryTests
{
    [Fact]
    public void A_fully_fine_tuned_folder_counts_its_own_weights_an_adapter_folder_its_base_s()
    {
        using var temp = new TestModels.TempFolder();
        string gguf = CausalLmCliTests.TinyGguf(temp);
        string Folder(string name, string method, bool adapter)
        {
            string folder = temp.File(name);
            Directory.CreateDirectory(adapter ? Path.Combine(folder, LanguageModelFolder.AdapterFolder) : folder);
            File.WriteAllText(Path.Combine(folder, LanguageModelFolder.SpecFile),
                new JsonObject { ["task"] = "causal-lm", ["base_model"] = gguf, ["method"] = method }.ToJsonString());
            return folder;
        }
        long Weights(string spec) => LanguageModelMemory.Inference(LanguageModelFolder.Find(spec)!, ScalarType.Float32, 1, 8).Weights;

        long plain = Weights(gguf);
        Assert.Equal(plain, Weights(Folder("lora", "lora", adapter: true)));
        // The base of a fully fine-tuned folder gives only its tokenizer: it is mapped (stored), never read.
        Assert.Equal(plain, Weights(Folder("full", "full", adapter: false)));
    }
}
