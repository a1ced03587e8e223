using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Metrics;
using SharpTune.Training;

namespace SharpTune.Tests.Cli;

/// <summary>How options are given, resolved and refused: one table, one precedence, messages that name real flags.</summary>
[Collection(nameof(ConsoleCollection))]
public class OptionTests
{
    static (int Code, string Out, string Error) Run(params string[] args) => CliHarness.Run(args);

    static void AssertUserError((int Code, string Out, string Error) result, params string[] expected)
    {
        Assert.True(result.Code == 1, $"exit {result.Code}: {result.Error}{result.Out}");
        Assert.StartsWith("error: ", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", result.Error);
        foreach (string text in expected) Assert.Contains(text, result.Error);
    }

    static string TinyModelFolder(TestModels.TempFolder temp, string name = "tiny-model") => CliHarness.TinyModelFolder(temp, name);

    static string ToyCsv(TestModels.TempFolder temp, string name, int rows, int seed, string textColumn = "text", string labelColumn = "label") =>
        CliHarness.ToyCsv(temp, name, rows, seed, textColumn, labelColumn);

    static JsonObject RunConfigOf(string run) => JsonNode.Parse(File.ReadAllText(Path.Combine(run, RunConfig.FileName)))!.AsObject();

    [Fact]
    public void Eval_and_predict_take_the_data_options_of_train_and_default_to_the_run()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), run = temp.File("run");
        var trained = Run("train", "--model", model, "--train", ToyCsv(temp, "train.csv", 24, 1), "--epochs", "1", "--batch-size", "8", "--out", run);
        Assert.True(trained.Code == 0, trained.Error + trained.Out);

        string renamed = ToyCsv(temp, "test.tsv.csv", 10, 2, textColumn: "review", labelColumn: "sentiment");
        AssertUserError(Run("eval", "--model", run, "--data", renamed), "text");     // the run's columns are not in this file
        var evaluated = Run("eval", "--model", run, "--data", renamed, "--text-column", "review", "--label-column", "sentiment", "--output", temp.File("m.json"));
        Assert.True(evaluated.Code == 0, evaluated.Error);
        Assert.Contains("evaluated 10 examples", evaluated.Out);

        var predicted = Run("predict", "--model", run, "--data", renamed, "--text-column", "review", "--output", temp.File("p.jsonl"));
        Assert.True(predicted.Code == 0, predicted.Error);
        Assert.Equal(10, File.ReadAllLines(temp.File("p.jsonl")).Length);

        // A file whose extension says nothing is read with --format.
        File.Copy(renamed, temp.File("test.data"));
        Assert.Equal(0, Run("eval", "--model", run, "--data", temp.File("test.data"), "--format", "csv", "--text-column", "review",
            "--label-column", "sentiment", "--output", temp.File("m2.json")).Code);
        AssertUserError(Run("eval", "--model", run, "--data", renamed, "--format", "xml"), "--format", "xml", "csv");
    }

    [Fact]
    public void A_mistyped_method_lists_every_method_and_suggests_the_nearest()
    {
        using var temp = new TestModels.TempFolder();
        string train = ToyCsv(temp, "train.csv", 8, 1);
        var result = Run("train", "--train", train, "--method", "lorra");
        AssertUserError(result, "--method 'lorra'", "did you mean 'lora'", "ptuning-v2", "freeze:K", "bitfit", "full");
        Assert.DoesNotContain("--freeze", result.Error);
        AssertUserError(Run("train", "--train", train, "--freeze", "freeze:x"), "--method 'freeze:x'", "freeze:K");
        Assert.Equal("freeze:2", TrainingMethods.Parse("FREEZE:2"));
        Assert.Equal("ptuning-v2", TrainingMethods.Parse("ptuning-v2"));
    }

    [Fact]
    public void LoRA_variant_options_are_refused_off_lora_and_read_from_PEFTs_names_in_a_config()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), train = ToyCsv(temp, "train.csv", 16, 1);
        AssertUserError(Run("train", "--model", model, "--train", train, "--method", "ia3", "--lora-dora"), "--lora-dora", "--method lora only", "ia3");
        AssertUserError(Run("train", "--model", model, "--train", train, "--method", "lora", "--loraplus-lr-ratio", "0"), "--loraplus-lr-ratio", "positive");
        AssertUserError(Run("train", "--model", model, "--train", train, "--method", "lora", "--lora-init", "svd"), "--lora-init", "pissa", "olora");

        // PEFT's field names work in a config file; the run records them under the option names.
        File.WriteAllText(temp.File("variants.yaml"),
            $"model: {model}\ntrain: {train}\nmethod: lora\nepochs: 1\nbatch-size: 8\nuse_dora: true\nuse_rslora: true\ninit_lora_weights: olora\nloraplus_lr_ratio: 16\n");
        var result = Run("train", "--config", temp.File("variants.yaml"), "--out", temp.File("run"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        var used = RunConfigOf(temp.File("run"));
        Assert.True(used["lora_dora"]!.GetValue<bool>());
        Assert.True(used["lora_rslora"]!.GetValue<bool>());
        Assert.Equal("olora", used["lora_init"]!.GetValue<string>());
        Assert.Equal(16, used["loraplus_lr_ratio"]!.GetValue<double>());
        var adapter = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp.File("run"), "best", "adapter", "adapter_config.json")))!;
        Assert.True(adapter["use_dora"]!.GetValue<bool>());
        Assert.Equal(16, adapter["r"]!.GetValue<int>()); // OLoRA saved converted: plain LoRA of rank 2 x 8
        var predicted = Run("predict", "--model", temp.File("run"), "--data", train, "--output", temp.File("p.jsonl"));
        Assert.True(predicted.Code == 0, predicted.Error);
    }

    [Fact]
    public void Lengths_the_model_cannot_read_are_refused_before_any_work()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), train = ToyCsv(temp, "train.csv", 8, 1);
        // The tiny model has 64 positions.
        AssertUserError(Run("train", "--model", model, "--train", train, "--max-length", "100", "--out", temp.File("a")), "--max-length 100", "64 positions");
        AssertUserError(Run("train", "--model", model, "--train", train, "--method", "prompt", "--virtual-tokens", "20", "--max-length", "50", "--out", temp.File("b")),
            "--max-length 50", "20 virtual tokens", "--virtual-tokens", "64");
        Assert.False(Directory.Exists(temp.File("a")) && Directory.EnumerateFileSystemEntries(temp.File("a")).Any());
        // Without --max-length the default follows the model.
        var result = Run("train", "--model", model, "--train", train, "--method", "prompt", "--virtual-tokens", "20", "--epochs", "1", "--out", temp.File("c"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        Assert.Equal(44, RunConfigOf(temp.File("c"))["max_length"]!.GetValue<int>());
    }

    [Fact]
    public void Every_metric_declares_its_direction_and_mae_keeps_the_lowest()
    {
        foreach (var kind in Enum.GetValues<SharpTune.Heads.TaskKind>())
            foreach (string metric in TaskMetrics.Names(new SharpTune.Heads.HeadOptions(kind, kind == SharpTune.Heads.TaskKind.Regression ? 1 : 3),
                         SharpTune.Data.LabelMap.FromLabels(["B-x", "I-x", "O"])))
                MetricCatalog.DirectionOf(metric);
        Assert.True(MetricCatalog.Improves("mae", 0.1, 0.2));
        Assert.False(MetricCatalog.Improves("mae", 0.3, 0.2));
        Assert.True(MetricCatalog.Improves("spearman", 0.3, 0.2));

        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), run = temp.File("run");
        var data = new StringBuilder("text,label\n");
        var random = new Random(3);
        for (int i = 0; i < 40; i++) { bool good = random.Next(2) == 0; data.Append($"the food is {(good ? "great" : "awful")},{(good ? 4.5 : 1.5)}\n"); }
        File.WriteAllText(temp.File("scores.csv"), data.ToString());
        var result = Run("train", "--model", model, "--task", "regress", "--train", temp.File("scores.csv"), "--metric", "mae",
            "--epochs", "3", "--eval-every", "1", "--batch-size", "8", "--lr", "1e-2", "--out", run);
        Assert.True(result.Code == 0, result.Error + result.Out);
        var evaluations = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(n => n["type"]!.GetValue<string>() == "eval").ToList();
        var best = evaluations.Where(e => e["is_best"]!.GetValue<bool>()).Last();
        double bestMae = evaluations.Min(e => e["eval_mae"]!.GetValue<double>());
        Assert.Equal(bestMae, best["eval_mae"]!.GetValue<double>());
        AssertUserError(Run("train", "--model", model, "--task", "regress", "--train", temp.File("scores.csv"), "--metric", "maee", "--out", temp.File("x")),
            "--metric 'maee'", "did you mean 'mae'");
    }

    [Fact]
    public void Method_defaults_apply_unless_a_value_is_given_and_the_run_records_each_source()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), train = ToyCsv(temp, "train.csv", 16, 1);
        var result = Run("train", "--model", model, "--train", train, "--method", "prompt", "--epochs", "1", "--out", temp.File("prompt"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        var used = RunConfigOf(temp.File("prompt"));
        Assert.Equal(SharpTune.Peft.PeftRegistry.Get("prompt").DefaultLearningRate, used["lr"]!.GetValue<double>());
        Assert.Equal("default of --method prompt", used["sources"]!["lr"]!.GetValue<string>());
        Assert.Equal("command line", used["sources"]!["method"]!.GetValue<string>());
        Assert.Equal("default", used["sources"]!["weight_decay"]!.GetValue<string>());

        // A config file's learning rate beats the method's default, and the command line's method is used with it.
        File.WriteAllText(temp.File("run.yaml"), $"model: {model}\ntrain: {train}\nlr: 0.002\nmethod: lora\nepochs: 1\n");
        result = Run("train", "--config", temp.File("run.yaml"), "--out", temp.File("lora"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        used = RunConfigOf(temp.File("lora"));
        Assert.Equal(0.002, used["lr"]!.GetValue<double>());
        Assert.StartsWith("config file", used["sources"]!["lr"]!.GetValue<string>());
        Assert.Equal("lora", used["method"]!.GetValue<string>());
    }

    [Fact]
    public void Config_files_use_the_option_names_and_a_saved_run_config_loads_back()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp), train = ToyCsv(temp, "train.csv", 16, 1);
        File.WriteAllText(temp.File("flat.yaml"), $"model: {model}\ntrain: {train}\nlearning_rate: 0.003\nbatch-size: 4\nepochs: 1\nmethod: lora\nlora_r: 3\nlora-targets: [query, key]\n");
        var result = Run("train", "--config", temp.File("flat.yaml"), "--out", temp.File("a"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        var used = RunConfigOf(temp.File("a"));
        Assert.Equal(0.003, used["lr"]!.GetValue<double>());
        Assert.Equal(4, used["batch_size"]!.GetValue<int>());
        Assert.Equal(3, used["lora_r"]!.GetValue<int>());
        Assert.Equal(["query", "key"], used["lora_targets"]!.AsArray().Select(v => v!.GetValue<string>()));

        // The saved run_config.json is itself a config: the same values, another run folder.
        result = Run("train", "--config", Path.Combine(temp.File("a"), RunConfig.FileName), "--out", temp.File("b"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        var again = RunConfigOf(temp.File("b"));
        foreach (string key in new[] { "lr", "batch_size", "lora_r", "lora_targets", "method", "pooling", "max_length", "seed" })
            Assert.Equal(used[key]!.ToJsonString(), again[key]!.ToJsonString());

        File.WriteAllText(temp.File("typo.yaml"), $"train: {train}\nlearnig_rate: 0.1\n");
        AssertUserError(Run("train", "--config", temp.File("typo.yaml")), "learnig_rate", "did you mean 'learning_rate'");
        File.WriteAllText(temp.File("twice.yaml"), $"train: {train}\nlr: 0.1\nlearning_rate: 0.2\n");
        AssertUserError(Run("train", "--config", temp.File("twice.yaml")), "learning_rate", "give it once");
        File.WriteAllText(temp.File("type.yaml"), $"train: {train}\nepochs: three\n");
        AssertUserError(Run("train", "--config", temp.File("type.yaml")), "type.yaml: epochs", "three");
    }

    [Fact]
    public void Pooling_follows_the_model_unless_given()
    {
        using var temp = new TestModels.TempFolder();
        string plain = TinyModelFolder(temp, "plain"), train = ToyCsv(temp, "train.csv", 16, 1);
        string PoolingOf(string run) => RunConfigOf(run)["pooling"]!.GetValue<string>();

        var result = Run("train", "--model", plain, "--train", train, "--epochs", "1", "--out", temp.File("a"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        Assert.Equal("pooler", PoolingOf(temp.File("a")));
        Assert.Contains("pooling: pooler (model:", result.Out);

        // A sentence-transformers folder says it was trained with mean pooling.
        string sentence = TinyModelFolder(temp, "sentence");
        File.WriteAllText(Path.Combine(sentence, "modules.json"),
            """[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]""");
        Directory.CreateDirectory(Path.Combine(sentence, "1_Pooling"));
        File.WriteAllText(Path.Combine(sentence, "1_Pooling", "config.json"), """{"word_embedding_dimension": 32, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}""");
        result = Run("train", "--model", sentence, "--train", train, "--epochs", "1", "--out", temp.File("b"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        Assert.Equal("mean", PoolingOf(temp.File("b")));
        Assert.Contains("pooling_mode_mean_tokens", RunConfigOf(temp.File("b"))["sources"]!["pooling"]!.GetValue<string>());

        result = Run("train", "--model", sentence, "--train", train, "--epochs", "1", "--pooling", "cls", "--out", temp.File("c"));
        Assert.True(result.Code == 0, result.Error + result.Out);
        Assert.Equal("cls", PoolingOf(temp.File("c")));
        Assert.Equal("command line", RunConfigOf(temp.File("c"))["sources"]!["pooling"]!.GetValue<string>());
        AssertUserError(Run("train", "--model", plain, "--train", train, "--pooling", "max"), "--pooling 'max'", "cls, mean, pooler");
    }

    [Fact]
    public void Help_names_the_tool_sharptune()
    {
        var (code, output, _) = CliProcess.Run(["train", "--help"]);
        Assert.Equal(0, code);
        Assert.Contains("sharptune train [options]", output);
        Assert.DoesNotContain("SharpTune.Cli", output);
    }

    /// <summary>Every flag a message of the library or the CLI names is one the CLI has.</summary>
    [Fact]
    public void Every_flag_named_in_a_message_exists()
    {
        // --lora (llama-cli) and --template (ollama show): other tools' flags in the commands export prints.
        var flags = new HashSet<string>(StringComparer.Ordinal) { "--help", "--version", "--lora", "--template" };
        void Collect(System.CommandLine.Command command)
        {
            foreach (var option in command.Options) { flags.Add(option.Name); foreach (var alias in option.Aliases) flags.Add(alias); }
            foreach (var sub in command.Subcommands) Collect(sub);
        }
        Collect(SharpTune.Cli.Program.CreateRoot());

        string root = RepositoryRoot();
        var named = new List<string>();
        foreach (string file in Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")) continue;
            string text = File.ReadAllText(file);
            foreach (Match literal in Regex.Matches(text, "\"(?:[^\"\\\\\\n]|\\\\.)*\""))
                foreach (Match flag in Regex.Matches(literal.Value, @"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]"))
                    if (!flags.Contains(flag.Value)) named.Add($"{Path.GetRelativePath(root, file)}: {flag.Value}");
        }
        Assert.True(named.Count == 0, "flags named in messages but not defined:\n" + string.Join("\n", named.Distinct()));
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("the repository root (SharpTune.slnx) is not above the test binaries");
    }
}
