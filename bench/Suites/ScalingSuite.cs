using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Bench.Reporting;
using SharpTune.Native;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Data-parallel scaling on this machine: the sharptune CLI as one process with every core (1 rank x C threads)
/// against <c>mpirun -np C --bind-to none</c> with one thread each (C ranks x 1 thread), on the same data and
/// global batch, for full fine-tuning and LoRA of minilm. Throughput is the global tokens per second of the
/// timed steps (after two warm-up steps), from the runs' metrics.jsonl. Each round runs both configurations back to
/// back (in alternate order), and the ratio is taken within the round; the suite reports the median ratio and its
/// spread over the rounds, so a busy moment of the machine weighs on one round, not on the result. Each data-parallel
/// run's collective time is broken down per step: the wait for the gradients' sum after backward, the loss exchange
/// (where the faster rank waits for the slower), and the collectives outside the steps. From the measured compute time
/// per step and the gradient bytes,
/// it projects throughput on 2-64 machines for 10 and 100 Gbit/s links (ring allreduce, no overlap).
/// </summary>
public sealed class ScalingSuite : IBenchSuite
{
    const int GlobalBatch = 32, MaxLength = 128, WarmupSteps = 2;

    /// <summary>Rounds in turns (default 5, 3 with --quick), and the methods to run (full,lora by default).</summary>
    public const string RoundsVariable = "SHARPTUNE_SCALING_ROUNDS", MethodsVariable = "SHARPTUNE_SCALING_METHODS";

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
        int steps = context.Quick ? 6 : 14, rounds = Rounds(context.Quick);
        var variants = new[] { new Variant("full", "1e-4"), new Variant("lora", "1e-3") }
            .Where(v => Environment.GetEnvironmentVariable(MethodsVariable) is not { } only || only.Split(',').Contains(v.Method)).ToArray();
        Console.WriteLine($"CPU {CpuDescription.Current}; {mpirun}; {steps} steps of global batch {GlobalBatch} x {MaxLength} tokens " +
                          $"({WarmupSteps} untimed); {rounds} rounds, the configurations in turns");

        var metrics = new OrderedDictionary<string, double>();
        var runs = new Dictionary<string, List<Measured>>();
        var ratios = variants.ToDictionary(v => v.Method, _ => new List<double>());
        // The machine may be shared: its load, as the runs start and end, says how far the numbers can be trusted.
        metrics["load_average_at_start"] = LoadAverage();
        for (int round = 0; round < rounds; round++)
            foreach (var variant in variants)
            {
                // Each round runs both configurations back to back, first one then the other in alternate rounds, so a
                // busy minute or a drifting machine weighs on both alike; the ratio is taken within the round.
                int[] order = round % 2 == 0 ? [1, cores] : [cores, 1];
                var pair = new Dictionary<int, Measured>();
                foreach (int ranks in order)
                {
                    string key = $"{variant.Method}_{ranks}x{cores / ranks}";
                    string run = Path.Combine(work, $"{key}-{round}");
                    string[] args = ["train", "--model", "minilm", "--train", train, "--validation", validation, "--method", variant.Method,
                        "--lr", variant.Lr, "--max-steps", steps.ToString(), "--batch-size", (GlobalBatch / ranks).ToString(), "--max-length", MaxLength.ToString(),
                        "--log-every", "1", "--threads", (cores / ranks).ToString(), "--seed", "42", "--out", run];
                    var measured = Launch(mpirun, cli, ranks, args, run);
                    Console.WriteLine($"  round {round + 1} {key} (load {LoadAverage():F1}): {measured.TokensPerSecond:F0} tokens/s, {measured.SecondsPerStep:F3} s/step" +
                                      (ranks > 1 ? "; " + measured.Breakdown : ""));
                    (runs.TryGetValue(key, out var list) ? list : runs[key] = []).Add(measured);
                    pair[ranks] = measured;
                }
                ratios[variant.Method].Add(pair[cores].TokensPerSecond / pair[1].TokensPerSecond);
                Console.WriteLine($"  round {round + 1} {variant.Method}: {cores}x1 / 1x{cores} = {ratios[variant.Method][^1]:F3}");
            }

        metrics["load_average_at_end"] = LoadAverage();
        foreach (var variant in variants)
        {
            string p = variant.Method;
            var one = runs[$"{p}_1x{cores}"];
            var many = runs[$"{p}_{cores}x1"];
            var ratio = ratios[p];
            metrics[$"{p}_1x{cores}_tokens_per_s"] = Median(one.Select(m => m.TokensPerSecond));
            metrics[$"{p}_{cores}x1_tokens_per_s"] = Median(many.Select(m => m.TokensPerSecond));
            // The ratio within each round; its median, and the lowest and highest round (the spread).
            metrics[$"{p}_{cores}x1_vs_1x{cores}"] = Median(ratio);
            metrics[$"{p}_{cores}x1_vs_1x{cores}_min"] = ratio.Min();
            metrics[$"{p}_{cores}x1_vs_1x{cores}_max"] = ratio.Max();
            metrics[$"{p}_rounds"] = ratio.Count;
            double stepSeconds = Median(many.Select(m => m.SecondsPerStep)), oneStep = Median(one.Select(m => m.SecondsPerStep));
            double gradientMs = Median(many.Select(m => m.GradientWaitMs[0])), exchangeMs = Median(many.Select(m => m.LossExchangeMs[0]));
            metrics[$"{p}_{cores}x1_seconds_per_step"] = stepSeconds;
            metrics[$"{p}_1x{cores}_seconds_per_step"] = oneStep;
            // Rank 0's time per timed step: the wait for the gradients' sum after backward, and the loss exchange (the wait for
            // the slower rank); the lowest and highest rank's exchange say how uneven the ranks were.
            metrics[$"{p}_{cores}x1_gradient_wait_ms_per_step"] = gradientMs;
            metrics[$"{p}_{cores}x1_gradient_wait_share"] = gradientMs / 1000 / stepSeconds;
            metrics[$"{p}_{cores}x1_gradient_in_backward_ms_per_step"] = Median(many.Select(m => m.InBackwardMs[0]));
            metrics[$"{p}_{cores}x1_loss_exchange_ms_per_step"] = exchangeMs;
            metrics[$"{p}_{cores}x1_loss_exchange_share"] = exchangeMs / 1000 / stepSeconds;
            metrics[$"{p}_{cores}x1_loss_exchange_ms_per_step_max_rank"] = Median(many.Select(m => m.LossExchangeMs.Max()));
            metrics[$"{p}_{cores}x1_other_collectives_seconds_per_run"] = Median(many.Select(m => m.OtherCollectivesSeconds));
            metrics[$"{p}_{cores}x1_allreduce_gb_per_s"] = many[0].TrainableParameters * 4 / 1e9 / Math.Max(1e-9, gradientMs / 1000);
            metrics[$"{p}_gradient_mb"] = many[0].TrainableParameters * 4 / 1e6;
            Console.WriteLine($"{p}: {cores}x1 / 1x{cores} median {Median(ratio):F3} over {ratio.Count} rounds (lowest {ratio.Min():F3}, highest {ratio.Max():F3}); " +
                              $"per {cores}x1 step of {1000 * stepSeconds:F0} ms, rank 0 waited {gradientMs:F0} ms for the gradients' sum ({100 * gradientMs / 1000 / stepSeconds:F1} %; " +
                              $"{Median(many.Select(m => m.InBackwardMs[0])):F0} ms more of MPI work ran inside backward) " +
                              $"and {exchangeMs:F0} ms at the loss exchange ({100 * exchangeMs / 1000 / stepSeconds:F1} %)");
            // Projection: machines like this one (C cores, one process of C threads each, the global batch per machine),
            // ring allreduce of the gradients (2 (M-1)/M of the bytes in and out of each machine) at 90 % of the link,
            // plus 50 us per message for 2 (M-1) messages per bucket.
            double bytes = many[0].TrainableParameters * 4.0;
            int buckets = (int)Math.Max(1, Math.Ceiling(bytes / (25 << 20)));
            double oneTokens = Median(one.Select(m => m.TokensPerSecond));
            foreach (double gbits in new[] { 10.0, 100.0 })
                foreach (int machines in new[] { 2, 4, 8, 16, 32, 64 })
                {
                    double seconds = 2.0 * (machines - 1) / machines * bytes / (gbits * 1e9 / 8 * 0.9) + 2.0 * (machines - 1) * buckets * 50e-6;
                    double efficiency = oneStep / (oneStep + seconds);
                    metrics[$"{p}_projected_{machines}x_{gbits:0}gbit_tokens_per_s"] = machines * oneTokens * efficiency;
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
            TrainSeconds = runs.Values.SelectMany(list => list).Sum(m => m.SecondsPerStep * m.Steps),
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    /// <param name="GradientWaitMs">Per rank, the mean wait per timed step for the gradients' sum after backward.</param>
    /// <param name="LossExchangeMs">Per rank, the mean time per timed step in the loss exchange (waiting for the slower rank).</param>
    /// <param name="OtherCollectivesSeconds">Rank 0's collectives outside the steps (evaluation's gathers), over the run.</param>
    sealed record Measured(double TokensPerSecond, double SecondsPerStep, int Steps, long TrainableParameters,
        double[] GradientWaitMs, double[] LossExchangeMs, double OtherCollectivesSeconds, int Buckets, int Overlapped, double[] InBackwardMs)
    {
        public string Breakdown => $"per step: gradient wait {string.Join("/", GradientWaitMs.Select(v => v.ToString("F0")))} ms " +
            $"(and {string.Join("/", InBackwardMs.Select(v => v.ToString("F0")))} ms in MPI during backward), " +
            $"loss exchange {string.Join("/", LossExchangeMs.Select(v => v.ToString("F0")))} ms (rank 0/1...), " +
            $"other collectives {OtherCollectivesSeconds:F2} s in the run; {Overlapped} of {Buckets} gradient buckets started during backward";
    }

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
        double[] ByRank(string key) => parallel?[key]?.AsArray().Select(v => v!.GetValue<double>()).ToArray() ?? [0];
        return new Measured(tokens / seconds, seconds / timed, trainLines.Count, trainable,
            ByRank("gradient_wait_ms_by_rank"), ByRank("loss_exchange_ms_by_rank"), parallel?["other_collectives_seconds"]?.GetValue<double>() ?? 0,
            parallel?["gradient_buckets"]?.GetValue<int>() ?? 0, parallel?["buckets_started_during_backward"]?.GetValue<int>() ?? 0,
            ByRank("gradient_in_backward_ms_by_rank"));
    }

    /// <summary>Rounds: SHARPTUNE_SCALING_ROUNDS when set, otherwise 5 (3 with --quick).</summary>
    static int Rounds(bool quick) =>
        int.TryParse(Environment.GetEnvironmentVariable(RoundsVariable), out int rounds) && rounds > 0 ? rounds : quick ? 3 : 5;

    static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
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
