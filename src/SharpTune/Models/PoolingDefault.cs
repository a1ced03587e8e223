using System.Text.Json;
using SharpTune.Models.Bert;

namespace SharpTune.Models;

/// <summary>How a sequence task turns the encoder's token states into one vector.</summary>
public enum Pooling
{
    /// <summary>The [CLS] state as it is.</summary>
    Cls,
    /// <summary>The mean of the real tokens' states (sentence-transformers' default).</summary>
    Mean,
    /// <summary>[CLS] through the pretrained pooler (dense + tanh), as transformers' BertForSequenceClassification reads it.</summary>
    Pooler,
}

/// <summary>The pooling a model was trained with, and why SharpTune thinks so.</summary>
public sealed record PoolingDefault(Pooling Pooling, string Reason)
{
    public static Pooling Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "cls" => Pooling.Cls,
        "mean" => Pooling.Mean,
        "pooler" => Pooling.Pooler,
        _ => throw new ArgumentException($"--pooling '{text}' is not known: use cls, mean or pooler"),
    };

    public static string Name(Pooling pooling) => pooling.ToString().ToLowerInvariant();

    /// <summary>
    /// A sentence-transformers folder says how it pools in <c>modules.json</c> (a <c>Pooling</c> module) and that
    /// module's <c>config.json</c> (<c>pooling_mode_mean_tokens</c>, <c>pooling_mode_cls_token</c>). A plain BERT
    /// folder is read through its pooler when it has one, as transformers does; [CLS] otherwise.
    /// </summary>
    public static PoolingDefault ForFolder(string folder, BertModel model)
    {
        string modules = Path.Combine(folder, "modules.json");
        if (File.Exists(modules))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(modules));
                foreach (var module in doc.RootElement.EnumerateArray())
                {
                    if (!module.TryGetProperty("type", out var type) || type.GetString()?.EndsWith(".Pooling", StringComparison.Ordinal) != true) continue;
                    string path = module.TryGetProperty("path", out var p) ? p.GetString() ?? "" : "";
                    string config = Path.Combine(folder, path, "config.json");
                    if (!File.Exists(config)) break;
                    using var pooling = JsonDocument.Parse(File.ReadAllText(config));
                    bool Mode(string key) => pooling.RootElement.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.True;
                    if (Mode("pooling_mode_mean_tokens")) return new(Pooling.Mean, $"{Path.Combine(path, "config.json")} sets pooling_mode_mean_tokens");
                    if (Mode("pooling_mode_cls_token")) return new(Pooling.Cls, $"{Path.Combine(path, "config.json")} sets pooling_mode_cls_token");
                    break;
                }
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{modules}: not valid sentence-transformers module JSON ({e.Message})", e);
            }
        }
        return ForPlainEncoder(model);
    }

    /// <summary>A model that says nothing about pooling: its pooler when it has one, [CLS] otherwise.</summary>
    public static PoolingDefault ForPlainEncoder(BertModel model) => model.HasPooler
        ? new(Pooling.Pooler, "a BERT encoder with a pretrained pooler: [CLS] through it, as transformers' BertForSequenceClassification")
        : new(Pooling.Cls, "the model has no pooler and names no pooling: [CLS]");
}
