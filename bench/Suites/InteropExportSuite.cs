using SharpTune.ModelFolders;
using System.Text.Json;
using SharpTune.Bench.Reporting;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Writes what the Python side needs to check interoperability (scripts/interop/check_with_peft.py): a tiny
/// random BERT in Hugging Face layout, and for each method a model or adapter trained here for a few steps,
/// with fixed inputs and the logits SharpTune computes for them. No data needed.
/// </summary>
public sealed class InteropExportSuite : IBenchSuite
{
    static readonly string[] Methods = ["full", "lora", "ia3", "bitfit", "prompt", "ptuning", "prefix", "ptuning-v2"];

    public string Name => "interop-export";

    public string Description => "export a tiny base model, one trained model or adapter per method, inputs and logits for the Python check";

    public BenchResult Run(BenchContext context)
    {
        string root = Path.Combine(context.RepoRoot, "bench", "results", "interop");
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        var config = new BertConfig
        {
            VocabSize = 99, HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 37,
            MaxPositionEmbeddings = 64, HiddenDropoutProb = 0.1, AttentionProbsDropoutProb = 0.1,
        };
        var vocab = System.Text.Encoding.UTF8.GetBytes(string.Join("\n",
            new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 94).Select(i => $"w{i}"))) + "\n");
        manual_seed(7);
        string basePath = Path.Combine(root, "base");
        using (var baseModel = new BertModel(config))
            BertFolder.Save(basePath, baseModel, vocab, lowerCase: true);

        // Fixed inputs with padding: [CLS] ... [SEP] [PAD].
        long[,] ids = { { 2, 10, 11, 12, 13, 3, 0, 0 }, { 2, 20, 30, 40, 50, 60, 70, 3 } };
        long[,] mask = { { 1, 1, 1, 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1, 1, 1, 1 } };
        var metrics = new OrderedDictionary<string, double>();
        var manifest = new Dictionary<string, object>();
        foreach (string method in Methods)
        {
            using var pretrained = PretrainedEncoder.Load(basePath);
            var peft = PeftRegistry.TryGet(method, out var m) ? m : null;
            var settings = new PeftSettings { VirtualTokens = 5, EncoderHidden = 16, LoraR = 4, LoraAlpha = 8, LoraDropout = 0.1 };
            using var model = TaskModelBuilder.Build(pretrained, new HeadOptions(TaskKind.SingleLabel, 3), peft, settings);
            if (peft is null) FreezePolicy.Full.Apply(model);
            var data = ToyData(40);
            new Trainer(model, new TrainingOptions { Epochs = 1, BatchSize = 8, LearningRate = peft?.DefaultLearningRate ?? 1e-3, Seed = 3 }, 0,
                (_, _) => new Dictionary<string, double>()).Train(data, null);
            model.eval();
            using var inputIds = tensor(ids);
            using var attention = tensor(mask);
            using var types = zeros_like(inputIds);
            using var logits = model.forward(new ModelInputs(inputIds, attention, types));
            string folder = Path.Combine(root, method);
            var spec = new TaskSpec { Kind = TaskKind.SingleLabel, NumLabels = 3, Method = method, BaseModel = basePath, UsePooler = true };
            TaskModelFolder.Save(folder, model, vocab, true, new SharpTune.Data.LabelMap(["a", "b", "c"]), spec, peft, settings);
            manifest[method] = new Dictionary<string, object?>
            {
                ["folder"] = method,
                ["peft_type"] = peft?.PeftType,
                ["reads_cls_at"] = method is "prompt" or "ptuning" ? settings.VirtualTokens : 0,
                ["logits"] = To2D(logits),
            };
            metrics[$"{method}_exported"] = 1;
        }
        File.WriteAllText(Path.Combine(root, "manifest.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["base"] = "base", ["input_ids"] = ToJagged(ids), ["attention_mask"] = ToJagged(mask), ["methods"] = manifest,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {root}; check with: python scripts/interop/check_with_peft.py {Path.GetRelativePath(context.RepoRoot, root)}");
        return new BenchResult
        {
            Suite = Name, Model = "tiny BERT (hidden 32, 2 layers)", Dataset = "toy", Quick = context.Quick,
            TrainExamples = 40, TestExamples = 2, TrainSeconds = 0, PredictSeconds = 0, Metrics = metrics,
        };
    }

    static List<EncodedExample> ToyData(int count)
    {
        var random = new Random(5);
        return Enumerable.Range(0, count).Select(n =>
        {
            int cls = random.Next(3);
            var tokens = new List<long> { 2 };
            for (int t = 0; t < 6; t++) tokens.Add(random.Next(10, 99));
            tokens[1 + random.Next(6)] = 5 + cls;
            tokens.Add(3);
            return new EncodedExample(tokens.ToArray(), new long[tokens.Count], $"toy:{n}", ClassId: cls);
        }).ToList();
    }

    static long[][] ToJagged(long[,] values) =>
        Enumerable.Range(0, values.GetLength(0)).Select(i => Enumerable.Range(0, values.GetLength(1)).Select(j => values[i, j]).ToArray()).ToArray();

    static float[][] To2D(Tensor logits)
    {
        var flat = logits.detach().cpu().data<float>().ToArray();
        int columns = (int)logits.shape[1];
        return Enumerable.Range(0, (int)logits.shape[0]).Select(i => flat.Skip(i * columns).Take(columns).ToArray()).ToArray();
    }
}
