using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Bench.Reporting;
using SharpTune.Native;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Data-parallel scaling on this machine: the sharptune CLI as one process with every core (1 rank x C threads)
/// against <c>mpirun -np C --bind-to none</c> with one thread each (C ranks x 1 thread), on the same data and
/// global batch, for full fine-tuning and LoRA of minilm. Throughput is the global tokens per second of the
/// timed steps (after two warm-up steps), from the runs' metrics.jsonl; the allreduce share is rank 0's time
/// in collectives over its training time. The configurations run in turns, best of the rounds kept, so a busy
/// moment of the machine falls on all alike. From the measured compute time per step and the gradient bytes,
/// it projects throughput on 2-64 machines for 10 and 100 Gbit/s links (ring allreduce, no overlap).
/// </summary>
public sealed class ScalingSuite : IBenchSuite
{
    const int GlobalBatch = 32, MaxLength = 128, WarmupSteps = 2;

    public string Name => "scaling";

    public string Description => "data parallelism under mpirun: 1 rank x C threads vs C ranks x 1 thread, full and LoRA (needs Open MPI)";

    sealed record Variant(string Method, string Lr);

    public BenchResult Run(BenchContext context)
    {
        string mpirun = FindOnPath("mpirun") ?? throw new InvalidDataException("mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi-dev)");
        int cores = Environment.ProcessorCount;
        string cli = BuildCli(context.RepoRoot);
        string work = Path.Combine(Path.GetTempPath(), "sharptune-scaling");
        if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        Directory.CreateDirectory(work);
        string train = Path.Combine(context.RepoRoot, "samples", "spam", "train.csv");
        // Evaluation is not timed: a small validation file keeps the runs' ends short.
        string validation = Path.Combine(work, "validation.csv");
        File.WriteAllLines(validation, File.ReadLines(Path.Combine(context.RepoRoot, "samples", "spam", "validation.csv")).Take(1).Concat(
            ReadCsvRecords(Path.Combine(context.RepoRoot, "samples", "spam", "validation.csv")).Take(16)));
        int steps = context.Quick ? 5 : 14, rounds = context.Quick ? 1 : 2;
        Console.WriteLine($"CPU {CpuDescription.Current}; {mpirun}; {steps} steps of global batch {GlobalBatch} x {MaxLength} tokens, {rounds} round(s)");

        var variants = new[] { new Variant("full", "1e-4"), new Variant("lora", "1e-3") };
        var metrics = new OrderedDictionary<string, double>();
        var best = new Dictionary<string, Measured>();
        // The machine may be shared: its load, as the runs start and end, says how far the numbers can be trusted.
        metrics["load_average_at_start"] = LoadAverage();
        for (int round = 0; round < rounds; round++)
            foreach (var variant in variants)
                foreach (int ranks in new[] { 1, cores })
                {
                    string key = $"{variant.Method}_{ranks}x{cores / ranks}";
                    string run = Path.Combine(work, $"{key}-{round}");
                    string[] args = ["train", "--model", "minilm", "--train", train, "--validation", validation, "--method", variant.Method,
                        "--lr", variant.Lr, "--max-steps", steps.ToString(), "--batch-size", (GlobalBatch / ranks).ToString(), "--max-length", MaxLength.ToString(),
                        "--log-every", "1", "--threads", (cores / ranks).ToString(), "--seed", "42", "--out", run];
                    var measured = Launch(mpirun, cli, ranks, args, run);
                    Console.WriteLine($"  round {round + 1} {key} (load {LoadAverage():F1}): {measured.TokensPerSecond:F0} tokens/s, {measured.SecondsPerStep:F3} s/step, " +
                                      $"gradient allreduce {100 * measured.AllReduceShare:F1} %, all collectives {100 * measured.CollectivesShare:F1} % " +
                                      $"({measured.TrainableParameters:N0} trainable parameters)");
                    if (!best.TryGetValue(key, out var previous) || measured.TokensPerSecond > previous.TokensPerSecond) best[key] = measured;
                }

        metrics["load_average_at_end"] = LoadAverage();
        foreach (var variant in variants)
        {
            var one = best[$"{variant.Method}_1x{cores}"];
            var many = best[$"{variant.Method}_{cores}x1"];
            string p = variant.Method;
            metrics[$"{p}_1x{cores}_tokens_per_s"] = one.TokensPerSecond;
            metrics[$"{p}_{cores}x1_tokens_per_s"] = many.TokensPerSecond;
            metrics[$"{p}_{cores}x1_vs_1x{cores}"] = many.TokensPerSecond / one.TokensPerSecond;
            metrics[$"{p}_{cores}x1_allreduce_share"] = many.AllReduceShare;
            metrics[$"{p}_{cores}x1_allreduce_ms_per_step"] = 1000 * many.AllReduceSeconds / Math.Max(1, many.Steps);
            metrics[$"{p}_{cores}x1_collectives_share"] = many.CollectivesShare;
            metrics[$"{p}_{cores}x1_seconds_per_step"] = many.SecondsPerStep;
            metrics[$"{p}_{cores}x1_allreduce_gb_per_s"] = many.TrainableParameters * 4 / 1e9 / Math.Max(1e-9, many.AllReduceSeconds / Math.Max(1, many.Steps));
            metrics[$"{p}_1x{cores}_seconds_per_step"] = one.SecondsPerStep;
            metrics[$"{p}_gradient_mb"] = many.TrainableParameters * 4 / 1e6;
            // Projection: machines like this one (C cores, one process of C threads each, the global batch per machine),
            // ring allreduce of the gradients (2 (M-1)/M of the bytes in and out of each machine) at 90 % of the link,
            // plus 50 us per message for 2 (M-1) messages per bucket.
            double bytes = many.TrainableParameters * 4.0;
            int buckets = (int)Math.Max(1, Math.Ceiling(bytes / (25 << 20)));
            foreach (double gbits in new[] { 10.0, 100.0 })
                foreach (int machines in new[] { 2, 4, 8, 16, 32, 64 })
                {
                    double seconds = 2.0 * (machines - 1) / machines * bytes / (gbits * 1e9 / 8 * 0.9) + 2.0 * (machines - 1) * buckets * 50e-6;
                    double efficiency = one.SecondsPerStep / (one.SecondsPerStep + seconds);
                    metrics[$"{p}_projected_{machines}x_{gbits:0}gbit_tokens_per_s"] = machines * one.TokensPerSecond * efficiency;
                    metrics[$"{p}_projected_{machines}x_{gbits:0}gbit_efficiency"] = efficiency;
                }
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"SharpTune minilm, full fine-tuning (lr 1e-4) and LoRA r 8 (lr 1e-3), {steps} steps of global batch {GlobalBatch} x {MaxLength} tokens; " +
                    $"1 process x {cores} threads against mpirun -np {cores} --bind-to none x 1 thread; CPU {CpuDescription.Current}",
            Dataset = "samples/spam/train.csv (first steps)",
            Quick = context.Quick,
            TrainExamples = steps * GlobalBatch,
            TestExamples = 16,
            TrainSeconds = best.Values.Sum(m => m.SecondsPerStep * m.Steps),
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    sealed record Measured(double TokensPerSecond, double SecondsPerStep, int Steps, double AllReduceSeconds, double AllReduceShare,
        double CollectivesShare, long TrainableParameters);

    static Measured Launch(string mpirun, string cli, int ranks, string[] args, string run)
    {
        var start = new ProcessStartInfo(ranks == 1 ? "dotnet" : mpirun) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] command = ranks == 1 ? [cli, .. args] : ["-np", ranks.ToString(), "--oversubscribe", "--bind-to", "none", "dotnet", cli, .. args];
        foreach (string a in command) start.ArgumentList.Add(a);
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidDataException($"{start.FileName} {string.Join(' ', command)} failed ({process.ExitCode}):\n{error.Result}{output.Result}");
        string text = output.Result;
        long trainable = long.Parse(System.Text.RegularExpressions.Regex.Match(text, @"trainable parameters ([\d,]+)").Groups[1].Value.Replace(",", ""));

        var lines = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var trainLines = lines.Where(o => o["type"]!.GetValue<string>() == "train").ToList();
        // Each logged step's tokens/s covers the time since the previous line (the trainer restarts its clock at each log),
        // so the timed steps' throughput is their rates weighted by the time between lines.
        double tokens = 0, seconds = 0;
        for (int i = WarmupSteps; i < trainLines.Count; i++)
        {
            double dt = (DateTimeOffset.Parse(trainLines[i]["time"]!.GetValue<string>()) - DateTimeOffset.Parse(trainLines[i - 1]["time"]!.GetValue<string>())).TotalSeconds;
            tokens += trainLines[i]["tokens_per_second"]!.GetValue<double>() * dt;
            seconds += dt;
        }
        int timed = trainLines.Count - WarmupSteps;
        var parallel = lines.FirstOrDefault(o => o["type"]!.GetValue<string>() == "data_parallel");
        double communication = parallel?["communication_seconds"]!.GetValue<double>() ?? 0;
        double gradients = parallel?["gradient_allreduce_seconds"]!.GetValue<double>() ?? 0;
        // Shares of the timed steps' time: the gradients' allreduce per step, and every collective per step (waiting for the slower rank included).
        double stepSeconds = seconds / timed;
        return new Measured(tokens / seconds, stepSeconds, trainLines.Count, gradients, gradients / trainLines.Count / stepSeconds,
            communication / trainLines.Count / stepSeconds, trainable);
    }

    /// <summary>The CLI built in Release beside the repository, so the bench times the same build a user runs.</summary>
    static string BuildCli(string repoRoot)
    {
        string project = Path.Combine(repoRoot, "src", "SharpTune.Cli", "SharpTune.Cli.csproj");
        var build = Process.Start(new ProcessStartInfo("dotnet", ["build", project, "-c", "Release", "--nologo", "-v", "q"]) { UseShellExecute = false })!;
        build.WaitForExit();
        if (build.ExitCode != 0) throw new InvalidDataException($"dotnet build {project} failed");
        return Path.Combine(repoRoot, "src", "SharpTune.Cli", "bin", "Release", "net10.0", "SharpTune.Cli.dll");
    }

    /// <summary>The CSV's records after the header (quoted fields may hold newlines), each as its raw text.</summary>
    static IEnumerable<string> ReadCsvRecords(string path)
    {
        var record = new System.Text.StringBuilder();
        bool quoted = false, header = true;
        foreach (string line in File.ReadLines(path))
        {
            if (record.Length > 0) record.Append('\n');
            record.Append(line);
            quoted ^= line.Count(c => c == '"') % 2 == 1;
            if (quoted) continue;
            if (!header) yield return record.ToString();
            header = false;
            record.Clear();
        }
    }

    /// <summary>The 1-minute load average (Linux), or NaN.</summary>
    static double LoadAverage() => File.Exists("/proc/loadavg")
        ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) : double.NaN;

    static string? FindOnPath(string name) => (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}
