using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>Writes small Hugging Face tokenizer folders (tokenizer.json + tokenizer_config.json) for tests.</summary>
static class HfJson
{
    public const string ByteLevelPreTokenizerJson =
        """{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}""";

    /// <summary>Llama 2's legacy layout: Prepend("▁") + Replace(" ", "▁") normalizer, no pre-tokenizer, byte fallback.</summary>
    public const string LegacyLlamaNormalizer =
        """{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}""";

    public static void WriteByteLevel(string folder, string[] vocab, IEnumerable<string> merges,
        (string Content, int Id, bool Special)[] added, string preTokenizer, string? config = null) =>
        Write(folder, vocab, merges, added, config, new JsonObject
        {
            ["normalizer"] = null,
            ["pre_tokenizer"] = JsonNode.Parse(preTokenizer),
            ["decoder"] = JsonNode.Parse("""{"type": "ByteLevel"}"""),
        }, new JsonObject { ["type"] = "BPE" });

    public static void WriteSentencePiece(string folder, string[] vocab, IEnumerable<string> merges,
        (string Content, int Id, bool Special)[] added, string? config = null) =>
        Write(folder, vocab, merges, added, config, new JsonObject
        {
            ["normalizer"] = JsonNode.Parse(LegacyLlamaNormalizer),
            ["pre_tokenizer"] = null,
        }, new JsonObject { ["type"] = "BPE", ["byte_fallback"] = true, ["unk_token"] = "<unk>" });

    static void Write(string folder, string[] vocab, IEnumerable<string> merges, (string Content, int Id, bool Special)[] added,
        string? config, JsonObject parts, JsonObject model)
    {
        var vocabJson = new JsonObject();
        for (int i = 0; i < vocab.Length; i++) vocabJson[vocab[i]] = i;
        model["vocab"] = vocabJson;
        model["merges"] = new JsonArray(merges.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(added.Select(a => (JsonNode?)new JsonObject
            {
                ["id"] = a.Id, ["content"] = a.Content, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = a.Special,
            }).ToArray()),
        };
        foreach (var (key, value) in parts.ToList()) { parts.Remove(key); root[key] = value; }
        root["model"] = model;
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        if (config is not null) File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), config);
    }
}
