using System.ClientModel;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Serving;

/// <summary>The official OpenAI .NET SDK and Microsoft.Extensions.AI.OpenAI against the running server, unchanged but for the endpoint.</summary>
public class RealClientTests
{
    static OpenAIClientOptions Endpoint(Uri server) => new() { Endpoint = new Uri(server, "v1") };

    static readonly ApiKeyCredential Key = new("not-checked");

    [Collection(nameof(ServingCollection))]
    public class Decoder(ServingFixture serving)
    {
        async Task<string> Raw(string model, string user, int maxTokens)
        {
            var (status, body) = await Http.Post(serving.Client, "/v1/chat/completions", new JsonObject
            {
                ["model"] = model, ["temperature"] = 0, ["max_tokens"] = maxTokens,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = user }),
            });
            Assert.Equal(200, status);
            return body!["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        }

        [Fact]
        public async Task The_openai_sdk_chats_streams_and_picks_the_adapter_by_model_name()
        {
            foreach (string model in new[] { "a", "b" })
            {
                var client = new ChatClient(model, Key, Endpoint(serving.Server.Address));
                var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 };
                ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hi 4")], options);
                string expected = await Raw(model, "hi 4", 10);
                Assert.Equal(expected, completion.Content.Count == 0 ? "" : completion.Content[0].Text);
                Assert.Equal(model, completion.Model);
                Assert.True(completion.Usage.InputTokenCount > 0);
                Assert.Contains(completion.FinishReason, new[] { OpenAI.Chat.ChatFinishReason.Stop, OpenAI.Chat.ChatFinishReason.Length });

                string streamed = "";
                await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("hi 4")], options))
                    foreach (var part in update.ContentUpdate) streamed += part.Text;
                Assert.Equal(expected, streamed);
            }
        }

        [Fact]
        public async Task Microsoft_extensions_ai_over_the_openai_client_chats_and_streams()
        {
            IChatClient client = new ChatClient("b", Key, Endpoint(serving.Server.Address)).AsIChatClient();
            var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 8 };
            var response = await client.GetResponseAsync("count 3:", options);
            Assert.Equal(await Raw("b", "count 3:", 8), response.Text);
            Assert.True(response.Usage!.OutputTokenCount > 0);
            string streamed = string.Concat((await client.GetStreamingResponseAsync("count 3:", options).ToListAsync()).Select(u => u.Text));
            Assert.Equal(response.Text, streamed);
        }
    }

    [Collection(nameof(EncoderServingCollection))]
    public class Encoder(EncoderServingFixture serving)
    {
        [Fact]
        public async Task The_openai_sdk_and_microsoft_extensions_ai_get_the_servers_embeddings()
        {
            var client = new EmbeddingClient("tiny", Key, Endpoint(serving.Server.Address));
            OpenAIEmbedding embedding = await client.GenerateEmbeddingAsync("the movie was good");
            float[] fromSdk = embedding.ToFloats().ToArray();
            var direct = serving.Host.Embedder.Embed(["the movie was good"]).Vectors[0];
            Assert.Equal(direct, fromSdk);

            IEmbeddingGenerator<string, Embedding<float>> generator = client.AsIEmbeddingGenerator();
            var generated = await generator.GenerateAsync(["the movie was good", "food is poor"]);
            Assert.Equal(2, generated.Count);
            Assert.Equal(direct, generated[0].Vector.ToArray());
        }
    }
}
