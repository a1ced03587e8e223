using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Tests.Tokenization.ChatTemplates;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Tokenization.Decoders;
using static SharpTune.Tests.ModelFolders.DecoderExports.ExportTestModels;

namespace SharpTune.Tests.ModelFolders.DecoderExports;

/// <summary>
/// The Ollama Modelfiles the GGUF exports write beside each file: FROM (and ADAPTER), a TEMPLATE in Ollama's Go syntax
/// for the chat templates whose kind is known (real templates as models ship them), the stop strings, and where they go.
/// </summary>
public class OllamaModelfileTests
{
    static readonly string[] Vocabulary =
        ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"];

    static IDecoderTokenizer Tokenizer(int bos, int eos, bool addBos) => DecoderTokenizers.FromData(new DecoderTokenizerData(
        "llama", "default", Vocabulary, Vocabulary.Select(_ => GgufTokenType.Control).ToArray(), Scores: new float[Vocabulary.Length],
        Bos: bos, Eos: eos, AddBos: addBos), "test vocabulary");

    const string PlainChatMl = """
        {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
        """;

    public static TheoryData<string, string, int, int, bool, string?> Templates => new()
    {
        { nameof(ChatTemplateFixtures.Qwen25), ChatTemplateFixtures.Qwen25, 1, 4, false, "chatml" },
        { nameof(ChatTemplateFixtures.SmolLM2), ChatTemplateFixtures.SmolLM2, 1, 4, false, "chatml" },
        { "ChatML", PlainChatMl, 1, 2, true, "chatml" },
        { nameof(ChatTemplateFixtures.Llama3), ChatTemplateFixtures.Llama3, 5, 6, true, "llama3-instruct" },
        { nameof(ChatTemplateFixtures.Zephyr), ChatTemplateFixtures.Zephyr, 1, 2, true, "zephyr" },
        { nameof(ChatTemplateFixtures.Llama32), ChatTemplateFixtures.Llama32, 5, 6, true, null }, // a dated system preamble in every prompt
        { nameof(ChatTemplateFixtures.Llama2), ChatTemplateFixtures.Llama2, 1, 2, true, null },
    };

    [Theory]
    [MemberData(nameof(Templates))]
    public void Real_chat_templates_map_to_the_ollama_format_that_renders_them(string name, string template, int bos, int eos, bool addBos, string? kind)
    {
        var format = OllamaChatFormats.Match(ChatTemplate.Parse(template, name), Tokenizer(bos, eos, addBos));
        Assert.Equal(kind, format?.Name);
    }

    [Fact]
    public void A_default_system_prompt_is_written_for_conversations_without_one()
    {
        var qwen = OllamaChatFormats.Match(ChatTemplate.Parse(ChatTemplateFixtures.Qwen25, "qwen"), Tokenizer(1, 4, false))!;
        Assert.Equal(
            "{{- if not .System }}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{{ end }}\n" +
            "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n", qwen.GoTemplate);
        Assert.Equal(["<|im_start|>", "<|im_end|>"], qwen.Stops);
        var plain = OllamaChatFormats.Match(ChatTemplate.Parse(PlainChatMl, "chatml"), Tokenizer(1, 2, true))!;
        Assert.Equal("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n", plain.GoTemplate);
        var llama = OllamaChatFormats.Match(ChatTemplate.Parse(ChatTemplateFixtures.Llama3, "llama3"), Tokenizer(5, 6, true))!;
        Assert.Equal("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n{{- end }}" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n", llama.GoTemplate);
        // Llama 3 writes BOS itself: without the tokenizer adding it (as llama.cpp does from add_bos_token), no Go template renders the same.
        Assert.Null(OllamaChatFormats.Match(ChatTemplate.Parse(ChatTemplateFixtures.Llama3, "llama3"), Tokenizer(5, 6, false)));
    }

    [Fact]
    public void The_merged_gguf_gets_a_modelfile_named_after_it_with_the_runs_template_and_stops()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2");
        using var model = Adapted(basePath, Lora("q_proj"));
        var source = DecoderSource.Gguf(basePath).WithChatTemplate(PlainChatMl);
        string merged = temp.File("out/merged.gguf");
        var result = DecoderExport.MergedGguf(model, source, merged, GgufTensorType.F32);
        Assert.Equal([Path.GetFullPath(merged), temp.File("out/merged.Modelfile")], result.Files);
        Assert.Equal(PlainChatMl, GgufFile.Open(merged).GetString("tokenizer.chat_template")); // the run's template, not the base's
        var text = File.ReadAllText(temp.File("out/merged.Modelfile"));
        var lines = text.Split('\n');
        Assert.Contains("FROM ./merged.gguf", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("ADAPTER", StringComparison.Ordinal));
        Assert.Contains("TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n\"\"\"", text);
        Assert.Equal(["PARAMETER stop \"</s>\"", "PARAMETER stop \"<|im_start|>\"", "PARAMETER stop \"<|im_end|>\""],
            lines.Where(l => l.StartsWith("PARAMETER stop", StringComparison.Ordinal)));
        Assert.Contains("ollama create NAME -f merged.Modelfile", text);
    }

    [Fact]
    public void A_template_of_no_known_kind_gets_no_template_and_a_note_and_no_template_says_so()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama"); // its template prints the contents only
        using var model = Adapted(basePath, Lora("v_proj"));
        var result = DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), temp.File("a.gguf"));
        Assert.Equal([temp.File("a.gguf"), temp.File("a.Modelfile")], result.Files);
        var text = File.ReadAllText(temp.File("a.Modelfile"));
        Assert.Contains("ADAPTER ./a.gguf", text);
        Assert.DoesNotContain("TEMPLATE \"\"\"", text);
        Assert.Contains("# No TEMPLATE: the chat template", text);
        Assert.Contains(result.Notes, n => n.StartsWith("no TEMPLATE in the Modelfile", StringComparison.Ordinal));

        DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath).WithChatTemplate(null), temp.File("b.gguf"));
        Assert.Contains("# No TEMPLATE: the model has no chat template", File.ReadAllText(temp.File("b.Modelfile")));
    }

    [Theory]
    [InlineData("out/mine.gguf", "out/mine.gguf")]
    [InlineData("out/MINE.GGUF", "out/MINE.GGUF")]
    [InlineData("out", "out/adapter.gguf")]
    [InlineData("out.d/", "out.d/adapter.gguf")]
    public void An_output_ending_in_gguf_is_the_file_and_any_other_a_folder(string output, string expected)
    {
        using var temp = new TestModels.TempFolder();
        Assert.Equal(Path.GetFullPath(temp.File(expected)), Path.GetFullPath(DecoderExport.GgufPath(temp.File(output), "adapter.gguf")));
        Assert.Equal(temp.File(Path.ChangeExtension(expected, ".Modelfile")), DecoderExport.ModelfilePath(temp.File(expected)));
        File.WriteAllText(temp.File("plain-file"), "");
        Assert.Contains("is a file", Assert.Throws<ArgumentException>(() => DecoderExport.GgufPath(temp.File("plain-file"), "adapter.gguf")).Message);
    }
}
