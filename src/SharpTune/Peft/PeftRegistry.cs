namespace SharpTune.Peft;

/// <summary>The parameter-efficient methods by name. Registering a name twice is an error.</summary>
public static class PeftRegistry
{
    static readonly Dictionary<string, IPeftMethod> Methods = new(StringComparer.OrdinalIgnoreCase);

    static PeftRegistry()
    {
        // One line per method folder.
        Register(new PromptTuning.PromptTuningMethod());
        Register(new PTuning.PTuningMethod());
        Register(new Prefix.PrefixTuningMethod());
        Register(new Prefix.PTuningV2Method());
        Register(new Lora.LoraMethod());
        Register(new IA3.Ia3Method());
        Register(new BitFit.BitFitMethod());
    }

    public static void Register(IPeftMethod method)
    {
        if (!Methods.TryAdd(method.Name, method))
            throw new InvalidOperationException($"A parameter-efficient method named '{method.Name}' is already registered.");
    }

    public static IReadOnlyCollection<string> Names => Methods.Keys;

    /// <summary>Every method, in registration order.</summary>
    public static IReadOnlyCollection<IPeftMethod> All => Methods.Values;

    public static IPeftMethod Get(string name) =>
        Methods.TryGetValue(name, out var method)
            ? method
            : throw new ArgumentException($"--method '{name}' is not known; parameter-efficient methods: {string.Join(", ", Methods.Keys.Order())}");

    /// <summary>The method that wrote an adapter folder's config (see <see cref="IPeftMethod.Reads"/>).</summary>
    public static IPeftMethod ForAdapter(System.Text.Json.Nodes.JsonObject adapterConfig, string source)
    {
        var readers = Methods.Values.Where(m => m.Reads(adapterConfig)).ToList();
        return readers.Count == 1
            ? readers[0]
            : throw new InvalidDataException(readers.Count == 0
                ? $"{source}: peft_type '{adapterConfig["peft_type"]}' is not one SharpTune can load; methods: {string.Join(", ", Methods.Keys.Order())}"
                : $"{source}: the config fits several methods ({string.Join(", ", readers.Select(m => m.Name))})");
    }

    public static bool TryGet(string name, out IPeftMethod? method) => Methods.TryGetValue(name, out method);
}
