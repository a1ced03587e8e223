using System.Text.Json.Nodes;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What the Linear-wrapping methods (LoRA, IA3, BitFit) share when they freeze, save and load: the head
/// test, PEFT's key prefix, checked tensor copies and typed reads of <c>adapter_config.json</c>.
/// </summary>
public static class AdapterTensors
{
    /// <summary>PEFT stores every tensor of the wrapped task model under this prefix.</summary>
    public const string PeftPrefix = "base_model.model.";

    /// <summary>
    /// The key PEFT writes for a parameter of the tuned model: <c>bert.encoder...</c> becomes <c>base_model.model.bert.encoder...</c>,
    /// a causal LM's <c>model.layers...</c> <c>base_model.model.model.layers...</c>.
    /// </summary>
    public static string PeftKey(string parameterName) => PeftPrefix + parameterName;

    /// <summary>
    /// Keys of adapter parameters that a plain pretrained checkpoint lacks; pass to
    /// <c>StateDictLoader.Load(..., optional: AdapterTensors.IsAdapterKey)</c> when loading base weights into a wrapped model.
    /// </summary>
    public static bool IsAdapterKey(string key) =>
        key.Contains(".lora_A.", StringComparison.Ordinal) || key.Contains(".lora_B.", StringComparison.Ordinal)
        || key.EndsWith(".lora_magnitude_vector", StringComparison.Ordinal) || key.EndsWith(".ia3_l", StringComparison.Ordinal);

    /// <summary>Sets requires_grad: the head and what <paramref name="trains"/> accepts train, everything else is frozen.</summary>
    public static void TrainOnly(ITunableModel model, Func<string, bool> trains)
    {
        foreach (var (name, parameter) in model.NamedParameters())
            parameter.requires_grad = model.IsHead(name) || trains(name);
    }

    /// <summary>The wrapped layers of one kind by their parameter-name prefix (<c>bert.encoder.layer.0.attention.self.query</c>).</summary>
    public static Dictionary<string, T> WrappedLayers<T>(ITunableModel model, string methodName) where T : nn.Module
    {
        var layers = model.NamedModules().Where(m => m.Module is T).ToDictionary(m => m.Name, m => (T)m.Module);
        if (layers.Count == 0)
            throw new ArgumentException($"The model has no {typeof(T).Name} layers: build its encoder with the factory from {methodName}.Linears.");
        return layers;
    }

    /// <summary>
    /// The tensors an adapter file holds: each parameter for which <paramref name="checkpointKey"/> gives a key
    /// (null: not part of the adapter), then the head under PEFT's modules_to_save keys.
    /// </summary>
    public static Dictionary<string, Tensor> Collect(ITunableModel model, Func<string, string?> checkpointKey)
    {
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, parameter) in model.NamedParameters())
            if (!model.IsHead(name) && checkpointKey(name) is { } key) tensors[key] = parameter;
        foreach (var (key, tensor) in AdapterFiles.HeadTensors(model)) tensors[key] = tensor;
        return tensors;
    }

    /// <summary>
    /// Loads an adapter folder's tensors into <paramref name="model"/>, the inverse of <see cref="Collect"/>. Each
    /// parameter for which <paramref name="checkpointKeys"/> names keys (the first one present wins; none: not part
    /// of the adapter) is copied with its shape checked; a LoRA or IA3 tensor the model has no layer for is an
    /// error (the adapter was trained on other target modules); then the head.
    /// </summary>
    public static void Load(string folder, ITunableModel model, Func<string, string[]> checkpointKeys)
    {
        string source = Path.Combine(folder, AdapterFiles.WeightsFile);
        var tensors = AdapterFiles.ReadWeights(folder);
        try
        {
            var used = new HashSet<string>();
            foreach (var (name, parameter) in model.NamedParameters())
            {
                var keys = model.IsHead(name) ? [] : checkpointKeys(name);
                if (keys.Length == 0) continue;
                string key = keys.FirstOrDefault(tensors.ContainsKey) ?? keys[0];
                CopyInto(parameter, tensors, key, source);
                used.Add(key);
            }
            var stray = tensors.Keys.Where(k => IsAdapterKey(k) && !used.Contains(k)).Order(StringComparer.Ordinal).ToList();
            if (stray.Count > 0)
                throw new InvalidDataException(
                    $"{source}: {stray[0]} has no adapter layer in this model ({stray.Count} such tensor(s); built with other target_modules?)");
            AdapterFiles.LoadHead(model, tensors, source);
        }
        finally
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
        }
    }

    /// <summary>Copies <c>tensors[key]</c> into <paramref name="destination"/>; a missing or misshapen tensor names the file and key.</summary>
    static void CopyInto(Tensor destination, IReadOnlyDictionary<string, Tensor> tensors, string key, string source)
    {
        if (!tensors.TryGetValue(key, out var value))
            throw new InvalidDataException($"{source}: the adapter lacks {key}");
        if (!value.shape.SequenceEqual(destination.shape))
            throw new InvalidDataException(
                $"{source}: {key} has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", destination.shape)}] (built with other settings?)");
        using var noGrad = no_grad();
        destination.copy_(value);
    }

    /// <summary>Reads a folder's config and checks its <c>peft_type</c>; returns it with its path for messages.</summary>
    public static (JsonObject Config, string ConfigPath) ReadConfig(string folder, string peftType)
    {
        var config = AdapterFiles.ReadConfig(folder);
        string configPath = Path.Combine(folder, AdapterFiles.ConfigFile);
        CheckPeftType(config, configPath, peftType);
        return (config, configPath);
    }

    public static void CheckPeftType(JsonObject config, string source, string peftType)
    {
        string found = ReadString(config, "peft_type", source);
        if (!string.Equals(found, peftType, StringComparison.Ordinal))
            throw new InvalidDataException($"{source}: peft_type is {found}, expected {peftType}");
    }

    /// <summary>An integer; <c>8.0</c> is accepted (Python may write either), <c>8.5</c> is not. <paramref name="fallback"/> when the key is absent.</summary>
    public static int ReadInt(JsonObject config, string key, string source, int? fallback = null) =>
        config[key] is null && fallback is { } f ? f : Read(config, key, source, "an integer", n =>
        {
            double value = n.GetValue<double>();
            return value == Math.Floor(value) && Math.Abs(value) <= int.MaxValue ? (int)value : throw new FormatException();
        });

    /// <summary>A number; <paramref name="fallback"/> (PEFT's default) when the key is absent or null.</summary>
    public static double ReadDouble(JsonObject config, string key, string source, double? fallback = null) =>
        config[key] is null && fallback is { } f ? f : Read(config, key, source, "a number", n => n.GetValue<double>());

    /// <summary>A string; <paramref name="fallback"/> (PEFT's default) when the key is absent or null.</summary>
    public static string ReadString(JsonObject config, string key, string source, string? fallback = null) =>
        config[key] is null && fallback is { } f ? f : Read(config, key, source, "a string", n => n.GetValue<string>());

    /// <summary>A list of module names. PEFT also allows one regular expression as a string, which SharpTune does not match.</summary>
    public static IReadOnlyList<string> ReadNameList(JsonObject config, string key, string source, IReadOnlyList<string>? fallback = null)
    {
        var node = config[key];
        if (node is JsonValue value && value.TryGetValue<string>(out string? regex))
            throw new InvalidDataException($"{source}: {key} is the regular expression '{regex}'; SharpTune reads a list of module names");
        return config[key] is null && fallback is { } f ? f : Read<IReadOnlyList<string>>(config, key, source, "a list of module names",
            n => n.AsArray().Select(e => e!.GetValue<string>()).ToList());
    }

    /// <summary>
    /// Throws when the config switches on a PEFT feature SharpTune does not implement (a key that is present
    /// and not null, false or empty), so such an adapter is refused rather than
    /// silently loaded with different behaviour.
    /// </summary>
    public static void RejectUnsupported(JsonObject config, string source, params (string Key, string What)[] features)
    {
        foreach (var (key, what) in features)
        {
            bool on = config[key] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out bool flag) => flag,
                JsonObject o => o.Count > 0,
                JsonArray a => a.Count > 0,
                _ => true,
            };
            if (on) throw new InvalidDataException($"{source}: {key} = {config[key]!.ToJsonString()} ({what}) is not supported by SharpTune");
        }
    }

    /// <summary>A missing or null key, or a value of the wrong kind, is an error naming the file and key.</summary>
    static T Read<T>(JsonObject config, string key, string source, string expected, Func<JsonNode, T> convert)
    {
        var node = config[key] ?? throw new InvalidDataException($"{source}: {key} is missing (expected {expected})");
        try
        {
            return convert(node);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or OverflowException)
        {
            throw new InvalidDataException($"{source}: {key} is {node.ToJsonString()}, expected {expected}", e);
        }
    }
}
