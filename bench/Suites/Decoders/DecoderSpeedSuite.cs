using SharpTune.Tests.Oracle;
using System.Diagnostics;
using SharpTune.Bench.Reporting;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// SharpTune's decoder inference against llama.cpp on the same GGUF files, same threads, in turns: prompt processing
/// (one forward over 512 tokens, batch 1, to the last position's logits as llama.cpp computes them) and greedy generation of 32 tokens with the key/value cache, for a Qwen2
/// model with Qwen2.5-0.5B's shapes and random weights written as F32 and F16, and Q8_0, Q4_0 and Q4_K_M copies made by
/// llama.cpp's quantizer. SharpTune keeps every file's matrices as stored (<c>--dtype stored</c>, the CLI's default);
/// with SHARPTUNE_BENCH_DENSE=1 the former dense rows (F32 in fp32, F16 in bf16, Q4_K_M dequantized to fp32) are added.
/// Then, one process per file (<see cref="StoredResidentSuite"/>), the resident memory after loading it stored and
/// after generating a few tokens, against the file's size.
/// </summary>
public sealed class DecoderSpeedSuite : IBenchSuite
{
    const int Threads = 2;
    const int PromptTokens = 512;
    const int GeneratedTokens = 32;
    const int ShortPrompt = 8;

    /// <summary>Goals (issue 19), as ratios SharpTune / llama.cpp: prompt processing for every type; generation for the
    /// quantized types and for F32/F16.</summary>
    const double PromptGoal = 1.5, QuantizedGenerationGoal = 1.0, FloatGenerationGoal = 0.9;

    /// <summary>Resident memory after loading a stored file: at most this many times the file's size, plus the process's baseline.</summary>
    public const double ResidentGoal = 1.2;

    sealed record Variant(string Key, string Label, string Path, WeightStorage Storage, double GenerationGoal);

    /// <summary>The files, by key: how each is made from the F32 file (null: written directly).</summary>
    public static IReadOnlyList<(string Key, LLama.Native.LLamaFtype? Type)> Files { get; } =
    [
        ("f32", null), ("f16", null), ("q8_0", LLama.Native.LLamaFtype.MOSTLY_Q8_0), ("q4_0", LLama.Native.LLamaFtype.MOSTLY_Q4_0),
        ("q4_k_m", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M),
    ];

    /// <summary>Writes (or finds) every file of <see cref="Files"/>; returns key → path.</summary>
    public static Dictionary<string, string> EnsureFiles(Qwen2Shape shape, string folder)
    {
        var (f32, f16) = RandomQwen2Gguf.Write(shape, folder);
        var paths = new Dictionary<string, string> { ["f32"] = f32, ["f16"] = f16 };
        foreach (var (key, type) in Files)
            if (type is { } t) paths[key] = RandomQwen2Gguf.Quantized(shape, folder, key, t);
        return paths;
    }

    public string Name => "decoder-speed";

    public string Description => "Qwen2.5-0.5B-shaped decoder: prompt processing and generation vs llama.cpp (F32, F16, Q8_0, Q4_0, Q4_K_M; stored weights), and resident memory per file";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        Console.WriteLine($"CPU {mkl.Cpu}; {Threads} threads for both engines; load {Load()}");
        var shape = context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;
        string folder = RandomQwen2Gguf.Folder(context.Quick);
        var clock = Stopwatch.StartNew();
        var files = EnsureFiles(shape, folder);
        Console.WriteLine($"model files ({shape.Parameters:N0} parameters) ready in {clock.Elapsed.TotalSeconds:F0} s under {folder}");

        var variants = new List<Variant>
        {
            new("f32", "F32, stored", files["f32"], WeightStorage.AsStored, FloatGenerationGoal),
            new("f16", "F16, stored", files["f16"], WeightStorage.AsStored, FloatGenerationGoal),
            new("q8_0", "Q8_0, stored", files["q8_0"], WeightStorage.AsStored, QuantizedGenerationGoal),
            new("q4_0", "Q4_0, stored", files["q4_0"], WeightStorage.AsStored, QuantizedGenerationGoal),
            new("q4_k_m", "Q4_K_M, stored", files["q4_k_m"], WeightStorage.AsStored, QuantizedGenerationGoal),
        };
        if (Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_DENSE") == "1")
            variants.AddRange(
            [
                new("f32_dense", "F32 (SharpTune: fp32 weights)", files["f32"], ScalarType.Float32, FloatGenerationGoal),
                new("f16_dense", "F16 (SharpTune: bf16 weights)", files["f16"], ScalarType.BFloat16, FloatGenerationGoal),
                new("q4_k_m_dense", "Q4_K_M (SharpTune: dequantized to fp32)", files["q4_k_m"], ScalarType.Float32, QuantizedGenerationGoal),
            ]);
        // SHARPTUNE_BENCH_VARIANTS=q4_k_m,q8_0 measures only those (a busy shared machine); SHARPTUNE_BENCH_ROUNDS sets the rounds.
        if (Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_VARIANTS") is { Length: > 0 } only)
            variants = variants.Where(v => only.Split(',').Contains(v.Key)).ToList();
        var metrics = new OrderedDictionary<string, double>();
        var notes = new List<string>();
        foreach (var variant in variants) Measure(variant, shape, context.Quick, metrics, notes);
        metrics["peak_working_set_mb"] = Process.GetCurrentProcess().PeakWorkingSet64 / 1e6;

        // Resident memory of a stored load, one process per file (llama.cpp's mapping would count in this one).
        foreach (var (key, _) in Files)
        {
            Console.WriteLine($"\n-- {StoredResidentSuite.Prefix}{key}");
            var child = DecoderMemorySuite.RunChild(context, StoredResidentSuite.Prefix + key);
            if (child is null) { notes.Add($"{StoredResidentSuite.Prefix}{key} failed (its output is above)"); continue; }
            foreach (var (name, value) in child) metrics[$"{key}_resident_{name}"] = value;
        }

        PrintSummary(metrics, variants, notes, mkl.Cpu.ToString());
        if (!context.Quick && Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_KEEP_FILES") != "1")
        {
            Directory.Delete(folder, recursive: true);                          // 4 GB of random weights; rewritten in a minute when needed
            Console.WriteLine($"deleted {folder}");
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name} ({shape.Parameters:N0} parameters, random weights), {Threads} threads; CPU {mkl.Cpu}; load at the end {Load()}; " +
                    $"llama.cpp through LLamaSharp, F32 K/V cache, no flash attention" + (notes.Count > 0 ? "; " + string.Join("; ", notes) : ""),
            Dataset = $"random token ids: a {PromptTokens}-token prompt, and {GeneratedTokens} greedy tokens after {ShortPrompt}",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = variants.Count,
            TrainSeconds = 0,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    /// <summary>The load averages of /proc/loadavg (1, 5, 15 minutes): the machine is shared.</summary>
    public static string Load() => string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    static void Measure(Variant variant, Qwen2Shape shape, bool quick, OrderedDictionary<string, double> metrics, List<string> notes)
    {
        Console.WriteLine($"\n{variant.Label}: {variant.Path} (load {Load()})");
        var random = new Random(17);
        var prompt = Enumerable.Range(0, PromptTokens).Select(_ => random.Next(3, shape.Vocab)).ToList();
        var shortPrompt = prompt.Take(ShortPrompt).ToList();
        string k = variant.Key;
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_ROUNDS"), out int r) ? r : quick ? 1 : 3;

        // llama.cpp maps the file and computes on it as stored: its weights take the file's size.
        metrics[$"{k}_file_mb"] = new FileInfo(variant.Path).Length / 1e6;
        using var llama = new LlamaCpp(variant.Path, contextSize: 1024, batchSize: PromptTokens, threads: Threads);
        llama.Prompt(prompt);

        long before = WorkingSet();
        using var model = LanguageModel.Load(variant.Path, variant.Storage);
        var lm = model.Model;
        lm.Module.eval();
        using var ids = tensor(prompt.Select(t => (long)t).ToArray(), [1, PromptTokens]);
        void Forward()
        {
            using var mode = inference_mode();
            using var scope = NewDisposeScope();
            lm.ForwardLast(ids);                     // the last position's logits, as llama.cpp's prompt decode (and generation) computes
        }
        Forward();
        metrics[$"{k}_sharptune_dense_parameters_mb"] = lm.Module.parameters().Sum(p => p.numel() * p.element_size()) / 1e6;
        metrics[$"{k}_sharptune_resident_growth_mb"] = (WorkingSet() - before) / 1e6;    // weights (mapped pages read), plus what one 512-token forward left allocated

        // (a) Prompt processing: one forward over 512 tokens to the last position's logits against one decode of them (llama.cpp outputs the last position only), in turns.
        var pp = InTurns(rounds, Forward, () => llama.Prompt(prompt));
        Record(metrics, $"{k}_prompt", pp, PromptTokens);
        metrics[$"{k}_prompt_cpu_ratio_vs_llamacpp"] = Median(pp[3]) / Median(pp[2]);
        double ppOurs = PromptTokens / Median(pp[0]), ppLlama = PromptTokens / Median(pp[1]);
        Console.WriteLine($"  prompt {PromptTokens}: SharpTune {ppOurs:F1} tokens/s, llama.cpp {ppLlama:F1} tokens/s, ratio {ppOurs / ppLlama:F2} (medians of {pp[0].Count}); CPU seconds {Median(pp[2]):F1} against {Median(pp[3]):F1}");

        // (b) Generation: greedy tokens after a short prompt, no stop tokens, in turns (one warm-up of 16 tokens each).
        IReadOnlyList<int> oursTokens = [], llamaTokens = [];
        var generator = new TextGenerator(lm, new GenerationOptions { Greedy = true, MaxNewTokens = GeneratedTokens });
        new TextGenerator(lm, new GenerationOptions { Greedy = true, MaxNewTokens = 16 }).Generate([shortPrompt]);
        llama.Greedy(shortPrompt, 16);
        var gen = InTurns(rounds,
            () => oursTokens = generator.Generate([shortPrompt])[0].TokenIds,
            () => llamaTokens = llama.Greedy(shortPrompt, GeneratedTokens));
        if (oursTokens.Count != GeneratedTokens) throw new InvalidOperationException($"SharpTune generated {oursTokens.Count} tokens, expected {GeneratedTokens}");
        Record(metrics, $"{k}_generate", gen, GeneratedTokens);
        metrics[$"{k}_generate_cpu_ratio_vs_llamacpp"] = Median(gen[3]) / Median(gen[2]);
        double tgOurs = GeneratedTokens / Median(gen[0]), tgLlama = GeneratedTokens / Median(gen[1]);
        int agree = oursTokens.Zip(llamaTokens).TakeWhile(p => p.First == p.Second).Count();
        metrics[$"{k}_generate_same_greedy_prefix_tokens"] = agree;
        Console.WriteLine($"  generate {GeneratedTokens}: SharpTune {tgOurs:F2} tokens/s, llama.cpp {tgLlama:F2} tokens/s, ratio {tgOurs / tgLlama:F2}; CPU seconds {Median(gen[2]):F1} against {Median(gen[3]):F1}; greedy tokens equal for the first {agree}");

        // Where a generated token's time goes, when generation is below its goal.
        if (tgOurs / tgLlama < variant.GenerationGoal || (quick && k == "f32"))
        {
            var profile = GenerationProfile.Measure(lm, ShortPrompt + GeneratedTokens / 2, quick ? 3 : 5);
            double perToken = 1000 * Median(gen[0]) / GeneratedTokens;
            metrics[$"{k}_profile_generated_token_ms"] = perToken;
            metrics[$"{k}_profile_llamacpp_token_ms"] = 1000 * Median(gen[1]) / GeneratedTokens;
            metrics[$"{k}_profile_forward_ms"] = profile.Forward;
            metrics[$"{k}_profile_forward_mean_of_16_in_a_row_ms"] = profile.ForwardInARow;
            metrics[$"{k}_profile_matmul_ms"] = profile.Matmul;
            metrics[$"{k}_profile_attention_ms"] = profile.Attention;
            metrics[$"{k}_profile_rest_of_forward_ms"] = profile.Rest;
            metrics[$"{k}_profile_generator_outside_forward_ms"] = Math.Max(0, perToken - profile.Forward);
            metrics[$"{k}_profile_matmul_weight_gb_per_s"] = profile.MatmulGigabytesPerSecond;
            metrics[$"{k}_profile_llamacpp_weight_gb_per_s"] = profile.WeightBytes / Median(gen[1]) * GeneratedTokens / 1e9;
            Console.WriteLine($"  one generated token: {perToken:F1} ms (llama.cpp {1000 * Median(gen[1]) / GeneratedTokens:F1} ms); step {profile.Forward:F1} ms = " +
                              $"products {profile.Matmul:F1} ms ({profile.MatmulGigabytesPerSecond:F1} GB/s of weights) + attention {profile.Attention:F1} ms + rest {profile.Rest:F1} ms; " +
                              $"16 steps in a row {profile.ForwardInARow:F1} ms each; generator outside the step {Math.Max(0, perToken - profile.Forward):F1} ms");
        }
    }

    /// <summary>Tokens/s of each engine (median, slowest, fastest run) and the ratio of the medians.</summary>
    static void Record(OrderedDictionary<string, double> metrics, string prefix, List<double>[] times, int tokens)
    {
        string[] engines = ["sharptune", "llamacpp"];
        for (int i = 0; i < 2; i++)
        {
            metrics[$"{prefix}_{engines[i]}_tokens_per_s"] = tokens / Median(times[i]);
            metrics[$"{prefix}_{engines[i]}_tokens_per_s_min"] = tokens / times[i].Max();
            metrics[$"{prefix}_{engines[i]}_tokens_per_s_max"] = tokens / times[i].Min();
        }
        metrics[$"{prefix}_ratio_vs_llamacpp"] = Median(times[1]) / Median(times[0]);
    }

    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>
    /// Wall-clock times of each action over <paramref name="rounds"/> rounds, the actions taking turns once a round (the
    /// callers warm both up first), then the process's CPU seconds of each (this process runs nothing else meanwhile):
    /// [wall 0, wall 1, ..., CPU 0, CPU 1, ...]. On a busy shared machine the CPU seconds depend less on the other
    /// processes than the wall time does (spinning worker threads count in them).
    /// </summary>
    static List<double>[] InTurns(int rounds, params Action[] actions)
    {
        var times = actions.Concat(actions).Select(_ => new List<double>()).ToArray();
        using var self = Process.GetCurrentProcess();
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < actions.Length; i++)
            {
                self.Refresh();
                var cpu = self.TotalProcessorTime;
                var clock = Stopwatch.StartNew();
                actions[i]();
                times[i].Add(clock.Elapsed.TotalSeconds);
                self.Refresh();
                times[actions.Length + i].Add((self.TotalProcessorTime - cpu).TotalSeconds);
            }
        return times;
    }

    static long WorkingSet()
    {
        GC.Collect();
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    static void PrintSummary(OrderedDictionary<string, double> m, List<Variant> variants, List<string> notes, string cpu)
    {
        Console.WriteLine($"\ndecoder speed against llama.cpp, tokens/s, medians ({cpu}, {Threads} threads, load {Load()}):");
        Console.WriteLine($"  {"file",-13} {"prompt ST",10} {"prompt llama",12} {"ratio",6} {"gen ST",8} {"gen llama",10} {"ratio",6}");
        foreach (var variant in variants)
        {
            string k = variant.Key;
            string V(string name, string format) => m.TryGetValue($"{k}_{name}", out double v) ? v.ToString(format) : "-";
            Console.WriteLine($"  {k,-13} {V("prompt_sharptune_tokens_per_s", "F1"),10} {V("prompt_llamacpp_tokens_per_s", "F1"),12} {V("prompt_ratio_vs_llamacpp", "F2"),6} " +
                              $"{V("generate_sharptune_tokens_per_s", "F2"),8} {V("generate_llamacpp_tokens_per_s", "F2"),10} {V("generate_ratio_vs_llamacpp", "F2"),6}");
        }
        string Goal(string key, double goal, string what) =>
            m.TryGetValue(key, out double r) ? $"  {what} >= {goal:F1}x llama.cpp: {r:F2}x, {(r >= goal ? "met" : "NOT met")}" : $"  {what}: not measured";
        Console.WriteLine("goals:");
        foreach (var variant in variants.Where(v => v.Storage.Stored))
        {
            Console.WriteLine(Goal($"{variant.Key}_prompt_ratio_vs_llamacpp", PromptGoal, $"prompt processing, {variant.Key}"));
            Console.WriteLine(Goal($"{variant.Key}_generate_ratio_vs_llamacpp", variant.GenerationGoal, $"generation, {variant.Key}"));
        }
        Console.WriteLine("resident memory after a stored load (current RSS - baseline) <= 1.2 x the file's size:");
        foreach (var (key, _) in Files)
            if (m.TryGetValue($"{key}_resident_after_generate_over_file", out double r))
                Console.WriteLine($"  {key}: after load {m[$"{key}_resident_after_load_over_file"]:F2}x, after generating {r:F2}x, peak {m[$"{key}_resident_peak_over_file"]:F2}x the file " +
                                  $"({m[$"{key}_resident_file_mb"]:F0} MB): {(r <= ResidentGoal ? "met" : "NOT met")}");
        foreach (string note in notes) Console.WriteLine("  note: " + note);
    }
}
