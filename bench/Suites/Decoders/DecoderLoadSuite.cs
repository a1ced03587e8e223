using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SharpTune.Bench.Reporting;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using SharpTune.Tests.Oracle;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Peak memory of loading a decoder, against the bytes its weights take once loaded: a Qwen2 model with Qwen2.5-0.5B's
/// shapes (random weights) written as GGUF F32, F16 and Q4_K_M (llama.cpp's quantizer) and as a Hugging Face folder in
/// bf16, each loaded in fp32 and in bf16 in a process of its own (so each peak is its own). A process's peak resident
/// set (VmHWM) includes what it holds before loading (the runtime, libtorch, MKL): that baseline, measured after libtorch
/// is up, is reported beside it, and the ratio both with and without it.
/// </summary>
public sealed class DecoderLoadSuite : IBenchSuite
{
    /// <summary>Set in a child process: "path|dtype"; the child loads that one model and prints its numbers.</summary>
    public const string ChildVariable = "SHARPTUNE_BENCH_DECODER_LOAD";

    /// <summary>The goal for bf16: peak at most 1.3 times the weights (baseline included).</summary>
    const double Goal = 1.3;

    public string Name => "decoder-load";

    public string Description => "peak memory of loading a Qwen2.5-0.5B-shaped decoder (GGUF F32/F16/Q4_K_M, HF bf16) in fp32 and bf16";

    sealed record Child(double BaselineMb, double PeakMb, double WeightsMb, double Seconds);

    public BenchResult Run(BenchContext context)
    {
        var shape = context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;
        string folder = Path.Combine(Path.GetTempPath(), "sharptune-decoder-load", context.Quick ? "quick" : "full");
        var clock = Stopwatch.StartNew();
        var (f32, f16) = RandomQwen2Gguf.Write(shape, folder);
        string q4 = Path.Combine(folder, "model-q4_k_m.gguf");
        if (!File.Exists(q4))
        {
            LlamaCpp.Quantize(f32, q4 + ".partial", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M, 2);
            File.Move(q4 + ".partial", q4);
        }
        string hf = Path.Combine(folder, "hf-bf16");
        if (!File.Exists(Path.Combine(hf, "model.safetensors")))
        {
            using var model = LanguageModel.Load(f16, ScalarType.BFloat16);
            model.Model.Save(hf);
        }
        Console.WriteLine($"model files ({shape.Parameters:N0} parameters) ready in {clock.Elapsed.TotalSeconds:F0} s under {folder}");

        var metrics = new OrderedDictionary<string, double>();
        foreach (var (key, path) in new[] { ("gguf_f32", f32), ("gguf_f16", f16), ("gguf_q4_k_m", q4), ("hf_bf16", hf) })
        {
            foreach (var dtype in new[] { "fp32", "bf16" })
            {
                var child = RunChild(path, dtype);
                string k = $"{key}_as_{dtype}";
                metrics[$"{k}_weights_mb"] = child.WeightsMb;
                metrics[$"{k}_baseline_mb"] = child.BaselineMb;
                metrics[$"{k}_peak_mb"] = child.PeakMb;
                metrics[$"{k}_peak_over_weights"] = child.PeakMb / child.WeightsMb;
                metrics[$"{k}_peak_less_baseline_over_weights"] = (child.PeakMb - child.BaselineMb) / child.WeightsMb;
                metrics[$"{k}_seconds"] = child.Seconds;
                Console.WriteLine($"{key,-12} as {dtype}: weights {child.WeightsMb,7:F0} MB, baseline {child.BaselineMb,5:F0} MB, peak {child.PeakMb,7:F0} MB: " +
                                  $"peak / weights {child.PeakMb / child.WeightsMb:F2} ({(child.PeakMb - child.BaselineMb) / child.WeightsMb:F2} without the baseline), {child.Seconds:F1} s");
            }
        }
        double worstBf16 = metrics.Where(kv => kv.Key.EndsWith("_as_bf16_peak_over_weights", StringComparison.Ordinal)).Max(kv => kv.Value);
        Console.WriteLine($"\nbf16 loads: worst peak / weights {worstBf16:F2} (goal {Goal}: {(worstBf16 <= Goal ? "met" : "not met")})");
        if (!context.Quick)
        {
            Directory.Delete(folder, recursive: true);                          // 4.5 GB of random weights; rewritten in minutes when needed
            Console.WriteLine($"deleted {folder}");
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name} ({shape.Parameters:N0} parameters, random weights); each load in its own process; " +
                    "peak = VmHWM, baseline = resident set after libtorch's first tensor, weights = the loaded parameters' bytes",
            Dataset = "GGUF F32, F16, Q4_K_M and a Hugging Face bf16 folder of the same weights",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 8,
            TrainSeconds = 0,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    static Child RunChild(string path, string dtype)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path to start a child with");
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(DecoderLoadSuite).Assembly.Location);
        start.Environment[ChildVariable] = $"{path}|{dtype}";
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"the load of {path} as {dtype} failed ({process.ExitCode}):\n{output}\n{error}");
        string line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        return JsonSerializer.Deserialize<Child>(line) ?? throw new InvalidDataException($"no result from the child: {output}");
    }

    /// <summary>The child: libtorch up, baseline taken, one model loaded, its numbers printed as one JSON line.</summary>
    public static int RunChild(string job)
    {
        var parts = job.Split('|');
        string path = parts[0];
        var dtype = parts[1] == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        MklDispatch.Ensure();
        using (var warm = ones(16, 16)) using (var product = warm.matmul(warm)) { }
        double baseline = Status("VmRSS:");
        var clock = Stopwatch.StartNew();
        double weights;
        if (Directory.Exists(path))
        {
            using var model = PretrainedDecoder.Load(path, dtype);
            weights = model.Module.parameters().Sum(p => p.numel() * p.element_size());
        }
        else
        {
            using var model = LanguageModel.Load(path, dtype);
            weights = model.Model.Module.parameters().Sum(p => p.numel() * p.element_size());
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(JsonSerializer.Serialize(new Child(baseline / 1e6, Status("VmHWM:") / 1e6, weights / 1e6, seconds)));
        return 0;
    }

    /// <summary>A /proc/self/status line's value in bytes.</summary>
    static double Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}
