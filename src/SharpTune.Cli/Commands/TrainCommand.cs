using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json.Nodes;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune train</c>: fine-tune a pretrained model on a labelled file. Its flags come from
/// <see cref="OptionCatalog"/>, the same table config files and run_config.json use. With no <c>--train</c> and no
/// <c>--config</c> it fine-tunes the built-in <c>minilm</c> on the spam sample in <c>samples/</c>.
/// </summary>
public static class TrainCommand
{
    static readonly Option<string> Config = new("--config") { Description = "YAML or JSON file of options (keys as these flags: lr, batch_size, lora_r, ...); the command line overrides it" };

    /// <summary>One command-line option per catalog entry, in the catalog's order.</summary>
    static readonly IReadOnlyList<(OptionSpec Spec, Option Option)> Flags = OptionCatalog.All.Select(spec =>
    {
        Option option = spec.Kind == OptionValueKind.Flag
            ? new Option<bool>(spec.Flag, [.. spec.FlagAliases]) { Description = spec.Help }
            : new Option<string>(spec.Flag, [.. spec.FlagAliases]) { Description = spec.Help };
        return (spec, option);
    }).ToList();

    public static Command Create()
    {
        var command = new Command("train", "Fine-tune a pretrained model on labelled data; with no arguments, minilm on the spam sample.");
        command.Options.Add(Config);
        foreach (var (_, option) in Flags) command.Options.Add(option);
        command.SetAction(result => CommandRunner.Run(() => Run(Build(result), result)));
        return command;
    }

    /// <summary>
    /// The run's options, resolved once: command line &gt; config file (or, with neither --config nor --train,
    /// the sample run) &gt; the method's default &gt; the global default.
    /// </summary>
    public static FineTuneOptions Build(ParseResult result)
    {
        var given = new List<OptionLayer.Entry>();
        foreach (var (spec, option) in Flags)
        {
            if (result.GetResult(option) is not { Implicit: false }) continue;
            JsonNode? value = option is Option<bool> flag ? JsonValue.Create(result.GetValue(flag)) : JsonValue.Create(result.GetValue((Option<string>)option));
            given.Add(new OptionLayer.Entry(spec, value, spec.Flag));
        }
        var layers = new List<OptionLayer> { new(OptionSource.CommandLine, "command line", given) };
        if (result.GetResult(Config) is { Implicit: false }) layers.Add(ConfigFile.Load(result.GetValue(Config)!));
        else if (given.All(e => e.Spec.Name != "train")) layers.Add(SampleRun(fullFineTuning: given.All(e => e.Spec.Name != "method")));
        return OptionResolver.Resolve([.. layers]).Validate();
    }

    /// <summary>
    /// The no-argument run: minilm on the committed spam sample, three epochs. Its learning rate, 1e-4, is full
    /// fine-tuning's on this data (94.7 % against 92.7 % at the global 5e-5); with another --method the method's own applies.
    /// </summary>
    static OptionLayer SampleRun(bool fullFineTuning)
    {
        string? samples = FindUpwards(Path.Combine("samples", "spam"));
        var values = new Dictionary<string, JsonNode?>
        {
            ["model"] = "minilm",
            // A new folder per run, so the README's command can be run again without --out or --resume.
            ["out"] = Path.Combine("runs", $"spam-minilm-{DateTime.Now:yyyyMMdd-HHmmss}"),
            ["epochs"] = 3,
            ["batch-size"] = 16,
        };
        if (fullFineTuning) values["lr"] = 1e-4;
        if (samples is not null)
        {
            values["train"] = Path.Combine(samples, "train.csv");
            values["validation"] = Path.Combine(samples, "validation.csv");
        }
        return new OptionLayer(OptionSource.SampleRun, "sample run (no --train or --config given)",
            values.Select(kv => new OptionLayer.Entry(OptionCatalog.Get(kv.Key), kv.Value, $"sample run: {kv.Key}")).ToList());
    }

    static string? FindUpwards(string relative)
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        return null;
    }

    static int Run(FineTuneOptions options, ParseResult command)
    {
        // Under mpirun every rank runs this; rank 0 alone prints (a failing rank still prints its error).
        if (!SharpTune.Distributed.World.Current.IsMain) return RunQuietly(options);
        var progress = new ConsoleProgress();
        if (options.Resume && !Directory.Exists(Path.Combine(options.Out, "checkpoints")))
            throw new ArgumentException($"--resume: {options.Out} has no checkpoints to resume from");
        ConsoleProgress.Say($"sharptune train: {options.Model}, task {options.Task}, method {options.Method}, data {options.Train} -> {Path.GetFullPath(options.Out)}");
        ConsoleProgress.Say($"lr {options.Training.LearningRate:G4} ({options.Sources.GetValueOrDefault("lr", "default")}), " +
                            $"seed {options.Training.Seed}; every value and its source: {Path.Combine(options.Out, RunConfig.FileName)}");
        using var signals = new StopSignals(message => Console.Error.WriteLine($"sharptune: {message}"));
        var callbacks = new List<ITrainerCallback> { progress };
        // Fault injection for the crash tests: SIGKILL this process right after the first checkpoint at or past step N.
        if (long.TryParse(Environment.GetEnvironmentVariable(KillAfterCheckpoint.Variable), out long killStep)) callbacks.Add(new KillAfterCheckpoint(killStep));
        // And for the signal and lock tests: hold the run after step N until a file exists, so signals come at a known step.
        if (HoldAfterStep.FromEnvironment() is { } hold) callbacks.Add(hold);
        var job = new FineTuneJob(options, ConsoleProgress.Say, callbacks);
        try
        {
            var summary = progress.Run(() => job.Run(signals.Token));
            ConsoleProgress.Say(RunReport.Format(summary));
            return 0;
        }
        catch (TrainingInterruptedException stopped)
        {
            string run = Path.GetFullPath(options.Out);
            ConsoleProgress.Say($"stopped by {signals.Name ?? "a signal to another process of the job"} after step {stopped.State.GlobalStep} of {stopped.State.TotalSteps}; " +
                                $"checkpoint saved in {stopped.Checkpoint}");
            ConsoleProgress.Say($"to continue: {ResumeCommand(command, run)}");
            return signals.ExitCode(SharpTune.Distributed.World.Current);
        }
    }

    static int RunQuietly(FineTuneOptions options)
    {
        using var signals = new StopSignals(_ => { });
        try
        {
            new FineTuneJob(options, _ => { }).Run(signals.Token);
            return 0;
        }
        catch (TrainingInterruptedException)
        {
            return signals.ExitCode(SharpTune.Distributed.World.Current);
        }
    }

    /// <summary>This command line with <c>--out RUN --resume</c> in place of any <c>--out</c> and <c>--resume</c> it had.</summary>
    public static string ResumeCommand(ParseResult command, string run)
    {
        var (outFlag, resumeFlag) = (Flags.Single(f => f.Spec.Name == "out").Option, Flags.Single(f => f.Spec.Name == "resume").Option);
        var words = new List<string> { "sharptune" };
        var tokens = command.Tokens;
        for (int i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            bool next = i + 1 < tokens.Count && tokens[i + 1].Type == TokenType.Argument;
            if (Names(token, outFlag))
            {
                if (next) i++;   // its folder
                continue;
            }
            if (Names(token, resumeFlag))
            {
                if (next && bool.TryParse(tokens[i + 1].Value, out _)) i++;
                continue;
            }
            words.Add(Quote(token.Value));
        }
        words.AddRange(["--out", Quote(run), "--resume"]);
        return string.Join(' ', words);

        static bool Names(Token token, Option option) => token.Type == TokenType.Option && (token.Value == option.Name || option.Aliases.Contains(token.Value));
        // As a POSIX shell reads it back.
        static string Quote(string word) => word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,+@%".Contains(c))
            ? word : $"'{word.Replace("'", "'\\''")}'";
    }
}

/// <summary>Ends the process as <c>kill -9</c> would, right after a checkpoint: what a crash test needs to show that nothing is lost.</summary>
sealed class KillAfterCheckpoint(long step) : ITrainerCallback
{
    public const string Variable = "SHARPTUNE_FAULT_KILL_AFTER_CHECKPOINT";

    public void OnCheckpoint(TrainerState state)
    {
        if (state.GlobalStep >= step) System.Diagnostics.Process.GetCurrentProcess().Kill();
    }
}

/// <summary>Holds the run after step N until a file exists (two minutes at most): a test's signals then come at a known step.</summary>
sealed class HoldAfterStep(long step, string releaseFile) : ITrainerCallback
{
    /// <summary>"N:FILE".</summary>
    public const string Variable = "SHARPTUNE_FAULT_HOLD_AFTER_STEP";

    public static HoldAfterStep? FromEnvironment() =>
        Environment.GetEnvironmentVariable(Variable)?.Split(':', 2) is [var step, var file] && long.TryParse(step, out long n) ? new HoldAfterStep(n, file) : null;

    public void OnStep(StepInfo info)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (info.Step == step && !File.Exists(releaseFile) && clock.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(20);
    }
}
