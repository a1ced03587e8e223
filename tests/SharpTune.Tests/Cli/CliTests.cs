using SharpTune.Inference;
using SharpTune.ModelFolders;
using System.Text;
using SharpTune.Checkpoints;

namespace SharpTune.Tests.Cli;

/// <summary>The sharptune command end to end on a tiny model folder: train, eval, predict, resume, and bad input.</summary>
[Collection(nameof(ConsoleCollection))]
public class CliTests
{
    static (int Code, string Out, string Error) Run(params string[] args) => CliHarness.Run(args);
    static string TinyModelFolder(TestModels.TempFolder temp) => CliHarness.TinyModelFolder(temp);
    static string ToyCsv(TestModels.TempFolder temp, string name, int rows, int seed) => CliHarness.ToyCsv(temp, name, rows, seed);

    [Fact]
    public void Train_eval_predict_and_resume_work_end_to_end()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 48, 1), validation = ToyCsv(temp, "validation.csv", 16, 2);
        string run = temp.File("run");

        var (code, output, error) = Run("train", "--model", model, "--train", train, "--validation", validation,
            "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--max-length", "16", "--out", run);
        Assert.True(code == 0, error + output);
        foreach (var file in new[] { "metrics.jsonl", "curves.png", "run_config.json", "labels.json", "best/model.safetensors", "final/config.json", "checkpoints/latest" })
            Assert.True(File.Exists(Path.Combine(run, file)), file);
        Assert.Contains("trainable parameters", output);
        Assert.Contains("BertForSequenceClassification", File.ReadAllText(Path.Combine(run, "final", "config.json")));

        (code, output, error) = Run("eval", "--model", run, "--data", validation, "--output", temp.File("metrics.json"));
        Assert.True(code == 0, error);
        Assert.Contains("\"accuracy\"", File.ReadAllText(temp.File("metrics.json")));

        (code, output, error) = Run("predict", "--model", run, "--data", validation, "--output", temp.File("predictions.jsonl"));
        Assert.True(code == 0, error);
        Assert.Equal(16, File.ReadAllLines(temp.File("predictions.jsonl")).Length);

        // A finished run resumes to its end without taking more steps.
        (code, output, error) = Run("train", "--model", model, "--train", train, "--validation", validation,
            "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--max-length", "16", "--out", run, "--resume");
        Assert.True(code == 0, error + output);

        // Starting over into a used run folder is refused rather than mixing two runs.
        (code, _, error) = Run("train", "--model", model, "--train", train, "--out", run);
        Assert.Equal(1, code);
        Assert.Contains("--resume", error);
    }

    /// <summary>
    /// A tag that only the validation file carries gets a class (with a note) instead of failing the run, and a
    /// test tag the model never saw is scored as an error (counted in unseen_label_tokens) instead of failing.
    /// </summary>
    [Fact]
    public void Token_tags_outside_the_training_data_are_kept_and_counted()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string Conll(string name, int sentences, params (string Word, string Tag)[] extra)
        {
            var text = new StringBuilder();
            for (int i = 0; i < sentences; i++)
                text.Append($"the\tdet\nmovie\tnoun\nwas\tverb\ngood\tadj\n\n");
            foreach (var (word, tag) in extra) text.Append($"the\tdet\n{word}\t{tag}\n\n");
            string path = temp.File(name);
            File.WriteAllText(path, text.ToString());
            return path;
        }
        string train = Conll("train.conll", 12), validation = Conll("validation.conll", 3, ("food", "noun-rare"));
        string run = temp.File("run");

        var (code, output, error) = Run("train", "--model", model, "--task", "tokens", "--train", train, "--validation", validation,
            "--epochs", "1", "--batch-size", "4", "--max-length", "16", "--out", run);
        Assert.True(code == 0, error + output);
        Assert.Contains("1 label(s) occur only in the validation data", output);
        Assert.Contains("noun-rare", File.ReadAllText(Path.Combine(run, "labels.json")));

        string test = Conll("test.conll", 2, ("great", "unheard-of"), ("fine", "unheard-of"));
        (code, output, error) = Run("eval", "--model", run, "--data", test, "--output", temp.File("metrics.json"));
        Assert.True(code == 0, error + output);
        string metrics = File.ReadAllText(temp.File("metrics.json"));
        Assert.Contains("\"unseen_label_tokens\": 2", metrics);
        // 12 test words; the two with the unseen tag cannot be right.
        var accuracy = System.Text.Json.JsonDocument.Parse(metrics).RootElement.GetProperty("metrics").GetProperty("token_accuracy").GetDouble();
        Assert.True(accuracy <= 10.0 / 12 + 1e-9, $"token accuracy {accuracy} counts unseen tags as right");
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("ia3")]
    [InlineData("bitfit")]
    [InlineData("prompt")]
    [InlineData("ptuning")]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    [InlineData("freeze:1")]
    public void Every_method_trains_saves_and_predicts_from_the_command_line(string method)
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 4), validation = ToyCsv(temp, "validation.csv", 8, 5);
        string run = temp.File("run");
        var (code, output, error) = Run("train", "--model", model, "--train", train, "--validation", validation, "--method", method,
            "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--virtual-tokens", "3", "--encoder-hidden", "8", "--out", run);
        Assert.True(code == 0, error + output);
        Assert.Contains("trainable parameters", output);
        bool peft = !method.StartsWith("freeze", StringComparison.Ordinal);
        Assert.Equal(peft, File.Exists(Path.Combine(run, "final", "adapter", "adapter_config.json")));
        if (peft) Assert.Contains("adapter on disk", output);

        (code, output, error) = Run("predict", "--model", run, "--data", validation, "--output", temp.File("predictions.csv"));
        Assert.True(code == 0, error + output);
        Assert.Equal(9, File.ReadAllLines(temp.File("predictions.csv")).Length);

        if (method is "lora" or "ia3")
        {
            // Merged into a plain model, the predictions stay the same.
            (code, output, error) = Run("export", "--model", run, "--out", temp.File("merged"));
            Assert.True(code == 0, error + output);
            Assert.False(Directory.Exists(temp.File("merged/adapter")));
            (code, output, error) = Run("predict", "--model", temp.File("merged"), "--data", validation, "--output", temp.File("merged.csv"));
            Assert.True(code == 0, error + output);
            static double[] Scores(string path) => File.ReadAllLines(path).Skip(1).Select(l => double.Parse(l[(l.LastIndexOf(',') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            var before = Scores(temp.File("predictions.csv"));
            var after = Scores(temp.File("merged.csv"));
            // Probabilities (printed to 6 decimals) through merged weights against base + adapter: other arithmetic through the network.
            Tolerances.AssertClose(before, after, Tolerances.DifferentKernelsThroughNetwork, "merged model predicts as the adapter did");
        }
    }

    [Fact]
    public void Several_adapters_share_one_base_and_are_chosen_per_call()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 6);
        foreach (var (method, run) in new[] { ("lora", "run-lora"), ("prefix", "run-prefix") })
        {
            var (trained, output, error) = Run("train", "--model", model, "--train", train, "--method", method, "--epochs", "1",
                "--batch-size", "8", "--max-length", "16", "--virtual-tokens", "3", "--encoder-hidden", "8", "--out", temp.File(run));
            Assert.True(trained == 0, error + output);
        }

        using (var host = new SharpTune.Inference.AdapterHost(model))
        {
            host.Add("spam", temp.File("run-lora"));
            host.Add("topic", temp.File("run-prefix"));
            using var alone = TaskModelFolder.Load(temp.File("run-lora"));
            var shared = host.Get("spam").Model;
            using var ids = TorchSharp.torch.tensor(new long[] { 2, 5, 6, 3 }).view(1, 4);
            using var mask = TorchSharp.torch.ones_like(ids);
            using var types = TorchSharp.torch.zeros_like(ids);
            var inputs = new SharpTune.Heads.ModelInputs(ids, mask, types);
            using var a = shared.forward(inputs);
            using var b = alone.Model.forward(inputs);
            // The same weights (shared or copied) through the same kernels: bit-identical.
            Tolerances.AssertClose(b, a, Tolerances.Exact, "an adapter over the shared base gives the logits of the model loaded alone");

            // The frozen base is the same memory in both adapters; LoRA's own matrices are not.
            var lora = host.Get("spam").Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var prefix = host.Get("topic").Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            string key = "bert.encoder.layer.0.attention.self.query.weight";
            Assert.True(SharpTune.Inference.AdapterHost.SharesStorage(lora[key], prefix[key]));
            var separate = alone.Model.named_parameters().First(p => p.name == key).parameter;
            Assert.False(SharpTune.Inference.AdapterHost.SharesStorage(lora[key], separate)); // a model loaded on its own has its own copy
            Assert.DoesNotContain(prefix.Keys, k => k.Contains("lora_"));
        }

        var (oldIn, input) = (Console.In, new StringReader("the movie was great\n@topic the food is awful\n"));
        Console.SetIn(input);
        try
        {
            var (code, output, error) = Run("predict", "--adapters", $"spam={temp.File("run-lora")},topic={temp.File("run-prefix")}", "--adapter", "spam");
            Assert.True(code == 0, error + output);
            var lines = output.Trim().Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.Contains("(spam)", lines[0]);
            Assert.Contains("(topic)", lines[1]);
        }
        finally
        {
            Console.SetIn(oldIn);
        }
    }

    [Fact]
    public void A_config_file_supplies_options_and_the_command_line_overrides_them()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 3);
        File.WriteAllText(temp.File("run.yaml"), $"""
            model: {model}
            train: {train}
            max_length: 16
            out: {temp.File("from-config")}
            training:
              epochs: 5
              batch_size: 8
              learning_rate: 0.001
            """);
        var (code, output, error) = Run("train", "--config", temp.File("run.yaml"), "--epochs", "1", "--out", temp.File("overridden"));
        Assert.True(code == 0, error + output);
        string used = File.ReadAllText(Path.Combine(temp.File("overridden"), "run_config.json"));
        Assert.Contains("\"epochs\": 1", used);
        Assert.Contains("\"batch_size\": 8", used);
        Assert.False(Directory.Exists(temp.File("from-config")));
    }

    [Fact]
    public void Bad_input_gives_one_clear_line_and_exit_code_1()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        File.WriteAllText(temp.File("bad.csv"), "text,label\n\"fine movie\",pos\n\"unterminated,neg\n");
        File.WriteAllText(temp.File("bad.yaml"), "training: [unclosed\n");
        File.WriteAllText(temp.File("unknown.yaml"), "epochz: 3\n");

        var cases = new (string[] Args, string Expected)[]
        {
            (["info", "--model", temp.File("missing")], "not found"),
            (["train", "--model", model, "--train", temp.File("absent.csv")], "absent.csv"),
            (["train", "--model", model, "--train", temp.File("bad.csv")], "bad.csv:3"),
            (["train", "--model", model, "--train", temp.File("bad.csv"), "--optimizer", "adagrad"], "adagrad"),
            (["train", "--model", model, "--train", temp.File("bad.csv"), "--freeze", "freeze:x"], "freeze:x"),
            (["train", "--config", temp.File("bad.yaml")], "bad.yaml"),
            (["train", "--config", temp.File("unknown.yaml")], "epochz"),
            (["eval", "--model", temp.File("missing"), "--data", temp.File("bad.csv")], "missing"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, error) = Run(args);
            Assert.True(code == 1, $"{string.Join(' ', args)}: exit {code}, {error}");
            Assert.StartsWith("error: ", error);
            Assert.Contains(expected, error);
            Assert.DoesNotContain("   at ", error); // no stack trace
        }
    }
}

[CollectionDefinition(nameof(ConsoleCollection), DisableParallelization = true)]
public class ConsoleCollection;
