using System.Text.Json.Nodes;
using SharpTune.Bench.Reporting;
using SharpTune.Training;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Each LoRA variant against plain LoRA at equal rank and steps on the peft suite's data (every 12th SpamAssassin training
/// message, 3 epochs of batch 32, the full test split): accuracy, the first epoch's validation loss (how fast it starts),
/// time per step and peak memory, each variant in a process of its own. Full fine-tuning on the same budget is the
/// reference for the gap LoRA leaves.
/// </summary>
public sealed class LoraVariantsSuite : IBenchSuite
{
    const int Rank = 4, Epochs = 3;
    const double LearningRate = 1e-3;

    /// <summary>Variant name and the flags it adds to <c>--method lora --lora-r 4 --lora-alpha 8</c>.</summary>
    public static readonly (string Name, Func<FineTuneOptions, FineTuneOptions> Configure)[] Variants =
    [
        ("lora", o => o),
        ("dora", o => o with { Peft = o.Peft with { LoraDora = true } }),
        ("rslora", o => o with { Peft = o.Peft with { LoraRsLora = true } }),
        ("pissa", o => o with { Peft = o.Peft with { LoraInit = "pissa" } }),
        ("olora", o => o with { Peft = o.Peft with { LoraInit = "olora" } }),
        ("loraplus", o => o with { Training = o.Training with { LoraPlusLrRatio = 16 } }),
    ];

    static FineTuneOptions LowRank(FineTuneOptions o) => o with { Peft = o.Peft with { LoraR = Rank, LoraAlpha = 2 * Rank } };

    /// <summary>The suite of one variant (and of full fine-tuning), each run in its own process.</summary>
    public static IEnumerable<IBenchSuite> VariantSuites() =>
        Variants.Select(v => (IBenchSuite)new SharpTuneSpamSuite("lora", Epochs, LearningRate, PeftComparisonSuite.TrainEvery, $"lora-variant-{v.Name}",
            configure: o => v.Configure(LowRank(o))))
        .Append(new SharpTuneSpamSuite("full", Epochs, 1e-4, PeftComparisonSuite.TrainEvery, "lora-variant-full"));

    public string Name => "lora-variants";

    public string Description => $"DoRA, rsLoRA, PiSSA, OLoRA and LoRA+ against LoRA (r {Rank}, query+value) and full fine-tuning on every {PeftComparisonSuite.TrainEvery}th SpamAssassin training message";

    public BenchResult Run(BenchContext context)
    {
        var metrics = new OrderedDictionary<string, double>();
        BenchResult? first = null;
        foreach (string variant in Variants.Select(v => v.Name).Append("full"))
        {
            string suite = $"lora-variant-{variant}";
            // --reuse: the result a run of that child alone wrote (one variant run again, the table rebuilt).
            string previous = ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), suite, context.Quick);
            var result = context.Reuse && File.Exists(previous) ? ResultWriter.Read(previous) : PeftComparisonSuite.RunChild(suite, context);
            first ??= result;
            foreach (string key in new[] { "accuracy", "f1", "trainable_parameters", "seconds_per_step", "peak_memory_mib" })
                metrics[$"{variant}_{key}"] = result.Metrics[key];
            // The validation loss and accuracy after each epoch, from the run's log: how fast each variant starts.
            string log = Path.Combine(context.RepoRoot, "bench", "results", "runs", suite + (context.Quick ? "-quick" : ""), "metrics.jsonl");
            var evals = File.ReadLines(log).Select(l => JsonNode.Parse(l)!.AsObject()).Where(o => o["type"]?.GetValue<string>() == "eval").ToList();
            for (int e = 0; e < evals.Count; e++)
            {
                metrics[$"{variant}_eval{e + 1}_loss"] = evals[e]["eval_loss"]!.GetValue<double>();
                if (evals[e]["eval_accuracy"] is { } accuracy) metrics[$"{variant}_eval{e + 1}_accuracy"] = accuracy.GetValue<double>();
            }
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"SharpTune minilm, LoRA r {Rank} alpha {2 * Rank} on query and value at lr {LearningRate:G3} with each variant; full fine-tuning at lr 1e-4",
            Dataset = $"SpamAssassin (every {PeftComparisonSuite.TrainEvery}th training message; full test split)",
            Quick = context.Quick,
            TrainExamples = first!.TrainExamples,
            TestExamples = first.TestExamples,
            TrainSeconds = 0,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }
}
