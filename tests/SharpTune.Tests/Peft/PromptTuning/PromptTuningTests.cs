using System.Text.Json.Nodes;
using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.PromptTuning;

[Collection(PromptMethodsCollection.Name)]
public class PromptTuningTests
{
    static readonly IPeftMethod Method = PeftRegistry.Get("prompt");
    static readonly HeadOptions Head = new(TaskKind.SingleLabel, 2);

    static float[] Rows(Tensor table) => table.detach().contiguous().data<float>().ToArray();

    [Fact]
    public void Random_init_is_torchs_standard_normal_as_PEFT_leaves_it()
    {
        using var model = PromptTestModels.Build(Method, new PeftSettings { VirtualTokens = 40 }, Head);
        using var table = ((PromptModule)model.PromptEncoder!).Output().detach();
        Assert.Equal([40L, 32L], table.shape);
        Assert.InRange(table.std().item<float>(), 0.9, 1.1);
        Assert.InRange(table.mean().item<float>(), -0.1, 0.1);
    }

    [Fact]
    public void Sample_vocab_init_copies_rows_of_the_word_embeddings()
    {
        using var model = PromptTestModels.Build(Method, new PeftSettings { VirtualTokens = 6, PromptInit = "SAMPLE_VOCAB" }, Head);
        using var table = ((PromptModule)model.PromptEncoder!).Output().detach();
        var words = model.Encoder.Embeddings.WordEmbeddings.weight!;
        for (int p = 0; p < 6; p++)
            Assert.True(words.eq(table[p].unsqueeze(0)).all(1).any().item<bool>(), $"prompt {p} is not a vocabulary row");
    }

    [Theory]
    [InlineData(7, new long[] { 5, 6, 7, 5, 6, 7, 5 })] // repeated
    [InlineData(2, new long[] { 5, 6 })] // cut
    public void Text_init_repeats_or_cuts_the_text_embeddings_to_P(int virtualTokens, long[] expectedIds)
    {
        var settings = new PeftSettings { VirtualTokens = virtualTokens, PromptInit = "text", PromptInitText = "x", PromptInitTokenIds = [5, 6, 7] };
        using var model = PromptTestModels.Build(Method, settings, Head);
        using var table = ((PromptModule)model.PromptEncoder!).Output().detach();
        using var expected = model.Encoder.Embeddings.EmbedTokens(tensor(expectedIds));
        Assert.Equal(Rows(expected), Rows(table));
    }

    [Fact]
    public void Text_init_without_token_ids_says_how_to_get_them()
    {
        var settings = new PeftSettings { PromptInit = "text", PromptInitText = "classify the sentiment" };
        Method.Validate(settings, TestModels.TinyConfig); // the options are complete; only the tokens are missing
        var error = Assert.Throws<ArgumentException>(() => Method.CreatePromptEncoder(settings, TestModels.TinyModel()));
        Assert.Contains("PromptInitTokenIds", error.Message);
        Assert.Contains("WithPromptInitTokens", error.Message);
    }

    [Fact]
    public void WithPromptInitTokens_tokenises_like_PEFT_with_CLS_and_SEP_and_leaves_other_inits_alone()
    {
        var vocab = string.Join("\n", new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 94).Select(i => $"w{i}"))) + "\n";
        var tokenizer = BertTextTokenizer.FromVocabStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(vocab)), lowerCase: true);
        var text = new PeftSettings { PromptInit = "text", PromptInitText = "w3 w7" }.WithPromptInitTokens(tokenizer);
        Assert.Equal([2, 8, 12, 3], text.PromptInitTokenIds!);
        var random = new PeftSettings { PromptInitText = "w3" };
        Assert.Same(random, random.WithPromptInitTokens(tokenizer));
    }

    [Fact]
    public void The_config_has_PEFTs_PROMPT_TUNING_fields_and_reads_back()
    {
        var settings = new PeftSettings { VirtualTokens = 5, PromptInit = "text", PromptInitText = "w3 w7", PromptInitTokenIds = [2, 8, 12, 3] };
        using var model = PromptTestModels.Build(Method, settings, Head);
        using var temp = new TestModels.TempFolder();
        Method.SaveAdapter(temp.Path, model, settings, "tiny-bert");
        var config = AdapterFiles.ReadConfig(temp.Path);
        var expected = JsonNode.Parse("""
            {
              "base_model_name_or_path": "tiny-bert",
              "inference_mode": true,
              "modules_to_save": ["classifier", "score"],
              "num_attention_heads": 4,
              "num_layers": 2,
              "num_transformer_submodules": 1,
              "num_virtual_tokens": 5,
              "peft_type": "PROMPT_TUNING",
              "prompt_tuning_init": "TEXT",
              "prompt_tuning_init_text": "w3 w7",
              "revision": null,
              "task_type": "SEQ_CLS",
              "token_dim": 32,
              "tokenizer_kwargs": null,
              "tokenizer_name_or_path": "tiny-bert"
            }
            """);
        Assert.True(JsonNode.DeepEquals(expected, config), config.ToJsonString());
        Assert.Equal(config.Select(kv => kv.Key).Order(StringComparer.Ordinal), config.Select(kv => kv.Key));

        var read = Method.ReadSettings(config, temp.Path);
        Assert.Equal((5, "text", "w3 w7"), (read.VirtualTokens, read.PromptInit, read.PromptInitText));
    }
}
