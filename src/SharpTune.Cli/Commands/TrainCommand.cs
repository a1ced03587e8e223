using System.CommandLine;
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
        command.SetAction(result => CommandRunner.Run(() => Run(Build(result))));
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

    static int Run(FineTuneOptions options)
    {
        // Under mpirun every rank runs this; rank 0 alone prints (a failing rank still prints its error).
        if (!SharpTune.Distributed.World.Current.IsMain) return RunQuietly(options);
        var progress = new ConsoleProgress();
        if (options.Resume && !Directory.Exists(Path.Combine(options.Out, "checkpoints")))
            throw new ArgumentException($"--resume: {options.Out} has no checkpoints to resume from");
        ConsoleProgress.Say($"sharptune train: {options.Model}, task {options.Task}, method {options.Method}, data {options.Train} -> {Path.GetFullPath(options.Out)}");
        ConsoleProgress.Say($"lr {options.Training.LearningRate:G4} ({options.Sources.GetValueOrDefault("lr", "default")}), " +
                            $"seed {options.Training.Seed}; every value and its source: {Path.Combine(options.Out, RunConfig.FileName)}");
        var callbacks = new List<ITrainerCallback> { progress };
        // Fault injection for the crash tests: SIGKILL this process right after the first checkpoint at or past step N.
        if (long.TryParse(Environment.GetEnvironmentVariable(KillAfterCheckpoint.Variable), out long killStep)) callbacks.Add(new KillAfterCheckpoint(killStep));
        var job = new FineTuneJob(options, ConsoleProgress.Say, callbacks);
        var summary = progress.Run(() => job.Run());
        ConsoleProgress.Say(RunReport.Format(summary));
        return 0;
    }

    static int RunQuietly(FineTuneOptions options)
    {
        new FineTuneJob(options, _ => { }).Run();
        return 0;
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
