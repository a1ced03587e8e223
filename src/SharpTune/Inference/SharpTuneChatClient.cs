using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.ModelFolders;
using SharpTune.Models.Decoders;
using TemplateMessage = SharpTune.Tokenization.ChatTemplates.ChatMessage;

namespace SharpTune.Inference;

/// <summary>
/// A loaded language model (a base, or a fine-tuned run: base + adapter) as Microsoft.Extensions.AI's <see cref="IChatClient"/>,
/// in process, with no server: messages go through the model's chat template, options map as OpenAI's do (temperature 0
/// is greedy), and concurrent calls are batched at the decode step by a <see cref="ContinuousBatcher"/>.
/// </summary>
public sealed class SharpTuneChatClient : IChatClient
{
    readonly LanguageModel model;
    readonly ContinuousBatcher batcher;
    readonly bool ownsModel, ownsBatcher;
    readonly bool runsAlone;

    /// <param name="batcher">Shared with other clients (several adapters over one base); null: one of its own.</param>
    public SharpTuneChatClient(LanguageModel model, string? modelId = null, ContinuousBatcher? batcher = null, bool ownsModel = false)
    {
        this.model = model;
        this.ownsModel = ownsModel;
        ownsBatcher = batcher is null;
        this.batcher = batcher ?? new ContinuousBatcher();
        runsAlone = model.Model is Heads.CausalLmModel { VirtualTokens: > 0 };
        model.Model.Module.eval();
        Metadata = new ChatClientMetadata("sharptune", null, modelId ?? model.Source);
    }

    /// <summary>Loads a GGUF file, a Hugging Face folder or a fine-tuned run (as <c>sharptune generate --model</c> does).</summary>
    public static SharpTuneChatClient Load(string modelOrRun, WeightStorage dtype = default) =>
        new(LanguageModelFolder.Load(modelOrRun, dtype), LanguageModelHost.DefaultName(modelOrRun), ownsModel: true);

    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, options);
        var result = await GenerationStream.Complete(batcher, model.Model, model.Tokenizer, prompt, generation, runsAlone, cancellationToken);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            FinishReason = Finish(result.Finish!.Value), ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow,
            Usage = new UsageDetails { InputTokenCount = result.PromptTokens, OutputTokenCount = result.CompletionTokens, TotalTokenCount = result.PromptTokens + result.CompletionTokens },
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, options);
        string id = Guid.NewGuid().ToString("N");
        await foreach (var update in GenerationStream.Run(batcher, model.Model, model.Tokenizer, prompt, generation, runsAlone, cancellationToken))
        {
            var piece = new ChatResponseUpdate(ChatRole.Assistant, update.Text) { ResponseId = id, ModelId = Metadata.DefaultModelId };
            if (update.Finish is { } finish)
            {
                piece.FinishReason = Finish(finish);
                piece.Contents.Add(new UsageContent(new UsageDetails
                    { InputTokenCount = update.PromptTokens, OutputTokenCount = update.CompletionTokens, TotalTokenCount = update.PromptTokens + update.CompletionTokens }));
            }
            yield return piece;
        }
    }

    (IReadOnlyList<int> Prompt, GenerationOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var turns = messages.Select(m => new TemplateMessage(m.Role.Value, m.Text)).ToList();
        var prompt = model.Tokenizer.Encode(model.RenderChat(turns), addSpecialTokens: false, parseSpecial: true);
        int room = model.Model.Info.ContextLength - prompt.Count;
        if (room < 1) throw new ArgumentException($"the conversation has {prompt.Count} tokens; the model's context is {model.Model.Info.ContextLength}");
        float temperature = options?.Temperature ?? 1f;
        var generation = new GenerationOptions
        {
            MaxNewTokens = Math.Min(options?.MaxOutputTokens ?? room, room), Greedy = temperature == 0,
            Temperature = temperature == 0 ? 1 : temperature, TopK = options?.TopK ?? 0, TopP = options?.TopP ?? 1,
            Seed = options?.Seed ?? Random.Shared.NextInt64(), StopStrings = options?.StopSequences?.ToList() ?? [],
            StopTokens = model.Tokenizer.StopIds,
        };
        return (prompt, generation.Validate());
    }

    static ChatFinishReason Finish(FinishReason reason) =>
        reason is FinishReason.StopToken or FinishReason.StopString ? ChatFinishReason.Stop : ChatFinishReason.Length;

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(model) ? model
        : null;

    public void Dispose()
    {
        if (ownsBatcher) batcher.Dispose();
        if (ownsModel) model.Dispose();
    }
}
