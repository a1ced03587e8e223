using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Inference;
using SharpTune.Serving;
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.Serving;

/// <summary>
/// A tiny sentence-transformers folder (mean pooling, then Normalize, as modules.json says) with a fully fine-tuned
/// classifier, a LoRA classifier over the same base and a token tagger, served on a free loopback port.
/// </summary>
public sealed class EncoderServingFixture : IDisposable
{
    public EncoderServingFixture()
    {
        Model = CliHarness.TinyModelFolder(Temp);
        File.WriteAllText(Path.Combine(Model, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
            """);
        Directory.CreateDirectory(Path.Combine(Model, "1_Pooling"));
        File.WriteAllText(Path.Combine(Model, "1_Pooling", "config.json"), """{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}""");
        string train = CliHarness.ToyCsv(Temp, "train.csv", 24, seed: 3);
        var conll = new StringBuilder();
        for (int i = 0; i < 12; i++) conll.Append("the\tdet\nmovie\tnoun\nwas\tverb\ngood\tadj\n\n");
        File.WriteAllText(Temp.File("train.conll"), conll.ToString());
        Train("full", "--task", "classify", "--train", train);
        Train("lora", "--task", "classify", "--train", train, "--method", "lora", "--lr", "1e-2");
        Train("tags", "--task", "tokens", "--train", Temp.File("train.conll"));
        Host = new EncoderHost(Model, "tiny");
        foreach (string name in new[] { "full", "lora", "tags" }) Host.Add(name, Temp.File(name));
        Server = OpenAiServer.StartAsync(Host, new ServeOptions { Port = 0 }).GetAwaiter().GetResult();
        Client = new HttpClient { BaseAddress = Server.Address };
    }

    void Train(string name, params string[] args)
    {
        var (code, output, error) = CliHarness.Run(["train", "--model", Model, .. args, "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--out", Temp.File(name)]);
        if (code != 0) throw new InvalidOperationException($"training {name} failed: {error}{output}");
    }

    public TestModels.TempFolder Temp { get; } = new();
    public string Model { get; }
    public EncoderHost Host { get; }
    public OpenAiServer Server { get; }
    public HttpClient Client { get; }

    public void Dispose()
    {
        Client.Dispose();
        Server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Host.Dispose();
        Temp.Dispose();
    }
}

[CollectionDefinition(nameof(EncoderServingCollection))]
public sealed class EncoderServingCollection : ICollectionFixture<EncoderServingFixture>;

[Collection(nameof(EncoderServingCollection))]
public class EncoderServingTests(EncoderServingFixture serving)
{
    [Fact]
    public async Task Embeddings_are_the_mean_of_the_real_tokens_normalised_as_modules_json_says()
    {
        string[] texts = ["the movie was good", "food is awful, poor"];
        var (status, body) = await Http.Post(serving.Client, "/v1/embeddings", new JsonObject { ["model"] = "tiny", ["input"] = new JsonArray(texts[0], texts[1]) });
        Assert.True(status == 200, body?.ToJsonString());
        var vectors = body!["data"]!.AsArray().Select(d => d!["embedding"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray()).ToList();
        Assert.Equal(2, vectors.Count);

        // The reference: the encoder's last hidden states averaged over each text alone (no padding), then scaled to length 1.
        using var encoder = SharpTune.Models.PretrainedEncoder.Load(serving.Model);
        var tokenizer = encoder.CreateTokenizer();
        for (int i = 0; i < texts.Length; i++)
        {
            var encoded = tokenizer.Encode(texts[i]);
            using var noGrad = no_grad();
            using var ids = tensor(encoded.InputIds.Select(x => (long)x).ToArray()).unsqueeze(0);
            using var output = encoder.Model.forward(ids);
            using var mean = output.LastHiddenState[0].mean([0]);
            using var unit = mean / mean.norm();
            Tolerances.AssertClose(unit.data<float>().ToArray(), vectors[i], 1e-5, $"embedding {i}");
        }
        Assert.True(body["usage"]!["prompt_tokens"]!.GetValue<int>() > 4);

        // base64, as the OpenAI SDK asks for it: the same floats, little-endian.
        var (_, packed) = await Http.Post(serving.Client, "/v1/embeddings", new JsonObject { ["model"] = "tiny", ["input"] = texts[0], ["encoding_format"] = "base64" });
        var bytes = Convert.FromBase64String(packed!["data"]![0]!["embedding"]!.GetValue<string>());
        Assert.Equal(vectors[0], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray());
    }

    [Fact]
    public async Task Concurrent_requests_answer_as_each_alone_with_their_own_token_counts()
    {
        string[] texts = ["the movie was good", "food is awful, poor and cold", "fine", "the movie was great, the food poor"];
        var alone = new List<JsonNode>();
        foreach (string text in texts) alone.Add((await Http.Post(serving.Client, "/v1/embeddings", new JsonObject { ["model"] = "tiny", ["input"] = text })).Body!);
        for (int round = 0; round < 3; round++)
        {
            var together = await Task.WhenAll(texts.Select(t => Http.Post(serving.Client, "/v1/embeddings", new JsonObject { ["model"] = "tiny", ["input"] = t })));
            for (int i = 0; i < texts.Length; i++)
            {
                Assert.Equal(200, together[i].Status);
                Assert.Equal(alone[i]["usage"]!["prompt_tokens"]!.GetValue<int>(), together[i].Body!["usage"]!["prompt_tokens"]!.GetValue<int>());
                // Joined with longer texts a text is padded, which may move the last bits of the sums.
                Tolerances.AssertClose(Vector(alone[i]), Vector(together[i].Body!), Tolerances.Rounding, $"text {i}, round {round}");
            }
        }
        var labels = await Task.WhenAll(texts.Select(t => Http.Post(serving.Client, "/v1/classify", new JsonObject { ["model"] = "full", ["input"] = t })));
        using var predictor = new Predictor(serving.Temp.File("full"));
        var expected = predictor.PredictTexts(texts.Select((t, i) => new SharpTune.Data.TextExample(t, null, null, $"{i}")).ToList());
        for (int i = 0; i < texts.Length; i++) Assert.Equal(expected[i].Labels[0], labels[i].Body!["data"]![0]!["label"]!.GetValue<string>());
    }

    static float[] Vector(JsonNode body) => body["data"]![0]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();

    [Fact]
    public async Task Classify_gives_what_predict_gives_for_a_full_run_and_an_adapter()
    {
        string[] texts = ["the movie was great, fine", "the food is bad, awful"];
        foreach (string name in new[] { "full", "lora" })
        {
            var (status, body) = await Http.Post(serving.Client, "/v1/classify", new JsonObject { ["model"] = name, ["input"] = new JsonArray(texts[0], texts[1]) });
            Assert.True(status == 200, body?.ToJsonString());
            using var predictor = new Predictor(serving.Temp.File(name));
            var expected = predictor.PredictTexts(texts.Select((t, i) => new SharpTune.Data.TextExample(t, null, null, $"{i}")).ToList());
            for (int i = 0; i < texts.Length; i++)
            {
                var item = body!["data"]![i]!;
                Assert.Equal(expected[i].Labels[0], item["label"]!.GetValue<string>());
                var probabilities = item["probabilities"]!.AsObject();
                Assert.Equal(["neg", "pos"], probabilities.Select(p => p.Key).Order());
                foreach (var (label, p) in expected[i].Probabilities!) Assert.Equal(p, probabilities[label]!.GetValue<float>(), 1e-5f);
            }
        }
    }

    [Fact]
    public async Task Classify_tags_each_word_for_a_token_model()
    {
        var (status, body) = await Http.Post(serving.Client, "/v1/classify", new JsonObject { ["model"] = "tags", ["input"] = "the movie was good" });
        Assert.True(status == 200, body?.ToJsonString());
        var item = body!["data"]![0]!;
        Assert.Equal(["the", "movie", "was", "good"], item["words"]!.AsArray().Select(w => w!.GetValue<string>()));
        Assert.Equal(4, item["labels"]!.AsArray().Count);
    }

    [Theory]
    [InlineData("/v1/embeddings", """{"model": "full", "input": "x"}""", 404)]
    [InlineData("/v1/embeddings", """{"model": "tiny"}""", 400)]
    [InlineData("/v1/embeddings", """{"model": "tiny", "input": []}""", 400)]
    [InlineData("/v1/embeddings", """{"model": "tiny", "input": [1, 2]}""", 400)]
    [InlineData("/v1/embeddings", """{"model": "tiny", "input": "x", "encoding_format": "int8"}""", 400)]
    [InlineData("/v1/embeddings", """{"model": "tiny", "input": "x", "dimensions": 7}""", 400)]
    [InlineData("/v1/classify", """{"model": "tiny", "input": "x"}""", 404)]
    [InlineData("/v1/classify", """{"model": "full", "input": {"a": 1}}""", 400)]
    [InlineData("/v1/chat/completions", """{"model": "full", "messages": []}""", 404)]
    public async Task Bad_encoder_requests_get_4xx(string path, string body, int status)
    {
        var (got, error) = await Http.Post(serving.Client, path, body);
        Assert.Equal(status, got);
        Assert.NotNull(error!["error"]!["message"]);
    }
}
