using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;

namespace SharpTune.Tests.Cli;

/// <summary>
/// What a user types to fine-tune a language model: train on a GGUF file with chat, instruction and raw-text rows,
/// then generate and score with the run folder wherever a model is asked for.
/// </summary>
public class CausalLmCliTests
{
    /// <summary>A tiny llama GGUF whose vocabulary has byte tokens, so any text encodes.</summary>
    internal static string TinyGguf(TestModels.TempFolder temp)
    {
        var sizes = new TinyDecoderSizes(300, 32, 2, 4, 2, 37, 96);
        string path = temp.File("tiny.gguf");
        GgufTestModels.WriteLlama(path, "llama", sizes, GgufTestModels.HfLlama(sizes, bias: false, tied: false));
        return path;
    }

    internal static string Data(TestModels.TempFolder temp)
    {
        var lines = new List<string>();
        for (int i = 0; i < 12; i++)
        {
            lines.Add(new JsonObject { ["text"] = $"the river {i} runs to the sea" }.ToJsonString());
            lines.Add(new JsonObject { ["prompt"] = $"count {i}:", ["completion"] = $" {i + 1} {i + 2}" }.ToJsonString());
            lines.Add(new JsonObject
            {
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"hi {i}" },
                    new JsonObject { ["role"] = "assistant", ["content"] = "hello" }),
            }.ToJsonString());
            lines.Add(new JsonObject { ["instruction"] = "say yes", ["input"] = $"{i}", ["output"] = "yes" }.ToJsonString());
        }
        string path = temp.File("train.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("prefix")]
    [InlineData("full")]
    public void A_decoder_fine_tunes_and_its_run_folder_generates_and_scores(string method)
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyGguf(temp), data = Data(temp), run = temp.File("run");
        var (code, output, error) = CliHarness.Run("train", "--model", model, "--task", "causal-lm", "--train", data, "--method", method,
            "--max-steps", "4", "--batch-size", "4", "--virtual-tokens", "3", "--lr", "1e-2", "--out", run, "--max-length", "48", "--eval-generate", "3");
        Assert.True(code == 0, error + output);
        // --eval-generate: prompts of the validation rows completed and scored; what the model says is in samples.jsonl.
        Assert.Contains("ROUGE-L", output);
        var samples = File.ReadAllLines(Path.Combine(run, "samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(3, samples.Count(s => s["trigger"]!.GetValue<string>() == "final"));
        Assert.Equal(6, samples.Count(s => s["step"]!.GetValue<long>() == 4)); // the last evaluation of training, then the final one
        Assert.All(samples, s => Assert.NotNull(s["generated"]));
        Assert.Contains("no --validation file: holding out", output);
        string final = Path.Combine(run, "final");
        Assert.True(File.Exists(Path.Combine(final, "sharptune_lm.json")));
        if (method == "full") Assert.True(File.Exists(Path.Combine(final, "model.safetensors")));
        else
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(final, "adapter", "adapter_config.json")))!;
            Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        }

        var generated = CliHarness.Run("generate", "--model", run, "--prompt", "count 3:", "--max-new-tokens", "4", "--greedy", "--json");
        Assert.True(generated.Code == 0, generated.Error);
        Assert.Contains("token_ids", generated.Out);

        string held = temp.File("held.txt");
        File.WriteAllLines(held, ["the river 40 runs to the sea", "count 7: 8 9"]);
        var scored = CliHarness.Run("eval", "--model", run, "--data", held);
        Assert.True(scored.Code == 0, scored.Error);
        Assert.Contains("perplexity", scored.Out);
    }

    [Fact]
    public void LoRA_trains_over_a_bf16_base_with_recomputed_layers()
    {
        using var temp = new TestModels.TempFolder();
        string run = temp.File("run");
        var (code, output, error) = CliHarness.Run("train", "--model", TinyGguf(temp), "--task", "causal-lm", "--train", Data(temp),
            "--method", "lora", "--base-dtype", "bf16", "--gradient-checkpointing", "--max-steps", "3", "--batch-size", "4", "--out", run, "--max-length", "48");
        Assert.True(code == 0, error + output);
        Assert.Contains("base held in bf16, read as bf16", output);
        var full = CliHarness.Run("train", "--model", TinyGguf(temp), "--task", "causal-lm", "--train", Data(temp),
            "--method", "full", "--base-dtype", "bf16", "--out", temp.File("run2"));
        Assert.NotEqual(0, full.Code);
        Assert.Contains("--base-dtype bf16", full.Error);
        var generated = CliHarness.Run("generate", "--model", run, "--prompt", "count 3:", "--max-new-tokens", "3", "--greedy");
        Assert.True(generated.Code == 0, generated.Error);
    }

    [Theory]
    [InlineData("ia3")]
    [InlineData("prompt")]
    [InlineData("ptuning")]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    public void Every_adapter_and_prompt_method_trains_over_a_base_read_in_bf16(string method)
    {
        using var temp = new TestModels.TempFolder();
        string run = temp.File("run");
        var (code, output, error) = CliHarness.Run("train", "--model", TinyGguf(temp), "--task", "causal-lm", "--train", Data(temp),
            "--method", method, "--virtual-tokens", "3", "--base-dtype", "bf16", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        Assert.Contains("base held in bf16, read as bf16", output);
        var scored = CliHarness.Run("eval", "--model", run, "--data", Data(temp));
        Assert.True(scored.Code == 0, scored.Error);
        Assert.Contains("perplexity", scored.Out);
    }

    [Fact]
    public void Eval_scores_chat_and_instruction_rows_as_the_runs_validation_does()
    {
        using var temp = new TestModels.TempFolder();
        string run = temp.File("run"), validation = temp.File("validation.jsonl");
        File.WriteAllLines(validation, File.ReadLines(Data(temp)).Where((_, i) => i % 4 != 0).Take(9));   // chat, prompt/completion and Alpaca rows
        var (code, output, error) = CliHarness.Run("train", "--model", TinyGguf(temp), "--task", "causal-lm", "--train", Data(temp), "--validation", validation,
            "--method", "lora", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        var final = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).Single(o => o["type"]!.GetValue<string>() == "final");
        double expected = final["eval_perplexity"]!.GetValue<double>();

        string report = temp.File("eval.json");
        var scored = CliHarness.Run("eval", "--model", Path.Combine(run, "final"), "--data", validation, "--window", "40", "--output", report);
        Assert.True(scored.Code == 0, scored.Error);
        Assert.Contains("the completions and the assistant turns", scored.Out);
        double actual = JsonNode.Parse(File.ReadAllText(report))!["metrics"]!["perplexity"]!.GetValue<double>();
        Tolerances.AssertClose([expected], [actual], Tolerances.DifferentKernels, "eval perplexity against the run's final validation perplexity");
    }

    [Fact]
    public void Packing_trains_on_rows_of_several_examples()
    {
        using var temp = new TestModels.TempFolder();
        var (code, output, error) = CliHarness.Run("train", "--model", TinyGguf(temp), "--task", "causal-lm", "--train", Data(temp),
            "--method", "lora", "--packing", "--max-steps", "2", "--batch-size", "2", "--out", temp.File("run"), "--max-length", "64");
        Assert.True(code == 0, error + output);
        Assert.Contains("packed into", output);
    }

    [Fact]
    public void Bad_language_model_runs_fail_before_training_with_the_reason()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyGguf(temp), data = Data(temp);
        string bad = temp.File("bad.jsonl");
        File.WriteAllLines(bad, ["{\"text\": \"fine\"}", "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}"]);
        var noAnswer = CliHarness.Run("train", "--model", model, "--task", "causal-lm", "--train", bad, "--out", temp.File("r1"));
        Assert.NotEqual(0, noAnswer.Code);
        Assert.Contains($"{bad}:2", noAnswer.Error);
        Assert.Contains("no assistant turn", noAnswer.Error);

        var head = CliHarness.Run("train", "--model", model, "--task", "causal-lm", "--train", data, "--method", "head", "--out", temp.File("r2"));
        Assert.NotEqual(0, head.Code);
        Assert.Contains("does not apply to a language model", head.Error);

        var targets = CliHarness.Run("train", "--model", model, "--task", "causal-lm", "--train", data, "--method", "lora",
            "--lora-targets", "query", "--out", temp.File("r3"));
        Assert.NotEqual(0, targets.Code);
        Assert.Contains("q_proj", targets.Error);

        var packing = CliHarness.Run("train", "--model", model, "--task", "causal-lm", "--train", data, "--method", "prompt",
            "--packing", "--out", temp.File("r4"));
        Assert.NotEqual(0, packing.Code);
        Assert.Contains("--packing", packing.Error);
    }

    /// <summary>ChatML as a file of its own, the way a user gives a template the base lacks.</summary>
    const string ChatMl = """
        {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
        """;

    /// <summary>The tiny decoder as a Hugging Face folder whose tokenizer has no chat template.</summary>
    static string BaseWithoutTemplate(TestModels.TempFolder temp)
    {
        string gguf = TinyGguf(temp), folder = temp.File("no-template-base");
        using (var lm = LanguageModel.Load(gguf)) DecoderExport.MergedHuggingFace(lm.Model, DecoderSource.Gguf(gguf), folder);
        string config = Path.Combine(folder, "tokenizer_config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json.Remove("chat_template");
        File.WriteAllText(config, json.ToJsonString());
        using (var plain = LanguageModel.Load(folder)) Assert.Null(plain.Template);
        return folder;
    }

    static string Chats(TestModels.TempFolder temp, string name, int rows, int offset)
    {
        string path = temp.File(name);
        File.WriteAllLines(path, Enumerable.Range(offset, rows).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"count {i}" },
                new JsonObject { ["role"] = "assistant", ["content"] = $"{i + 1} {i + 2}" }),
        }.ToJsonString()));
        return path;
    }

    [Fact]
    public void A_run_keeps_the_chat_template_it_was_given_and_eval_chat_and_export_render_with_it()
    {
        using var temp = new TestModels.TempFolder();
        string baseModel = BaseWithoutTemplate(temp), template = temp.File("chatml.jinja"), run = temp.File("run");
        File.WriteAllText(template, ChatMl);
        string train = Chats(temp, "train.jsonl", 12, 0), validation = Chats(temp, "validation.jsonl", 5, 40);
        var (code, output, error) = CliHarness.Run("train", "--model", baseModel, "--task", "causal-lm", "--train", train, "--validation", validation,
            "--chat-template", template, "--method", "lora", "--max-steps", "3", "--batch-size", "4", "--lr", "1e-2", "--max-length", "96", "--out", run);
        Assert.True(code == 0, error + output);
        string final = Path.Combine(run, "final");
        Assert.Equal(ChatMl, File.ReadAllText(Path.Combine(final, "chat_template.jinja")));
        Assert.All(new[] { "best", "final" }.Where(f => Directory.Exists(Path.Combine(run, f))),
            f => Assert.True(File.Exists(Path.Combine(run, f, "chat_template.jinja")), $"{f}/ keeps the template"));
        File.Delete(template); // the run needs the file no more
        var metrics = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).Single(o => o["type"]!.GetValue<string>() == "final");
        double expected = metrics["eval_perplexity"]!.GetValue<double>();

        // eval has no --chat-template: the run's own renders the validation rows as training did.
        string report = temp.File("eval.json");
        var scored = CliHarness.Run("eval", "--model", final, "--data", validation, "--window", "96", "--output", report);
        Assert.True(scored.Code == 0, scored.Error + scored.Out);
        Assert.Contains($"chat template {Path.Combine(final, "chat_template.jinja")}", scored.Out);
        double actual = JsonNode.Parse(File.ReadAllText(report))!["metrics"]!["perplexity"]!.GetValue<double>();
        Tolerances.AssertClose([expected], [actual], Tolerances.DifferentKernels, "eval perplexity against the run's final validation perplexity");

        var oldIn = Console.In;
        Console.SetIn(new StringReader("count 3\n/exit\n"));
        try
        {
            var chat = CliHarness.Run("chat", "--model", run, "--max-new-tokens", "3", "--greedy");
            Assert.True(chat.Code == 0, chat.Error);
            Assert.Contains("chat_template.jinja", chat.Error);
        }
        finally
        {
            Console.SetIn(oldIn);
        }

        var exported = CliHarness.Run("export", "--model", run, "--format", "gguf", "--dtype", "f32", "--out", temp.File("out/merged.gguf"));
        Assert.True(exported.Code == 0, exported.Error + exported.Out);
        Assert.Equal(ChatMl, GgufFile.Open(temp.File("out/merged.gguf")).GetString("tokenizer.chat_template"));
        var modelfile = File.ReadAllText(temp.File("out/merged.Modelfile"));
        Assert.Contains("FROM ./merged.gguf", modelfile);
        Assert.Contains("TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>", modelfile);
        Assert.Contains("PARAMETER stop \"<|im_end|>\"", modelfile);
        using (var merged = LanguageModel.Load(temp.File("out/merged.gguf"))) Assert.Equal(ChatMl, merged.Template!.Text);

        var hf = CliHarness.Run("export", "--model", run, "--format", "hf", "--out", temp.File("hf"));
        Assert.True(hf.Code == 0, hf.Error + hf.Out);
        using (var folder = LanguageModel.Load(temp.File("hf"))) Assert.Equal(ChatMl, folder.Template!.Text); // the base has none

        // --out adapter.gguf is the adapter file itself (a script passes it on to llama.cpp), the Modelfile named after it.
        string adapter = temp.File("lora/adapter.gguf");
        var lora = CliHarness.Run("export", "--model", run, "--format", "gguf-lora", "--out", adapter);
        Assert.True(lora.Code == 0, lora.Error + lora.Out);
        Assert.True(File.Exists(adapter), "the adapter is a file");
        foreach (string file in new[] { adapter, temp.File("lora/base.gguf"), temp.File("lora/adapter.Modelfile") })
            Assert.Contains($"wrote {file}", lora.Out);
        var loraModelfile = File.ReadAllLines(temp.File("lora/adapter.Modelfile"));
        Assert.Equal(["FROM ./base.gguf", "ADAPTER ./adapter.gguf"], loraModelfile.Where(l => l.StartsWith("FROM", StringComparison.Ordinal) || l.StartsWith("ADAPTER", StringComparison.Ordinal)));
        Assert.Contains("PARAMETER stop \"<|im_end|>\"", loraModelfile);
        Assert.Equal(ChatMl, GgufFile.Open(temp.File("lora/base.gguf")).GetString("tokenizer.chat_template"));
        var inFolder = CliHarness.Run("export", "--model", run, "--format", "gguf", "--out", temp.File("folder"));
        Assert.True(inFolder.Code == 0, inFolder.Error + inFolder.Out);
        Assert.Contains($"wrote {temp.File("folder/model.gguf")}", inFolder.Out);
        Assert.Contains($"ollama create NAME -f {temp.File("folder/model.Modelfile")}", inFolder.Out);

        // A folder saved before SharpTune kept the template, from a run given --chat-template: refused, not scored another way.
        string spec = Path.Combine(final, "sharptune_lm.json");
        var json = JsonNode.Parse(File.ReadAllText(spec))!.AsObject();
        json.Remove("chat_template");
        File.WriteAllText(spec, json.ToJsonString());
        var legacy = CliHarness.Run("eval", "--model", final, "--data", validation, "--window", "96", "--output", report);
        Assert.Equal(1, legacy.Code);
        Assert.Contains("--chat-template", legacy.Error);
        Assert.Contains("did not keep the template", legacy.Error);
        File.WriteAllText(template, ChatMl);
        var given = CliHarness.Run("eval", "--model", final, "--data", validation, "--window", "96", "--output", report, "--chat-template", template);
        Assert.True(given.Code == 0, given.Error);
        Tolerances.AssertClose([expected], [JsonNode.Parse(File.ReadAllText(report))!["metrics"]!["perplexity"]!.GetValue<double>()], Tolerances.DifferentKernels,
            "the same file given again");
    }
}
