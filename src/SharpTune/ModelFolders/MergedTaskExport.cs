using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>Exports a LoRA or IA3 task model as a plain Hugging Face model with the adapter merged into its weights.</summary>
public static class MergedTaskExport
{
    /// <summary>Loads <paramref name="modelFolder"/>, merges its adapter and saves a plain task model folder in <paramref name="output"/>.</summary>
    public static void Export(string modelFolder, string output)
    {
        using var loaded = TaskModelFolder.Load(modelFolder);
        string method = loaded.Spec.Method;
        if (method is not ("lora" or "ia3"))
            throw new ArgumentException($"{modelFolder}: merging applies to lora and ia3 adapters; this model was trained with '{method}'");
        using var plain = MergedExport.ToPlainModel(loaded.Model.Encoder);
        using var merged = new TaskModel(plain, loaded.Spec.Head);
        var source = loaded.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, parameter) in merged.named_parameters())
                if (name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("crf.", StringComparison.Ordinal))
                    parameter.copy_(source[name]);
        }
        merged.eval();
        TaskModelFolder.Save(output, merged, loaded.Vocab, loaded.LowerCase, loaded.Labels, loaded.Spec with { Method = "full" });
    }
}
