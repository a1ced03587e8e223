namespace SharpTune.Peft;

/// <summary>The parameter-efficient methods by name. Registering a name twice is an error.</summary>
public static class PeftRegistry
{
    static readonly Dictionary<string, IPeftMethod> Methods = new(StringComparer.OrdinalIgnoreCase);

    static PeftRegistry()
    {
        // One line per method folder.
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

    public static IPeftMethod Get(string name) =>
        Methods.TryGetValue(name, out var method)
            ? method
            : throw new ArgumentException($"--method '{name}' is not known; parameter-efficient methods: {string.Join(", ", Methods.Keys.Order())}");

    public static bool TryGet(string name, out IPeftMethod? method) => Methods.TryGetValue(name, out method);
}
