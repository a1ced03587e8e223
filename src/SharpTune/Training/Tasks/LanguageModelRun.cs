using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Memory;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Training.Tasks;

/// <summary>
/// A decoder as a language-model run trains it (causal-lm, preference): loaded from a Hugging Face folder or a GGUF file
/// with the chosen method built in, the base held as <c>--base-dtype</c> says, what trains set, checkpointing on when
/// asked; every check that needs the architecture done before a weight is read.
/// </summary>
public sealed class LanguageModelRun : IDisposable
{
    LanguageModelRun(string baseModel, LanguageModel lm, CausalLmModel model, IPeftMethod? method, PeftSettings settings, int maxLength, ParameterSummary parameters)
        => (BaseModel, Lm, Model, Method, Settings, MaxLength, Parameters) = (baseModel, lm, model, method, settings, maxLength, parameters);

    /// <summary>The base model's absolute path.</summary>
    public string BaseModel { get; }
    public LanguageModel Lm { get; }
    public CausalLmModel Model { get; }
    public IPeftMethod? Method { get; }
    public PeftSettings Settings { get; }
    /// <summary>Tokens per sequence: <c>--max-length</c> within the model's context less the virtual tokens.</summary>
    public int MaxLength { get; }
    public ParameterSummary Parameters { get; }

    /// <summary>Saves the model (the adapter in PEFT's format, or the whole model) with the chat template it trains with.</summary>
    public void Save(string folder, string methodName) => LanguageModelFolder.Save(folder, Model, BaseModel, methodName, Method, Settings, Lm.Template?.Text);

    /// <param name="sequencesPerExample">Sequences a training example runs through the model (a preference pair: 2), for the memory check.</param>
    public static LanguageModelRun Build(RunContext run, FineTuneOptions options, int sequencesPerExample = 1)
    {
        var say = run.Say;
        var method = PeftRegistry.TryGet(options.Method, out var peft) ? peft : null;
        var freeze = method is null ? FreezePolicy.Parse(options.Method) : null;
        if (freeze is { What: FreezePolicy.Mode.Encoder })
            throw new ArgumentException("--method head does not apply to a language model (its head is the pretrained lm_head); use lora, freeze:K or full");

        // 1. The architecture and every check that needs it, before a weight is read.
        string baseModel = File.Exists(options.Model) || Directory.Exists(options.Model) ? Path.GetFullPath(options.Model)
            : throw new FileNotFoundException($"--model {options.Model}: no such language model (a Hugging Face folder or a .gguf file)", options.Model);
        var shape = LanguageModel.ReadConfig(baseModel);
        var settings = options.Peft;
        method?.Validate(settings, shape);
        if (freeze is { What: FreezePolicy.Mode.BottomLayers } && freeze.Layers > shape.LayerCount)
            throw new ArgumentException($"--method {options.Method} freezes more layers than {options.Model} has ({shape.LayerCount})");
        if (options.Packing && method is { AddsVirtualTokens: true })
            throw new ArgumentException($"--packing does not combine with --method {options.Method}: the virtual tokens belong to one example per row");
        int maxLength = run.MaxLength(shape.MaxPositions, method?.PositionsTaken(settings, shape) ?? 0);
        // How the base is held (a stored base keeps a GGUF's matrices in their blocks, QLoRA-style: only adapters and
        // prompt modules can train over it), then whether the run fits in memory and on disk that way.
        var storage = BaseStorage(options, baseModel, method, say);
        if (options.Precision == "bf16" && !storage.Stored && storage.Dtype != ScalarType.BFloat16)
            throw new ArgumentException($"--precision bf16 for --task {options.Task} computes in bf16 over a frozen base held stored (--base-dtype stored, " +
                                        "the default for a GGUF file under an adapter) or in bf16 (--base-dtype bf16, which computes in bf16 already); " +
                                        $"this run's base is {storage}: use --precision fp32 or one of those");
        var load = options with { Training = options.Training with { BatchSize = options.Training.BatchSize * sequencesPerExample } };
        RunResources.Check(load, shape, dtype => storage.Stored && dtype == ScalarType.Float32
                ? storage.QuantizeTo is { } blocks ? MemoryEstimator.QuantizedWeightBytes(shape, blocks) : MemoryEstimator.StoredWeightBytes(Models.Decoders.Gguf.GgufModelMap.Open(baseModel))
                : MemoryEstimator.WeightBytes(baseModel, shape, dtype),
            storage.Dtype, method, freeze, maxLength, run.World.IsMain, say);

        // 2. Model with the method built in. A bf16 base is read straight into bf16 parameters (the fp32 copy would
        // need twice the base's bytes at load); only what trains is then given back fp32.
        var lm = LanguageModel.Load(baseModel, storage, options.ChatTemplate, method?.Linears(settings, shape, DecoderLinears.Plain));
        say($"model: {lm.Source}");
        foreach (string note in lm.Notes) say($"note: {note}");
        run.Seed();
        var promptModule = method?.CreatePromptEncoder(settings, shape, lm.Model.WordEmbeddings);
        var model = new CausalLmModel(lm.Model, promptModule);
        if (method is not null) method.Freeze(model, settings); else freeze!.Apply(model);
        if (method?.BaseNote(settings, storage.Stored) is { } baseNote) say(baseNote);
        if (!storage.Stored && storage.Dtype == ScalarType.BFloat16)
        {
            int trainable = MixedDtype.Convert(model, ScalarType.Float32, (_, p) => p.requires_grad);
            say($"base held in bf16, read as bf16; the {trainable} tensors that train are fp32");
        }
        if (storage.Stored && options.Precision == "bf16")
        {
            Models.Quantized.QuantizedOps.ComputeInBf16(model);
            say("stored base computed in bf16 (--precision bf16): its activations and frozen norms bf16, what trains fp32" +
                (Models.Quantized.QuantizedOps.NativeBf16 ? "" : "; this CPU has no native bf16 products, so this is slower than fp32 here"));
        }
        if (options.GradientCheckpointing)
        {
            if (lm.Model is not IGradientCheckpointing checkpointed)
                throw new ArgumentException($"--gradient-checkpointing: {lm.Model.GetType().Name} cannot recompute its layers");
            checkpointed.GradientCheckpointing = true;
        }
        var parameters = ParameterSummary.Of(model);
        say($"method {options.Method}: {parameters}");

        return new LanguageModelRun(baseModel, lm, model, method, settings, maxLength, parameters);
    }

    public void Dispose()
    {
        Model.Dispose();
        Lm.Dispose();
    }

    /// <summary>
    /// How the frozen base is held, from <c>--base-dtype</c>: auto is stored for a GGUF file under an adapter or prompt
    /// method (the file's blocks, no dense copy) and fp32 otherwise. Methods that train base weights (full, freeze:K,
    /// BitFit) need them dense: stored and bf16 are refused for them, and auto says that a GGUF is dequantized.
    /// </summary>
    static WeightStorage BaseStorage(FineTuneOptions options, string baseModel, IPeftMethod? method, Action<string> say)
    {
        bool trainsBase = method is null or { TrainsBaseWeights: true };
        bool gguf = baseModel.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        bool quantize = WeightStorage.QuantizeTypes.TryGetValue(options.BaseDtype, out var blocks);
        switch (options.BaseDtype)
        {
            case "stored" or "bf16" when trainsBase:
            case not null when quantize && trainsBase:
                throw new ArgumentException($"--base-dtype {options.BaseDtype} needs an adapter or prompt method ({string.Join(", ", PeftRegistry.All.Where(m => !m.TrainsBaseWeights).Select(m => m.Name))}); " +
                    $"--method {options.Method} trains base weights themselves: use --base-dtype fp32 (a GGUF's blocks are then dequantized)");
            case "stored" when !gguf:
                throw new ArgumentException($"--base-dtype stored keeps a GGUF file's blocks; {options.Model} is a Hugging Face folder: use fp32 or bf16");
            case "stored":
                return WeightStorage.AsStored;
            case not null when quantize && gguf:
                throw new ArgumentException($"--base-dtype {options.BaseDtype} quantizes a Hugging Face folder on load; {options.Model} is a GGUF file: " +
                                            "use --base-dtype stored (its own blocks, the default)");
            case not null when quantize:
                say($"base quantized on load to {options.BaseDtype}: its matrices held in blocks, as a GGUF's are (--base-dtype fp32 or bf16 to change)");
                return WeightStorage.Quantized(blocks);
            case "bf16":
                return ScalarType.BFloat16;
            case "auto" when gguf && !trainsBase:
                say("base held as stored: the GGUF's matrices stay in their blocks, memory-mapped (--base-dtype fp32 or bf16 to change)");
                return WeightStorage.AsStored;
            case "auto" when gguf:
                say($"base dequantized to fp32: --method {options.Method} trains the base's weights themselves");
                return ScalarType.Float32;
            default:
                return ScalarType.Float32;
        }
    }
}
