using System.Text.Json.Nodes;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>The commands a user types on a GGUF file, checked against llama.cpp on the same file.</summary>
[Collection(nameof(ConsoleCollection))]
public class DecoderCliTests
{
    static readonly TinyDecoderSizes Sizes = new(Vocab: 301, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 2, Intermediate: 83, Positions: 96);

    static string TinyLlama(TestModels.TempFolder temp, string arch = "llama")
    {
        string path = temp.File($"{arch}.gguf");
        var hf = GgufTestModels.HfLlama(Sizes, bias: arch == "qwen2", tied: false)
            .ToDictionary(kv => kv.Key, kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1]) : kv.Value);
        GgufTestModels.WriteLlama(path, arch, Sizes, hf);
        return path;
    }

    [Fact]
    public void Generate_continues_a_prompt_as_llama_cpp_does()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyLlama(temp);
        string prompt = "Once upon a time, 42 dragons";
        var (code, output, error) = CliHarness.Run("generate", "--model", model, "--prompt", prompt, "--greedy", "--max-new-tokens", "12", "--json");
        Assert.True(code == 0, error + output);
        var result = JsonNode.Parse(output.Trim().Split('\n').Last())!;
        var ids = result["token_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToList();

        using var reference = new LlamaCpp(model);
        var promptIds = reference.Tokenize(prompt, addBos: true, special: false);
        using (var lm = LanguageModel.Load(model)) Assert.Equal(promptIds, lm.Tokenizer.Encode(prompt));
        Assert.Equal(reference.Greedy(promptIds, 12), ids);
        Assert.Equal("length", result["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public void Eval_gives_llama_cpps_perplexity_on_a_text_file()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyLlama(temp, "qwen2");
        // Short texts (the tiny vocabulary spells most characters as byte tokens): each fits the 96-token context in one window.
        var texts = new[] { "the cat sat", "a dog ran far", "42 is the answer" }.ToList();
        File.WriteAllLines(temp.File("texts.txt"), texts);
        var (code, output, error) = CliHarness.Run("eval", "--model", model, "--data", temp.File("texts.txt"), "--output", temp.File("ppl.json"));
        Assert.True(code == 0, error + output);
        double ours = JsonNode.Parse(File.ReadAllText(temp.File("ppl.json")))!["metrics"]!["perplexity"]!.GetValue<double>();

        using var reference = new LlamaCpp(model);
        double nll = 0;
        long count = 0;
        foreach (string text in texts)
        {
            var ids = reference.Tokenize(text, addBos: true, special: false);
            var logits = reference.Logits(ids);
            for (int t = 0; t + 1 < ids.Length; t++, count++)
            {
                double max = logits[t].Max(), sum = logits[t].Sum(v => Math.Exp(v - max));
                nll -= logits[t][ids[t + 1]] - max - Math.Log(sum);
            }
        }
        Assert.True(Math.Abs(Math.Exp(nll / count) / ours - 1) < 1e-4, $"perplexity {ours} vs llama.cpp {Math.Exp(nll / count)}");
        Assert.Contains("perplexity", output);
    }

    [Fact]
    public void Info_describes_a_gguf_file_and_the_model_saved_as_a_folder_gives_the_same_logits()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyLlama(temp);
        var (code, output, error) = CliHarness.Run("info", "--model", model);
        Assert.True(code == 0, error + output);
        Assert.Contains("llama: 2 layers, hidden 48, 6 heads / 2 key-value heads (head dim 8)", output);
        Assert.Contains("context        96 tokens", output);
        Assert.Contains("vocabulary     301", output);
        Assert.Contains("tensor types: F32", output);

        using var lm = LanguageModel.Load(model);
        string folder = temp.File("hf");
        lm.Model.Save(folder);
        using var reloaded = PretrainedDecoder.Load(folder);
        using var ids = tensor(new long[] { 1, 260, 7, 299, 42 }).unsqueeze(0);
        using var noGrad = no_grad();
        using var fromGguf = lm.Model.Forward(ids);
        using var fromFolder = reloaded.Forward(ids);
        Tolerances.AssertClose(fromGguf, fromFolder, Tolerances.Exact, "GGUF vs saved folder");
    }

    [Fact]
    public void Bad_language_model_input_gives_one_clear_line()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyLlama(temp);
        byte[] bytes = File.ReadAllBytes(model);
        File.WriteAllBytes(temp.File("truncated.gguf"), bytes[..(bytes.Length / 3)]);
        var cases = new (string[] Args, string Expected)[]
        {
            (["generate", "--model", temp.File("missing.gguf"), "--prompt", "x"], "missing.gguf"),
            (["generate", "--model", temp.File("truncated.gguf"), "--prompt", "x"], "truncated.gguf"),
            (["generate", "--model", model, "--prompt", "x", "--temperature", "0"], "--temperature"),
            (["generate", "--model", model, "--prompt", "x", "--top-p", "1.5"], "--top-p"),
            (["generate", "--model", model, "--prompt", "x", "--dtype", "fp8"], "--dtype"),
            (["eval", "--model", model, "--data", temp.File("absent.txt")], "absent.txt"),
            (["chat", "--model", model, "--chat-template", temp.File("absent.jinja")], "absent.jinja"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, output, error) = CliHarness.Run(args);
            Assert.True(code == 1, $"{string.Join(' ', args)}: exit {code}\n{error}{output}");
            Assert.StartsWith("error: ", error);
            Assert.Contains(expected, error);
            Assert.DoesNotContain("   at ", error);
        }
    }
}

/// <summary>The interactive chat, driven through standard input.</summary>
[Collection(nameof(ConsoleCollection))]
public class ChatCommandTests
{
    [Fact]
    public void Chat_renders_the_template_keeps_the_history_and_resets()
    {
        using var temp = new TestModels.TempFolder();
        var sizes = new TinyDecoderSizes(Vocab: 301, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 2, Intermediate: 83, Positions: 96);
        string model = temp.File("chat.gguf");
        GgufTestModels.WriteLlama(model, "llama", sizes, GgufTestModels.HfLlama(sizes, bias: false, tied: false)
            .ToDictionary(kv => kv.Key, kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1]) : kv.Value));
        // A template that shows the roles, so the rendered history is visible in what the model is fed.
        File.WriteAllText(temp.File("t.jinja"), "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}");
        var oldIn = Console.In;
        Console.SetIn(new StringReader("hi\nhow are you\n/reset\nagain\n/exit\n"));
        try
        {
            var (code, output, error) = CliHarness.Run("chat", "--model", model, "--chat-template", temp.File("t.jinja"), "--greedy", "--max-new-tokens", "5");
            Assert.True(code == 0, error + output);
            Assert.Contains("t.jinja", error);
            Assert.Equal(5, error.Split("> ").Length - 1);                 // a prompt before each of the five lines read
            Assert.True(output.Length > 0, "no reply printed");
            // Without --chat-template the GGUF's own template is used.
            Console.SetIn(new StringReader("hello\n"));
            var (shipped, _, message) = CliHarness.Run("chat", "--model", model, "--greedy", "--max-new-tokens", "3");
            Assert.Equal(0, shipped);
            Assert.Contains("tokenizer.chat_template", message);
        }
        finally
        {
            Console.SetIn(oldIn);
        }
    }
}
