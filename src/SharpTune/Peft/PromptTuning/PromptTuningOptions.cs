using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Peft.PromptTuning;

/// <summary>How prompt tuning starts its prompts (PEFT's <c>PromptTuningInit</c>).</summary>
public enum PromptInit
{
    /// <summary>torch's <c>nn.Embedding</c> default, N(0, 1), as PEFT leaves it.</summary>
    Random,
    /// <summary>Rows of the word embedding table, drawn uniformly with replacement.</summary>
    SampleVocab,
    /// <summary>The embeddings of the tokenised init text, repeated or cut to P.</summary>
    Text,
}

/// <summary>Prompt tuning's options, read and validated from <see cref="PeftSettings"/>.</summary>
/// <param name="VirtualTokens">P.</param>
/// <param name="Init">The initialisation.</param>
/// <param name="InitText">The init text (for <see cref="PromptInit.Text"/>).</param>
/// <param name="InitTokenIds">Its token ids, given by the caller who holds the tokenizer.</param>
public sealed record PromptTuningOptions(int VirtualTokens, PromptInit Init, string? InitText, IReadOnlyList<int>? InitTokenIds)
{
    public static PromptTuningOptions From(PeftSettings settings, IBackboneShape config)
    {
        PromptLearningMethod.CheckVirtualTokens(settings, config, inputSide: true);
        var init = ParseInit(settings.PromptInit);
        if (init == PromptInit.Text && string.IsNullOrWhiteSpace(settings.PromptInitText))
            throw new ArgumentException("--prompt-init text needs --prompt-init-text (PromptInitText): the text whose embeddings start the prompts.");
        if (settings.PromptInitTokenIds is { } ids)
        {
            if (init == PromptInit.Text && ids.Count == 0)
                throw new ArgumentException("PromptInitTokenIds is empty: the init text gave no tokens.");
            foreach (int id in ids)
                if (id < 0 || id >= config.Vocabulary)
                    throw new ArgumentException($"PromptInitTokenIds holds {id}, outside the vocabulary [0, {config.Vocabulary}).");
        }
        return new PromptTuningOptions(settings.VirtualTokens, init, settings.PromptInitText, settings.PromptInitTokenIds);
    }

    /// <summary>random, sample_vocab or text (PEFT's upper-case names are accepted too).</summary>
    public static PromptInit ParseInit(string text) => text.Trim().ToLowerInvariant().Replace('-', '_') switch
    {
        "random" => PromptInit.Random,
        "sample_vocab" => PromptInit.SampleVocab,
        "text" => PromptInit.Text,
        _ => throw new ArgumentException($"--prompt-init (PromptInit) '{text}' is not known: use random, sample_vocab or text."),
    };

    /// <summary>PEFT's name: RANDOM, SAMPLE_VOCAB, TEXT.</summary>
    public static string PeftName(PromptInit init) => init switch
    {
        PromptInit.SampleVocab => "SAMPLE_VOCAB",
        PromptInit.Text => "TEXT",
        _ => "RANDOM",
    };

    /// <summary>The name <see cref="PeftSettings.PromptInit"/> takes: random, sample_vocab, text.</summary>
    public static string SettingName(PromptInit init) => PeftName(init).ToLowerInvariant();

    /// <summary>P token ids from the init text: cut, or repeated until P are there (as PEFT does).</summary>
    public IReadOnlyList<int> TextTokenIds()
    {
        if (InitTokenIds is not { Count: > 0 } ids)
            throw new ArgumentException(
                "--prompt-init text needs PromptInitTokenIds, the token ids of the init text: call settings.WithPromptInitTokens(tokenizer) first.");
        return Enumerable.Range(0, VirtualTokens).Select(i => ids[i % ids.Count]).ToArray();
    }
}

public static class PromptInitTokens
{
    /// <summary>
    /// Fills <see cref="PeftSettings.PromptInitTokenIds"/> from <see cref="PeftSettings.PromptInitText"/> with the
    /// model's tokenizer, as PEFT does (<c>tokenizer(text)["input_ids"]</c>: [CLS] text [SEP]). Does nothing unless
    /// the init is text; call it whenever settings are built, for training or for loading an adapter.
    /// </summary>
    public static PeftSettings WithPromptInitTokens(this PeftSettings settings, BertTextTokenizer tokenizer)
    {
        if (settings.PromptInitTokenIds is not null || string.IsNullOrWhiteSpace(settings.PromptInitText)) return settings;
        if (!string.Equals(settings.PromptInit.Trim(), "text", StringComparison.OrdinalIgnoreCase)) return settings;
        return settings with { PromptInitTokenIds = tokenizer.Encode(settings.PromptInitText).InputIds };
    }
}
