using SharpTune.Bench.Reporting;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// One process of decoder-speed: the resident memory of a stored load of one of its files (<c>--dtype stored</c>), against
/// the file's size. The baseline is this process's resident set before the load, with the runtime, libtorch and the
/// block kernels' thread pool already started (a run that loads nothing); then after <c>LanguageModel.Load</c>, after
/// generating 16 tokens, and the peak (VmHWM). Goal: (resident - baseline) &lt;= 1.2 x the file.
/// </summary>
public sealed class StoredResidentSuite(string key) : IBenchSuite
{
    public const string Prefix = "decoder-speed-resident-";
    const int Threads = 2, Generated = 16;

    public string Name => Prefix + key;

    public string Description => $"one process: resident memory of the {key} file of decoder-speed loaded stored (part of decoder-speed)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        var shape = context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;
        string path = DecoderSpeedSuite.EnsureFiles(shape, RandomQwen2Gguf.Folder(context.Quick))[key];
        var metrics = Measure(path, Generated);
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name}, random weights, {path} loaded stored; {Threads} threads; CPU {mkl.Cpu}",
            Dataset = $"{Generated} greedy tokens after 8 random ones",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = 0,
            PredictSeconds = metrics["load_seconds"] + metrics["generate_seconds"],
            Metrics = metrics,
        };
    }

    /// <summary>Loads <paramref name="path"/> stored in this process and generates <paramref name="generated"/> tokens; resident sets in MB and their ratios to the file.</summary>
    public static OrderedDictionary<string, double> Measure(string path, int generated)
    {
        using (var warm = randn(64, 64)) warm.matmul(warm).Dispose();           // libtorch's pools started, as a run that loads nothing has them
        GC.Collect();
        double baseline = Memory.ResidentMb(), fileMb = new FileInfo(path).Length / 1e6;
        Memory.ResetPeak();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var lm = LanguageModel.Load(path, WeightStorage.AsStored);
        double loadSeconds = clock.Elapsed.TotalSeconds;
        GC.Collect();
        double afterLoad = Memory.ResidentMb();
        var prompt = Enumerable.Range(0, 8).Select(i => 3 + 97 * i % (lm.Model.Info.VocabSize - 3)).ToList();
        lm.Model.Module.eval();
        new TextGenerator(lm.Model, new GenerationOptions { Greedy = true, MaxNewTokens = 2 }).Generate([prompt]);   // warm-up: kernels jitted, pages read
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        var cpu = self.TotalProcessorTime;
        clock.Restart();
        var generator = new TextGenerator(lm.Model, new GenerationOptions { Greedy = true, MaxNewTokens = generated });
        var tokens = generator.Generate([prompt])[0].TokenIds;
        double generateSeconds = clock.Elapsed.TotalSeconds;
        self.Refresh();
        double generateCpu = (self.TotalProcessorTime - cpu).TotalSeconds;
        GC.Collect();
        double afterGenerate = Memory.ResidentMb(), peak = Memory.PeakMb();
        Console.WriteLine($"  {Path.GetFileName(path)} ({fileMb:F0} MB): baseline {baseline:F0} MB; after load {afterLoad:F0} MB (+{afterLoad - baseline:F0}) in {loadSeconds:F1} s; " +
                          $"after {tokens.Count} tokens {afterGenerate:F0} MB (+{afterGenerate - baseline:F0}), {tokens.Count / generateSeconds:F2} tokens/s ({generateCpu:F1} CPU seconds); peak {peak:F0} MB (+{peak - baseline:F0})");
        return new OrderedDictionary<string, double>
        {
            ["file_mb"] = fileMb,
            ["baseline_mb"] = baseline,
            ["after_load_mb"] = afterLoad,
            ["after_generate_mb"] = afterGenerate,
            ["peak_mb"] = peak,
            ["after_load_over_file"] = (afterLoad - baseline) / fileMb,
            ["after_generate_over_file"] = (afterGenerate - baseline) / fileMb,
            ["peak_over_file"] = (peak - baseline) / fileMb,
            // the same run split as llama.cpp prints it: the prompt's pass (which gives the first token), then the steps after it
            ["generate_prompt_seconds"] = generator.LastTiming.PromptSeconds,
            ["generate_after_prompt_tokens_per_s"] = generator.LastTiming.DecodeTokensPerSecond,
            ["load_seconds"] = loadSeconds,
            ["generate_seconds"] = generateSeconds,
            ["generate_tokens_per_s"] = tokens.Count / generateSeconds,
            ["generate_cpu_seconds"] = generateCpu,
        };
    }
}
