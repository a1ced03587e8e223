using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using SharpTune.Models.Decoders;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Generation;

/// <summary>A piece of generated text; the last one carries why the sequence ended and the token counts.</summary>
public sealed record TextUpdate(string Text, FinishReason? Finish = null, int PromptTokens = 0, int CompletionTokens = 0);

/// <summary>
/// One prompt through a <see cref="ContinuousBatcher"/> as text: pieces as tokens come (whole characters only), cut where
/// the first stop string begins, as OpenAI's API cuts it; the few characters that could start a stop string are held
/// back until they cannot. What the server and the in-process chat client stream.
/// </summary>
public static class GenerationStream
{
    /// <remarks>
    /// The request is queued on the first <c>MoveNextAsync</c>, which throws <see cref="QueueFullException"/> at once when
    /// the queue is full. Cancelling <paramref name="cancel"/> takes the request out of the batch.
    /// </remarks>
    public static async IAsyncEnumerable<TextUpdate> Run(ContinuousBatcher batcher, ICausalLanguageModel model, IDecoderTokenizer tokenizer,
        IReadOnlyList<int> prompt, GenerationOptions options, bool runsAlone = false, [EnumeratorCancellation] CancellationToken cancel = default)
    {
        var tokens = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var running = batcher.Submit(new DecodeRequest
        {
            Model = model, Prompt = prompt, Options = options, Tokenizer = tokenizer, RunsAlone = runsAlone,
            OnToken = t => tokens.Writer.TryWrite(t), Cancellation = cancel,
        });
        _ = running.ContinueWith(_ => tokens.Writer.TryComplete(), TaskScheduler.Default);
        var text = new StopText(options.StopStrings);
        var decoder = tokenizer.CreateDecodeStream(skipSpecialTokens: true);
        int generated = 0;
        await foreach (int token in tokens.Reader.ReadAllAsync(cancel))
        {
            text.Add(decoder.Next(token));
            generated++;
            if (text.Ready() is { Length: > 0 } piece) yield return new TextUpdate(piece);
        }
        var result = await running;
        text.Add(decoder.Flush());
        yield return new TextUpdate(text.Rest(), result.Sequence.Finish, prompt.Count, generated);
    }

    /// <summary>The whole answer: its text, why it ended and the token counts.</summary>
    public static async Task<TextUpdate> Complete(ContinuousBatcher batcher, ICausalLanguageModel model, IDecoderTokenizer tokenizer,
        IReadOnlyList<int> prompt, GenerationOptions options, bool runsAlone = false, CancellationToken cancel = default)
    {
        var text = new StringBuilder();
        await foreach (var update in Run(batcher, model, tokenizer, prompt, options, runsAlone, cancel))
        {
            text.Append(update.Text);
            if (update.Finish is not null) return update with { Text = text.ToString() };
        }
        throw new InvalidOperationException("the generation ended without a result");
    }

    /// <summary>The answer's text as it grows, cut where the first stop string begins.</summary>
    sealed class StopText(IReadOnlyList<string> stops)
    {
        readonly StringBuilder all = new();
        readonly int holdBack = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
        int sent;
        int? end;

        public void Add(string piece)
        {
            if (end is not null || piece.Length == 0) return;
            int from = Math.Max(0, all.Length - holdBack);
            all.Append(piece);
            if (stops.Count == 0) return;
            string tail = all.ToString(from, all.Length - from);
            int found = stops.Select(s => tail.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (found >= 0) end = from + found;
        }

        /// <summary>Text not given out yet that no stop string can still claim.</summary>
        public string Ready() => Take(end ?? Math.Max(0, all.Length - holdBack));

        /// <summary>What is left once the answer has ended.</summary>
        public string Rest() => Take(end ?? all.Length);

        string Take(int upTo)
        {
            if (upTo <= sent) return "";
            string piece = all.ToString(sent, upTo - sent);
            sent = upTo;
            return piece;
        }
    }
}
