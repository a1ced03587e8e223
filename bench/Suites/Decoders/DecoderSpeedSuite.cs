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
/// (one forward over 512 tokens, batch 1) and greedy generation of 128 tokens with the key/value cache, for a Qwen2
/// model with Qwen2.5-0.5B's shapes and random weights written as F32, F16 (SharpTune holds it in bf16) and a
/// Q4_K_M copy made by llama.cpp's quantizer (llama.cpp computes on the quantized blocks; SharpTune dequantizes on load).
/// </summary>
public sealed class DecoderSpeedSuite : IBenchSuite
{
    const int Threads = 2;
    const int PromptTokens = 512;
    const int GeneratedTokens = 128;
    const int ShortPrompt = 8;

    /// <summary>Goals: prompt processing at F32 and generation at F32 and F16/bf16, as ratios SharpTune / llama.cpp.</summary>
    const double PromptGoalF32 = 1.5, GenerationGoal = 0.8;

    sealed record Variant(string Key, string Label, string Path, ScalarType Dtype);

    public string Name => "decoder-speed";

    public string Description => "Qwen2.5-0.5B-shaped decoder: prompt processing and generation vs llama.cpp (F32, F16/bf16, Q4_K_M)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        Console.WriteLine($"CPU {mkl.Cpu}; {Threads} threads for both engines");
        var shape = context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;
        string folder = Path.Combine(Path.GetTempPath(), "sharptune-decoder-speed", context.Quick ? "quick" : "full");
        var clock = Stopwatch.StartNew();
        var (f32, f16) = RandomQwen2Gguf.Write(shape, folder);
        string q4 = Path.Combine(folder, "model-q4_k_m.gguf");
        if (!File.Exists(q4))
        {
            LlamaCpp.Quantize(f32, q4 + ".partial", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M, Threads);
            File.Move(q4 + ".partial", q4);
        }
        Console.WriteLine($"model files ({shape.Parameters:N0} parameters) ready in {clock.Elapsed.TotalSeconds:F0} s under {folder}");

        var variants = new[]
        {
            new Variant("f32", "F32", f32, ScalarType.Float32),
            new Variant("f16", "F16 (SharpTune: bf16 weights)", f16, ScalarType.BFloat16),
            new Variant("q4_k_m", "Q4_K_M (SharpTune: dequantized to fp32)", q4, ScalarType.Float32),
        };
        var metrics = new OrderedDictionary<string, double>();
        var notes = new List<string>();
        foreach (var variant in variants) Measure(variant, shape, context.Quick, metrics, notes);
        metrics["peak_working_set_mb"] = Process.GetCurrentProcess().PeakWorkingSet64 / 1e6;

        PrintSummary(metrics, notes, mkl.Cpu.ToString());
        if (!context.Quick)
        {
            Directory.Delete(folder, recursive: true);                          // 4 GB of random weights; rewritten in a minute when needed
            Console.WriteLine($"deleted {folder}");
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name} ({shape.Parameters:N0} parameters, random weights), {Threads} threads; CPU {mkl.Cpu}; " +
                    $"llama.cpp through LLamaSharp, F32 K/V cache, no flash attention" + (notes.Count > 0 ? "; " + string.Join("; ", notes) : ""),
            Dataset = $"random token ids: a {PromptTokens}-token prompt, and {GeneratedTokens} greedy tokens after {ShortPrompt}",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = variants.Length,
            TrainSeconds = 0,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    static void Measure(Variant variant, Qwen2Shape shape, bool quick, OrderedDictionary<string, double> metrics, List<string> notes)
    {
        Console.WriteLine($"\n{variant.Label}: {variant.Path}");
        var random = new Random(17);
        var prompt = Enumerable.Range(0, PromptTokens).Select(_ => random.Next(3, shape.Vocab)).ToList();
        var shortPrompt = prompt.Take(ShortPrompt).ToList();
        string k = variant.Key;

        // llama.cpp maps the file and computes on it as stored: its weights take the file's size.
        metrics[$"{k}_file_mb"] = new FileInfo(variant.Path).Length / 1e6;
        using var llama = new LlamaCpp(variant.Path, contextSize: 1024, batchSize: PromptTokens, threads: Threads);
        llama.Prompt(prompt);

        LanguageModel? ours;
        long before = WorkingSet();
        try
        {
            ours = LanguageModel.Load(variant.Path, variant.Dtype);
        }
        catch (Exception e) when (e is NotSupportedException or InvalidDataException)
        {
            // Report what llama.cpp does and why SharpTune could not take part.
            string note = $"{variant.Key}: SharpTune cannot load the file ({e.Message})";
            Console.WriteLine("  " + note);
            notes.Add(note);
            double pp = PromptTokens / Timing.Interleaved(quick ? 1 : 2, () => llama.Prompt(prompt))[0];
            double tg = GeneratedTokens / BestOf(quick ? 1 : 2, () => llama.Greedy(shortPrompt, GeneratedTokens));
            metrics[$"{k}_prompt_llamacpp_tokens_per_s"] = pp;
            metrics[$"{k}_generate_llamacpp_tokens_per_s"] = tg;
            Console.WriteLine($"  llama.cpp only: prompt {pp:F1} tokens/s, generation {tg:F2} tokens/s");
            return;
        }
        using var model = ours;
        var lm = model.Model;
        lm.Module.eval();
        using var ids = tensor(prompt.Select(t => (long)t).ToArray(), [1, PromptTokens]);
        void Forward()
        {
            using var mode = inference_mode();
            using var scope = NewDisposeScope();
            lm.Forward(ids);
        }
        Forward();
        metrics[$"{k}_sharptune_weights_mb"] = lm.Module.parameters().Sum(p => p.numel() * p.element_size()) / 1e6;
        metrics[$"{k}_sharptune_resident_growth_mb"] = (WorkingSet() - before) / 1e6;    // weights, plus what one 512-token forward left allocated

        // (a) Prompt processing: one forward over 512 tokens against one decode of them, in turns.
        var best = Timing.Interleaved(quick ? 1 : 2, Forward, () => llama.Prompt(prompt));
        double ppOurs = PromptTokens / best[0], ppLlama = PromptTokens / best[1];
        metrics[$"{k}_prompt_sharptune_tokens_per_s"] = ppOurs;
        metrics[$"{k}_prompt_llamacpp_tokens_per_s"] = ppLlama;
        metrics[$"{k}_prompt_ratio_vs_llamacpp"] = ppOurs / ppLlama;
        Console.WriteLine($"  prompt {PromptTokens}: SharpTune {ppOurs:F1} tokens/s, llama.cpp {ppLlama:F1} tokens/s, ratio {ppOurs / ppLlama:F2}");

        // (b) Generation: 128 greedy tokens after a short prompt, no stop tokens, in turns (one warm-up of 16 tokens each).
        IReadOnlyList<int> oursTokens = [], llamaTokens = [];
        var generator = new TextGenerator(lm, new GenerationOptions { Greedy = true, MaxNewTokens = GeneratedTokens });
        new TextGenerator(lm, new GenerationOptions { Greedy = true, MaxNewTokens = 16 }).Generate([shortPrompt]);
        llama.Greedy(shortPrompt, 16);
        var gen = BestOfInTurns(quick ? 1 : 3,
            () => oursTokens = generator.Generate([shortPrompt])[0].TokenIds,
            () => llamaTokens = llama.Greedy(shortPrompt, GeneratedTokens));
        if (oursTokens.Count != GeneratedTokens) throw new InvalidOperationException($"SharpTune generated {oursTokens.Count} tokens, expected {GeneratedTokens}");
        double tgOurs = GeneratedTokens / gen[0], tgLlama = GeneratedTokens / gen[1];
        metrics[$"{k}_generate_sharptune_tokens_per_s"] = tgOurs;
        metrics[$"{k}_generate_llamacpp_tokens_per_s"] = tgLlama;
        metrics[$"{k}_generate_ratio_vs_llamacpp"] = tgOurs / tgLlama;
        int agree = oursTokens.Zip(llamaTokens).TakeWhile(p => p.First == p.Second).Count();
        metrics[$"{k}_generate_same_greedy_prefix_tokens"] = agree;
        Console.WriteLine($"  generate {GeneratedTokens}: SharpTune {tgOurs:F2} tokens/s, llama.cpp {tgLlama:F2} tokens/s, ratio {tgOurs / tgLlama:F2}; greedy tokens equal for the first {agree}");

        // Where a generated token's time goes, when generation is below its goal (F32 and bf16 only: Q4_K_M is reported as it is).
        if ((k != "q4_k_m" && tgOurs / tgLlama < GenerationGoal) || (quick && k == "f32"))
        {
            var profile = GenerationProfile.Measure(lm, ShortPrompt + GeneratedTokens / 2, quick ? 3 : 5);
            double perToken = 1000 * gen[0] / GeneratedTokens;
            metrics[$"{k}_profile_generated_token_ms"] = perToken;
            metrics[$"{k}_profile_llamacpp_token_ms"] = 1000 * gen[1] / GeneratedTokens;
            metrics[$"{k}_profile_forward_ms"] = profile.Forward;
            metrics[$"{k}_profile_forward_mean_of_16_in_a_row_ms"] = profile.ForwardInARow;
            metrics[$"{k}_profile_matmul_ms"] = profile.Matmul;
            metrics[$"{k}_profile_attention_ms"] = profile.Attention;
            metrics[$"{k}_profile_rest_of_forward_ms"] = profile.Rest;
            metrics[$"{k}_profile_generator_outside_forward_ms"] = Math.Max(0, perToken - profile.Forward);
            metrics[$"{k}_profile_matmul_weight_gb_per_s"] = profile.MatmulGigabytesPerSecond;
            metrics[$"{k}_profile_same_products_as_mv_ms"] = profile.MatrixVector;
            metrics[$"{k}_profile_llamacpp_weight_gb_per_s"] = profile.WeightBytes / gen[1] * GeneratedTokens / 1e9;   // the same bytes: F32 = fp32, F16 = bf16 in size
            Console.WriteLine($"  one generated token: {perToken:F1} ms (llama.cpp {1000 * gen[1] / GeneratedTokens:F1} ms); Forward {profile.Forward:F1} ms = " +
                              $"matmul {profile.Matmul:F1} ms ({profile.MatmulGigabytesPerSecond:F1} GB/s of weights) + attention {profile.Attention:F1} ms + rest {profile.Rest:F1} ms; " +
                              $"16 Forwards in a row {profile.ForwardInARow:F1} ms each; generator outside Forward {Math.Max(0, perToken - profile.Forward):F1} ms; the products as mv {profile.MatrixVector:F1} ms");
        }
    }

    /// <summary>Best time of <paramref name="action"/> over <paramref name="rounds"/> runs.</summary>
    static double BestOf(int rounds, Action action) => BestOfInTurns(rounds, action)[0];

    /// <summary>
    /// Best time of each action over <paramref name="rounds"/> rounds, the actions taking turns once per round. Unlike
    /// <see cref="Timing.Interleaved"/> there is no warm-up round and no runs in a row: a generation run lasts seconds, so
    /// the other engine's spinning threads cost it little, and the callers warm up with a short run.
    /// </summary>
    static double[] BestOfInTurns(int rounds, params Action[] actions)
    {
        var best = Enumerable.Repeat(double.MaxValue, actions.Length).ToArray();
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < actions.Length; i++)
            {
                var clock = Stopwatch.StartNew();
                actions[i]();
                best[i] = Math.Min(best[i], clock.Elapsed.TotalSeconds);
            }
        return best;
    }

    static long WorkingSet()
    {
        GC.Collect();
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    static void PrintSummary(OrderedDictionary<string, double> m, List<string> notes, string cpu)
    {
        Console.WriteLine($"\ndecoder speed against llama.cpp, tokens/s ({cpu}, {Threads} threads):");
        Console.WriteLine($"  {"file",-8} {"prompt ST",10} {"prompt llama",12} {"ratio",6} {"gen ST",8} {"gen llama",10} {"ratio",6}");
        foreach (string k in new[] { "f32", "f16", "q4_k_m" })
        {
            string V(string name, string format) => m.TryGetValue($"{k}_{name}", out double v) ? v.ToString(format) : "-";
            Console.WriteLine($"  {k,-8} {V("prompt_sharptune_tokens_per_s", "F1"),10} {V("prompt_llamacpp_tokens_per_s", "F1"),12} {V("prompt_ratio_vs_llamacpp", "F2"),6} " +
                              $"{V("generate_sharptune_tokens_per_s", "F2"),8} {V("generate_llamacpp_tokens_per_s", "F2"),10} {V("generate_ratio_vs_llamacpp", "F2"),6}");
        }
        string Goal(string key, double goal, string what) =>
            m.TryGetValue(key, out double r) ? $"  {what} >= {goal:F1}x llama.cpp: {r:F2}x, {(r >= goal ? "met" : "NOT met")}" : $"  {what}: not measured";
        Console.WriteLine("goals:");
        Console.WriteLine(Goal("f32_prompt_ratio_vs_llamacpp", PromptGoalF32, "prompt processing, F32"));
        Console.WriteLine(Goal("f32_generate_ratio_vs_llamacpp", GenerationGoal, "generation, F32"));
        Console.WriteLine(Goal("f16_generate_ratio_vs_llamacpp", GenerationGoal, "generation, F16 file with bf16 weights"));
        Console.WriteLine("  Q4_K_M: reported only (llama.cpp computes on quantized blocks; SharpTune dequantizes on load)");
        foreach (string note in notes) Console.WriteLine("  note: " + note);
    }
}
