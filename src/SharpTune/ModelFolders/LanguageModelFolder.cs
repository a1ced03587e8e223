using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>
/// A fine-tuned language model's folder (a run's <c>best/</c> or <c>final/</c>): <c>sharptune_lm.json</c> naming the base
/// model and the method, and either the adapter in PEFT's format (<c>adapter/</c>, task_type CAUSAL_LM) or the whole
/// model in Hugging Face's layout (<c>config.json</c>, <c>model.safetensors</c>). The tokenizer and chat template come
/// from the base. Such a folder, or a run folder holding one, works wherever a language model is asked for.
/// </summary>
public static class LanguageModelFolder
{
    public const string SpecFile = "sharptune_lm.json";
    public const string AdapterFolder = "adapter";

    /// <summary>Writes the model atomically: into a temporary folder, then swapped in.</summary>
    public static void Save(string folder, CausalLmModel model, string baseModel, string methodName, IPeftMethod? method, PeftSettings settings)
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(folder))!;
        Directory.CreateDirectory(parent);
        string temporary = Path.Combine(parent, $".{Path.GetFileName(folder)}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(temporary);
            if (method is not null) method.SaveAdapter(Path.Combine(temporary, AdapterFolder), model, settings, baseModel);
            else model.Decoder.Save(temporary);
            var spec = new JsonObject { ["task"] = "causal-lm", ["base_model"] = baseModel, ["method"] = methodName };
            AtomicFile.WriteAllText(Path.Combine(temporary, SpecFile), spec.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            string old = folder + $".{Guid.NewGuid():N}.old";
            if (Directory.Exists(folder)) Directory.Move(folder, old);
            Directory.Move(temporary, folder);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
        catch
        {
            try { if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>The folder holding a saved language model: <paramref name="spec"/> itself, or a run folder's best/, else final/; null when neither.</summary>
    public static string? Resolve(string spec)
    {
        if (!Directory.Exists(spec)) return null;
        if (File.Exists(Path.Combine(spec, SpecFile))) return spec;
        foreach (string sub in new[] { "best", "final" })
            if (File.Exists(Path.Combine(spec, sub, SpecFile))) return Path.Combine(spec, sub);
        return null;
    }

    /// <summary>The base model a saved language model folder (one <see cref="Resolve"/> found) was fine-tuned from.</summary>
    public static string BaseModel(string folder) => ReadSpec(folder).BaseModel;

    /// <summary>Whether <paramref name="spec"/> is a language model: a .gguf file, a decoder's Hugging Face folder, or a fine-tuned one.</summary>
    public static bool IsLanguageModel(string spec) => Find(spec) is not null;

    /// <summary>
    /// What <paramref name="spec"/> names when it is a language model, looked at once (a base folder's config.json is read
    /// here and handed on to <see cref="Load(FoundLanguageModel, WeightStorage, string?)"/>); null when it is none.
    /// </summary>
    public static FoundLanguageModel? Find(string spec) =>
        Resolve(spec) is { } folder ? new FoundLanguageModel(spec, folder, null)
        : LanguageModel.Find(spec) is { } source ? new FoundLanguageModel(spec, null, source)
        : null;

    /// <summary>Loads what <see cref="Find"/> found.</summary>
    public static LanguageModel Load(FoundLanguageModel found, WeightStorage dtype = default, string? chatTemplateFile = null) =>
        found.Base is { } source ? LanguageModel.Load(source, dtype, chatTemplateFile) : Load(found.FineTuned!, dtype, chatTemplateFile);

    /// <summary>Loads a base language model, or a fine-tuned one (base + adapter, or the saved weights) with the base's tokenizer.</summary>
    /// <param name="dtype">How the base's weights are held; a run folder's own full weights are read in its dense dtype.</param>
    public static LanguageModel Load(string spec, WeightStorage dtype = default, string? chatTemplateFile = null)
    {
        string? folder = Resolve(spec);
        if (folder is null) return LanguageModel.Load(spec, dtype, chatTemplateFile);
        var (baseModel, methodName) = ReadSpec(folder);
        if (!PeftRegistry.TryGet(methodName, out var method))
        {
            // Full fine-tuning or frozen layers: the whole model is here; the tokenizer comes from the base.
            using var tokenizerSource = LanguageModel.Load(baseModel, dtype, chatTemplateFile);
            var weights = PretrainedDecoder.Load(folder, dtype.Dtype);
            return tokenizerSource.WithModel(new CausalLmModel(weights), $"fine-tuned model {Path.GetFullPath(folder)} (base {baseModel})");
        }
        string adapter = Path.Combine(folder, AdapterFolder);
        var peft = method!;
        var settings = peft.ReadSettings(AdapterFiles.ReadConfig(adapter), Path.Combine(adapter, AdapterFiles.ConfigFile));
        var shape = LanguageModel.ReadConfig(baseModel);
        var lm = LanguageModel.Load(baseModel, dtype, chatTemplateFile, peft.Linears(settings, shape, DecoderLinears.Plain));
        var model = new CausalLmModel(lm.Model, peft.CreatePromptEncoder(settings, shape, lm.Model.WordEmbeddings));
        peft.LoadAdapter(adapter, model);
        model.eval();
        return lm.WithModel(model, $"{peft.Name} adapter {Path.GetFullPath(adapter)} over {baseModel}");
    }

    static (string BaseModel, string Method) ReadSpec(string folder)
    {
        string path = Path.Combine(folder, SpecFile);
        JsonObject spec;
        try
        {
            spec = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
        string Field(string name) => spec[name] is JsonValue v && v.TryGetValue(out string? text) && !string.IsNullOrEmpty(text)
            ? text : throw new InvalidDataException($"{path}: {name} is missing or not a string");
        string baseModel = Field("base_model");
        if (!File.Exists(baseModel) && !Directory.Exists(baseModel))
            throw new FileNotFoundException($"{path}: the base model {baseModel} is not there any more (the fine-tuned model needs it)", baseModel);
        return (baseModel, Field("method"));
    }
}

/// <summary>A language model on disk: a fine-tuned model's folder (<see cref="FineTuned"/>) or a base model (<see cref="Base"/>).</summary>
/// <param name="Spec">What was given (a run folder, a model folder, a .gguf file).</param>
public sealed record FoundLanguageModel(string Spec, string? FineTuned, LanguageModelSource? Base);
