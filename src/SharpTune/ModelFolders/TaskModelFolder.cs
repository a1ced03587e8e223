using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>A fine-tuned model ready to evaluate or predict: the task model, its vocabulary, labels and task.</summary>
public sealed class LoadedTaskModel(TaskModel model, byte[] vocab, bool lowerCase, LabelMap? labels, TaskSpec spec) : IDisposable
{
    public TaskModel Model { get; } = model;
    public byte[] Vocab { get; } = vocab;
    public bool LowerCase { get; } = lowerCase;
    public LabelMap? Labels { get; } = labels;
    public TaskSpec Spec { get; } = spec;

    /// <summary>The model's tokenizer, from the vocabulary saved with it.</summary>
    public BertTextTokenizer CreateTokenizer() => BertTextTokenizer.FromVocabStream(new MemoryStream(Vocab), LowerCase, "model vocabulary");

    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Saves and loads fine-tuned models. A fully fine-tuned model is a Hugging Face folder that transformers
/// loads as <c>BertForSequenceClassification</c> / <c>BertForTokenClassification</c> (plus <c>crf.*</c> when
/// present); a parameter-efficient one is a PEFT adapter folder (<c>adapter/</c>) over the base model.
/// Both carry <c>sharptune_task.json</c> and <c>labels.json</c>.
/// </summary>
public static class TaskModelFolder
{
    public const string LabelsFile = "labels.json";
    public const string AdapterFolder = "adapter";

    public static void Save(string folder, TaskModel model, byte[] vocab, bool lowerCase, LabelMap? labels, TaskSpec spec,
        IPeftMethod? method = null, PeftSettings? settings = null)
    {
        // Write into a sibling temporary folder and swap it in, so a reader never sees a half-written model.
        string full = Path.GetFullPath(folder);
        string temporary = full + $".{Guid.NewGuid():N}.tmp";
        Directory.CreateDirectory(temporary);
        try
        {
            var config = HeadConfig(model.Encoder.Config, model.TaskHead, labels);
            if (method is null)
            {
                var tensors = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
                SafeTensors.Save(Path.Combine(temporary, HuggingFaceCheckpoint.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            }
            else
            {
                // adapter_config.json names the base as Python finds it; sharptune_task.json keeps spec.BaseModel,
                // what the user typed, and is what LoadWithAdapter, AdapterHost and predict reload the base from.
                method.SaveAdapter(Path.Combine(temporary, AdapterFolder), model, settings ?? new PeftSettings(),
                    BuiltInModels.HuggingFaceName(spec.BaseModel));
            }
            AtomicFile.WriteAllText(Path.Combine(temporary, HuggingFaceCheckpoint.ConfigFile), config.ToJson() + "\n");
            File.WriteAllBytes(Path.Combine(temporary, HuggingFaceCheckpoint.VocabFile), vocab);
            AtomicFile.WriteAllText(Path.Combine(temporary, HuggingFaceCheckpoint.TokenizerConfigFile),
                $"{{\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"do_lower_case\": {(lowerCase ? "true" : "false")},\n  \"model_max_length\": {spec.MaxLength}\n}}\n");
            AtomicFile.WriteAllText(Path.Combine(temporary, TaskSpec.FileName), spec.ToJson() + "\n");
            labels?.Save(Path.Combine(temporary, LabelsFile));

            string old = full + $".{Guid.NewGuid():N}.old";
            if (Directory.Exists(full)) Directory.Move(full, old);
            Directory.Move(temporary, full);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
        catch
        {
            try { Directory.Delete(temporary, recursive: true); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>
    /// Loads a model saved by <see cref="Save"/>. <paramref name="folder"/> may be a run folder, whose
    /// <c>best/</c> (else <c>final/</c>) model is taken.
    /// </summary>
    public static LoadedTaskModel Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Model folder not found: {folder}");
        folder = Resolve(folder);
        var spec = TaskSpec.Load(folder);
        var config = BertConfig.Load(Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile));
        string labelsPath = Path.Combine(folder, LabelsFile);
        var labels = File.Exists(labelsPath) ? LabelMap.Load(labelsPath) : null;
        string vocabPath = Path.Combine(folder, HuggingFaceCheckpoint.VocabFile);
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{folder}: {HuggingFaceCheckpoint.VocabFile} is missing", vocabPath);
        byte[] vocab = File.ReadAllBytes(vocabPath);
        bool lowerCase = HuggingFaceCheckpoint.ReadLowerCase(folder);

        string adapter = Path.Combine(folder, AdapterFolder);
        if (Directory.Exists(adapter))
        {
            var tokenizer = BertTextTokenizer.FromVocabStream(new MemoryStream(vocab), lowerCase, vocabPath);
            return new LoadedTaskModel(LoadWithAdapter(adapter, spec, tokenizer), vocab, lowerCase, labels, spec);
        }

        string weightsPath = Path.Combine(folder, HuggingFaceCheckpoint.WeightsFile);
        var weights = SafeTensors.Load(weightsPath);
        bool hasPooler = weights.ContainsKey("bert.pooler.dense.weight");
        var model = new TaskModel(new BertModel(config with { Id2Label = null, Label2Id = null }, hasPooler), spec.Head);
        StateDictLoader.Load(model, weights, weightsPath);
        foreach (var tensor in weights.Values) tensor.Dispose();
        model.eval();
        return new LoadedTaskModel(model, vocab, lowerCase, labels, spec);
    }

    /// <summary>
    /// The folder holding the saved model: <paramref name="folder"/> itself when it has a task description, else a
    /// run folder's <c>best/</c>, else its <c>final/</c>; otherwise <paramref name="folder"/>, whose loading then names what is missing.
    /// </summary>
    public static string Resolve(string folder)
    {
        if (File.Exists(Path.Combine(folder, TaskSpec.FileName))) return folder;
        foreach (string sub in new[] { "best", "final" })
            if (File.Exists(Path.Combine(folder, sub, TaskSpec.FileName))) return Path.Combine(folder, sub);
        return folder;
    }

    /// <summary>Rebuilds base model + adapter: the base comes from the spec's base model, the adapter from PEFT files.</summary>
    public static TaskModel LoadWithAdapter(string adapterFolder, TaskSpec spec, BertTextTokenizer tokenizer)
    {
        using var pretrained = PretrainedEncoder.Load(spec.BaseModel);
        return BuildWithAdapter(adapterFolder, spec, pretrained, tokenizer);
    }

    /// <summary>A task model over <paramref name="pretrained"/> with the adapter of <paramref name="adapterFolder"/> loaded, in eval mode.</summary>
    public static TaskModel BuildWithAdapter(string adapterFolder, TaskSpec spec, PretrainedEncoder pretrained, BertTextTokenizer tokenizer)
    {
        var method = PeftRegistry.Get(spec.Method);
        var settings = method.ReadSettings(AdapterFiles.ReadConfig(adapterFolder), Path.Combine(adapterFolder, AdapterFiles.ConfigFile))
            .WithPromptInitTokens(tokenizer);
        var model = TaskModelBuilder.Build(pretrained, spec.Head, method, settings);
        method.LoadAdapter(adapterFolder, model);
        model.eval();
        return model;
    }

    /// <summary>The config.json transformers reads for a task model: architecture, labels, problem type.</summary>
    static BertConfig HeadConfig(BertConfig config, ITaskHead head, LabelMap? labels)
    {
        var id2label = labels?.Id2Label ?? new Dictionary<string, string> { ["0"] = "LABEL_0" };
        var label2id = labels?.Label2Id ?? new Dictionary<string, int> { ["LABEL_0"] = 0 };
        return config with
        {
            Architectures = ["Bert" + head.ArchitectureSuffix],
            Id2Label = id2label,
            Label2Id = label2id,
            ProblemType = head.ProblemType,
        };
    }
}
