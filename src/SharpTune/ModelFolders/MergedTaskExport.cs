using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>Exports a task model whose adapter layers merge (LoRA, IA3) as a plain Hugging Face model with the adapter folded into its weights.</summary>
public static class MergedTaskExport
{
    /// <summary>Loads <paramref name="modelFolder"/>, merges its adapter and saves a plain task model folder in <paramref name="output"/>.</summary>
    public static void Export(string modelFolder, string output)
    {
        using var loaded = TaskModelFolder.Load(modelFolder);
        // Whatever the method, what merges is a layer that can fold its adapter into its weights (LoRA's, IA3's).
        if (!loaded.Model.Encoder.modules().Any(m => m is IMergeableLinear))
            throw new ArgumentException($"{modelFolder}: merging applies to adapters that fold into the weights (lora, ia3); this model was trained with '{loaded.Spec.Method}'");
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
