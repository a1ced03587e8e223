using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Tokenization.Decoders;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The decoding loop and the samplers, on a model whose next token is known: (last token + 1) mod V.</summary>
public class TextGeneratorTests
{
    /// <summary>Logits 10 on (last + 1) mod V and 0 elsewhere; keeps a real cache so lengths and batch selection are exercised.</summary>
    sealed class CountingModel(int vocab = 11, int context = 64) : nn.Module("counting"), ICausalLanguageModel
    {
        public DecoderInfo Info => new("counting", 1, 1, 1, 1, 1, 1, vocab, context, false);
        public nn.Module Module => this;
        public int Calls { get; private set; }

        public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
        {
            Calls++;
            long b = inputIds.shape[0], t = inputIds.shape[1];
            if (attentionMask is not null) Assert.Equal((cache?.Length ?? 0) + t, attentionMask.shape[1]);
            using var marker = zeros(b, 1, t, 1);
            cache?.Append(0, marker, marker);
            var next = (inputIds + 1).remainder(vocab);
            return nn.functional.one_hot(next, vocab).to_type(ScalarType.Float32) * 10;
        }

        public KeyValueCache NewCache() => new(1);
    }

    static List<int> Ids(params int[] ids) => [.. ids];

    [Fact]
    public void Greedy_decoding_follows_the_model_and_stops_at_a_stop_token_or_the_length()
    {
        using var model = new CountingModel();
        var stop = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 10, StopTokens = new HashSet<int> { 7 } });
        var result = stop.Generate([Ids(2, 3)]).Single();
        Assert.Equal([4, 5, 6], result.TokenIds);
        Assert.Equal(FinishReason.StopToken, result.Finish);

        var length = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 4 }).Generate([Ids(9)]).Single();
        Assert.Equal([10, 0, 1, 2], length.TokenIds);
        Assert.Equal(FinishReason.Length, length.Finish);
    }

    [Fact]
    public void A_batch_gives_each_prompt_what_it_gives_alone_and_finished_rows_leave_it()
    {
        using var model = new CountingModel();
        var options = new GenerationOptions { Greedy = true, MaxNewTokens = 6, StopTokens = new HashSet<int> { 5 } };
        var prompts = new[] { Ids(1, 2, 3), Ids(8), Ids(0, 1, 2, 3, 4, 5, 6) };
        var together = new TextGenerator(model, options) { PadId = 0 }.Generate(prompts);
        for (int i = 0; i < prompts.Length; i++)
        {
            var alone = new TextGenerator(model, options).Generate([prompts[i]]).Single();
            Assert.Equal(alone.TokenIds, together[i].TokenIds);
            Assert.Equal(alone.Finish, together[i].Finish);
        }
        Assert.Equal([4], together[0].TokenIds);
    }

    [Fact]
    public void Stop_strings_end_the_text_before_them_and_tokens_stream_as_they_come()
    {
        using var model = new CountingModel();
        string Decode(IReadOnlyList<int> ids) => string.Concat(ids.Select(i => (char)('a' + i)));
        var streamed = new List<int>();
        var generator = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 8, StopStrings = ["fg"] }, Decode)
        {
            OnToken = (_, token) => streamed.Add(token),
        };
        var result = generator.Generate([Ids(2)]).Single();
        Assert.Equal("de", Decode(result.TokenIds));
        Assert.Equal(FinishReason.StopString, result.Finish);
        Assert.Equal([3, 4, 5, 6], streamed);
    }

    [Fact]
    public void A_sequence_stops_when_the_context_is_full_and_a_prompt_too_long_is_refused()
    {
        using var model = new CountingModel(context: 6);
        var result = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 50 }).Generate([Ids(1, 2, 3)]).Single();
        Assert.Equal(3, result.TokenIds.Count);
        Assert.Equal(FinishReason.ContextFull, result.Finish);
        var error = Assert.Throws<ArgumentException>(() => new TextGenerator(model, new GenerationOptions()).Generate([Ids(1, 2, 3, 4, 5, 6)]));
        Assert.Contains("context is 6", error.Message);
    }

    [Fact]
    public void Sampling_is_seeded_and_its_filters_keep_what_transformers_keeps()
    {
        using var logits = tensor(new float[] { 2f, 1f, 0.5f, -1f, 3f, 0f }).unsqueeze(0);     // (1, 6)
        var none = new[] { (IReadOnlyCollection<int>)Array.Empty<int>() };
        long Draw(GenerationOptions o) { using var s = new TokenSampler(o); using var t = s.Next(logits, none); return t.item<long>(); }

        Assert.Equal(4, Draw(new GenerationOptions { Greedy = true }));
        Assert.Equal(4, Draw(new GenerationOptions { TopK = 1, Seed = 3 }));
        Assert.Equal(4, Draw(new GenerationOptions { TopP = 0.01, Seed = 3 }));
        // Same seed, same draws; top-k 2 only ever gives the two largest (4 and 0).
        var draws = Enumerable.Range(0, 40).Select(seed => Draw(new GenerationOptions { TopK = 2, Temperature = 5, Seed = seed })).ToList();
        Assert.All(draws, d => Assert.Contains(d, new long[] { 0, 4 }));
        Assert.Contains(0L, draws);
        Assert.Equal(draws, Enumerable.Range(0, 40).Select(seed => Draw(new GenerationOptions { TopK = 2, Temperature = 5, Seed = seed })));
        // Probabilities: 0.605 (4), 0.222 (0), 0.082 (1), 0.050 (2), 0.030 (5), 0.011 (3). Top-p drops the low tail whose
        // mass is at most 1 - P: 0.173 for tokens 3, 5, 2, 1. With P 0.8 (tail 0.2) two tokens stay, with P 0.85 (tail 0.15) three.
        IEnumerable<long> Nucleus(double p) => Enumerable.Range(0, 200).Select(seed => Draw(new GenerationOptions { TopK = 0, TopP = p, Temperature = 1, Seed = seed })).Distinct().Order();
        Assert.Equal(new long[] { 0, 4 }, Nucleus(0.8));
        Assert.Equal(new long[] { 0, 1, 4 }, Nucleus(0.85));
    }

    [Fact]
    public void The_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens()
    {
        using var logits = tensor(new float[] { 3f, -1f, 2.9f, 0f }).unsqueeze(0);
        using var sampler = new TokenSampler(new GenerationOptions { Greedy = true, RepetitionPenalty = 2 });
        using var next = sampler.Next(logits, [new[] { 0, 1 }]);
        Assert.Equal(2, next.item<long>());                      // 3 / 2 = 1.5 < 2.9
        Assert.Throws<ArgumentException>(() => new GenerationOptions { RepetitionPenalty = 0 }.Validate());
        Assert.Throws<ArgumentException>(() => new GenerationOptions { TopP = 0 }.Validate());
    }

    [Fact]
    public void Stop_strings_found_incrementally_through_the_tokenizer_cut_where_whole_decoding_cuts()
    {
        // GPT-2's vocabulary: consecutive ids are unrelated pieces, so stop strings land inside tokens and across them.
        var tokenizer = DecoderTokenizers.FromData(Gpt2Reference.GgufData(), "gpt2-test");
        using var model = new CountingModel(vocab: tokenizer.VocabSize);
        var prompt = Ids(1000);
        var run = Enumerable.Range(1001, 12).ToList();
        string text = tokenizer.Decode(run);
        int inside = tokenizer.Decode(run.Take(5)).Length;
        string[] stops = [text.Substring(inside - 2, 4), text.Substring(inside + 1, 1), text[^3..], "never generated"];
        foreach (string stop in stops)
        {
            var options = new GenerationOptions { Greedy = true, MaxNewTokens = 12, StopStrings = [stop] };
            var whole = new TextGenerator(model, options, ids => tokenizer.Decode(ids)).Generate([prompt]).Single();
            var incremental = new TextGenerator(model, options, tokenizer).Generate([prompt]).Single();
            Assert.Equal(whole.Finish, incremental.Finish);
            Assert.Equal(whole.TokenIds, incremental.TokenIds);
            Assert.DoesNotContain(stop, tokenizer.Decode(incremental.TokenIds));
            Assert.Equal(stop == "never generated" ? FinishReason.Length : FinishReason.StopString, incremental.Finish);
        }
    }
}
