using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Models.Quantized;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>What an export wrote, and what is worth telling about it (tensors kept in another type, files copied).</summary>
public sealed record DecoderExportResult(IReadOnlyList<string> Files, IReadOnlyList<string> Notes);

/// <summary>
/// The files llama.cpp, Ollama and transformers run, from a fine-tuned decoder whose Linear layers may be LoRA or IA3
/// layers (<see cref="IMergeableLinear"/>): a merged GGUF, a LoRA adapter GGUF over its base GGUF with an Ollama
/// <c>Modelfile</c>, and a merged Hugging Face folder. <paramref name="source"/> in each is the base the model was
/// fine-tuned from, for its tokenizer. Follows llama.cpp's <c>convert_hf_to_gguf.py</c> and <c>convert_lora_to_gguf.py</c>.
/// </summary>
public static class DecoderExport
{
    /// <summary>The tensor types a GGUF export writes (<c>--dtype</c>), by their llama.cpp names.</summary>
    public static IReadOnlyDictionary<string, GgufTensorType> TensorTypes { get; } = new Dictionary<string, GgufTensorType>
    {
        ["f32"] = GgufTensorType.F32, ["f16"] = GgufTensorType.F16, ["bf16"] = GgufTensorType.BF16, ["q8_0"] = GgufTensorType.Q8_0,
        ["q4_0"] = GgufTensorType.Q4_0, ["q4_1"] = GgufTensorType.Q4_1, ["q5_0"] = GgufTensorType.Q5_0, ["q5_1"] = GgufTensorType.Q5_1,
        ["q4_k"] = GgufTensorType.Q4_K, ["q5_k"] = GgufTensorType.Q5_K, ["q6_k"] = GgufTensorType.Q6_K,
    };

    /// <summary>
    /// The file a GGUF export writes for <paramref name="output"/> (<c>--out</c>): a path ending in .gguf is the file itself;
    /// any other path is a folder, which gets <paramref name="fileName"/> (model.gguf, adapter.gguf). One rule for every
    /// GGUF export, so a script can pass the path it gave on to llama.cpp.
    /// </summary>
    public static string GgufPath(string output, string fileName)
    {
        if (string.IsNullOrWhiteSpace(output)) throw new ArgumentException("no output path given", nameof(output));
        if (IsGgufPath(output)) return output;
        if (File.Exists(output)) throw new ArgumentException($"the output '{output}' is a file; give a path ending in .gguf (the file to write) or a folder", nameof(output));
        return Path.Combine(output, fileName);
    }

    /// <summary>The Ollama Modelfile written beside a GGUF, named after it: <c>adapter.gguf</c> -> <c>adapter.Modelfile</c>.</summary>
    public static string ModelfilePath(string gguf) => Path.ChangeExtension(Path.GetFullPath(gguf), ".Modelfile");

    static bool IsGgufPath(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);

    /// <summary><paramref name="name"/> (f32, f16, bf16, q8_0; any case) as a tensor type; anything else is an error naming the choices.</summary>
    public static GgufTensorType ParseTensorType(string name) =>
        TensorTypes.TryGetValue(name.Trim().ToLowerInvariant(), out var type) ? type
        : throw new ArgumentException($"--dtype '{name}' is not a GGUF tensor type SharpTune writes; choose one of {string.Join(", ", TensorTypes.Keys)}", nameof(name));

    /// <summary>
    /// Writes the model with every adapter merged into its weights as one GGUF file at <paramref name="path"/> (.gguf):
    /// the family's metadata, llama's q/k rows permuted, the base's tokenizer. Matrices are stored as
    /// <paramref name="type"/> (F16 unless asked otherwise, as llama.cpp's converter), vectors (norms, biases) as F32;
    /// a matrix Q8_0 cannot hold (rows not a multiple of 32) is stored as F16, and said so in the notes. An Ollama Modelfile
    /// goes beside it (<see cref="ModelfilePath"/>: FROM this file), the way to Ollama that every Ollama version takes.
    /// </summary>
    /// <param name="type">The matrices' type; null: each matrix in the type the base GGUF stores it in (so a Q4_K_M base
    /// gives a Q4_K_M export), F16 for a Hugging Face base. Tensors are merged, converted and written one at a time.</param>
    public static DecoderExportResult MergedGguf(ICausalLanguageModel model, DecoderSource source, string path, GgufTensorType? type = GgufTensorType.F16)
    {
        if (type is { } asked) CheckModelType(asked);
        CheckGgufOutput(path, source, "the merged GGUF");
        var layout = Layout(model, source);
        var baseTypes = type is null && source.IsGguf
            ? GgufFile.Open(source.Path).Tensors.ToDictionary(t => t.Name, t => t.Type) : [];
        GgufTensorType TypeOf(GgufTensorMapping m) => type
            ?? (baseTypes.TryGetValue(m.GgufName, out var stored) && TensorTypes.Values.Contains(stored) ? stored : GgufTensorType.F16);
        var weights = MergedWeights.Lazy(model.Module);
        int mergedLayers = model.Module.named_modules().Count(m => m.module is IMergeableLinear);
        var notes = GgufModelWriter.Write(layout, weights, source, TypeOf, path);
        if (type is null && source.IsGguf) notes.Insert(0, $"matrices in the base's own types ({string.Join(", ", layout.Tensors.Where(t => t.Shape.Length == 2).Select(TypeOf).Distinct())})");
        if (mergedLayers > 0) notes.Insert(0, $"{mergedLayers} adapter layer(s) merged into their weights");
        string modelfile = ModelfilePath(path);
        notes.AddRange(Modelfile(modelfile, path, null, source));
        return new DecoderExportResult([Path.GetFullPath(path), modelfile], notes);
    }

    /// <summary>
    /// Writes the model's LoRA layers as a llama.cpp adapter GGUF at <paramref name="path"/> (.gguf): <c>general.type</c>
    /// adapter, <c>adapter.lora.alpha</c> (f32), tensors <c>&lt;base tensor&gt;.lora_a</c> (r, in) and <c>.lora_b</c> (out, r) with
    /// llama's q/k permutation on lora_b's rows. An Ollama Modelfile goes beside it (<see cref="ModelfilePath"/>: FROM the
    /// base GGUF, ADAPTER this file; Ollama 0.34.1 and later refuse ADAPTER in <c>ollama create</c>, the merged GGUF is the
    /// way there). A GGUF source is the base as it is; a Hugging Face source's weights are written as the base GGUF at
    /// <paramref name="basePath"/> (default <c>base.gguf</c> beside the adapter) in <paramref name="baseType"/>.
    /// </summary>
    /// <param name="type">F32 (default), F16 or BF16: lora_b's rows are the rank, too short for Q8_0 blocks.</param>
    /// <param name="checkBase">
    /// Compare every weight outside the LoRA pairs with the base's (exactly, in the model's dtype) and refuse when one differs: the
    /// adapter format holds only the pairs, so a trained bias or layer would be lost silently.
    /// </param>
    public static DecoderExportResult LoraGguf(ICausalLanguageModel model, DecoderSource source, string path,
        GgufTensorType type = GgufTensorType.F32, string? basePath = null, GgufTensorType baseType = GgufTensorType.F16, bool checkBase = true)
    {
        if (type is not (GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16))
            throw new ArgumentException($"a LoRA adapter is written as f32, f16 or bf16, not {type} (lora_b's rows hold the rank, too few for {type} blocks)", nameof(type));
        CheckGgufOutput(path, source, "the adapter GGUF");
        string baseGguf = source.Path;
        if (!source.IsGguf)
        {
            CheckModelType(baseType);
            baseGguf = Path.GetFullPath(basePath ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "base.gguf"));
            if (baseGguf == Path.GetFullPath(path)) throw new ArgumentException($"the base GGUF and the adapter would both be written to {baseGguf}", nameof(basePath));
            CheckGgufOutput(baseGguf, source, "the base GGUF");
        }
        else if (basePath is not null) throw new ArgumentException($"the base is the GGUF file {source.Path} itself; basePath is only for a Hugging Face base", nameof(basePath));
        var layout = Layout(model, source);
        var layers = LoraLayers(model);
        var baseWeights = LoraGgufWriter.BaseWeights(model.Module.state_dict(), layers.Keys);
        if (checkBase) CheckBaseUnchanged(baseWeights, source, model.Module.named_modules().Select(m => m.name).ToHashSet(StringComparer.Ordinal));

        var files = new List<string>();
        var notes = new List<string>();
        if (!source.IsGguf)
        {
            notes.AddRange(GgufModelWriter.Write(layout, baseWeights, source, baseType, baseGguf));
            files.Add(baseGguf);
        }
        notes.InsertRange(0, LoraGgufWriter.Write(layout, layers, type, path));
        files.Insert(0, Path.GetFullPath(path));
        string modelfile = ModelfilePath(path);
        notes.AddRange(Modelfile(modelfile, baseGguf, path, source));
        files.Add(modelfile);
        return new DecoderExportResult(files, notes);
    }

    /// <summary>
    /// Writes an Ollama <c>Modelfile</c>: FROM <paramref name="baseGguf"/>, ADAPTER <paramref name="adapterGguf"/> when given
    /// (paths relative to the Modelfile's folder when they lie under it), a TEMPLATE in Ollama's Go syntax equivalent to the
    /// source's chat template when it is a kind <see cref="OllamaChatFormats"/> knows (ChatML, Llama 3, Zephyr), and a
    /// <c>PARAMETER stop</c> for each of the tokenizer's end-of-turn tokens and the template's turn markers. Returns notes
    /// for the user (a chat template with no TEMPLATE written).
    /// </summary>
    public static IReadOnlyList<string> Modelfile(string path, string baseGguf, string? adapterGguf, DecoderSource source)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"the Modelfile path '{path}' is a directory", nameof(path));
        var notes = new List<string>();
        Checkpoints.AtomicFile.WriteAllText(path, OllamaModelfile.Render(path, baseGguf, adapterGguf, source.Tokenizer, source.ChatTemplate, notes));
        return notes;
    }

    /// <summary>
    /// Writes the model with every adapter merged as a plain Hugging Face folder (<c>config.json</c>, <c>model.safetensors</c> in
    /// the model's dtype) with the base's tokenizer files, which <see cref="PretrainedDecoder.Load"/> and
    /// <see cref="LanguageModel.Load"/> read back. A GGUF base's tokenizer is written as <c>tokenizer.json</c> and
    /// <c>tokenizer_config.json</c>.
    /// </summary>
    /// <summary>Each weight made when the enumeration reaches it and freed when it moves on (the reader copies it before asking for the next).</summary>
    static IEnumerable<(string Key, Tensor Value)> OneAtATime(IReadOnlyDictionary<string, Func<Tensor>> weights)
    {
        foreach (var (key, make) in weights)
        {
            using var tensor = make();
            yield return (key, tensor);
        }
    }

    public static DecoderExportResult MergedHuggingFace(ICausalLanguageModel model, DecoderSource source, string folder)
    {
        if (File.Exists(folder)) throw new ArgumentException($"the output '{folder}' is a file; give a folder for the Hugging Face model", nameof(folder));
        if (IsGgufPath(folder))
            throw new ArgumentException($"the output '{folder}' ends in .gguf, which names a GGUF file; a Hugging Face model is a folder (or export --format gguf)", nameof(folder));
        if (!source.IsGguf && Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar) == source.Path.TrimEnd(Path.DirectorySeparatorChar))
            throw new ArgumentException($"the output folder {folder} is the base model's folder; write the merged model elsewhere", nameof(folder));
        Layout(model, source); // the same family as the base, and one this export knows
        // A model over stored blocks is written in its file's float type when every matrix has one (F32, F16, BF16), and
        // in bf16 over quantized blocks (a dense fp32 copy of a 4-bit file would be eight times its size); a dense model in
        // its own dtype. Each tensor is merged or dequantized, copied into the plain model and freed.
        var storedTypes = model.Module.named_modules()
            .Select(m => m.module switch { StoredLinear l => l.Weight.Type, StoredEmbedding e => e.Weight.Type, _ => (GgufTensorType?)null })
            .OfType<GgufTensorType>().Distinct().ToList();
        bool stored = storedTypes.Count > 0;
        var dtype = !stored ? model.Module.state_dict().Values.FirstOrDefault(t => t.is_floating_point())?.dtype ?? ScalarType.Float32
            : storedTypes.All(t => t == GgufTensorType.F32) ? ScalarType.Float32
            : storedTypes.All(t => t == GgufTensorType.F16) ? ScalarType.Float16
            : ScalarType.BFloat16;
        using (var plain = PretrainedDecoder.FromStateDict(model.ToConfigJson(), OneAtATime(MergedWeights.Lazy(model.Module)), dtype, "the merged model"))
            plain.Save(folder);
        var files = new List<string> { Path.Combine(folder, "config.json"), Path.Combine(folder, "model.safetensors") };
        files.AddRange(HuggingFaceTokenizerFiles.Write(source, folder));
        var notes = new List<string>();
        int mergedLayers = model.Module.named_modules().Count(m => m.module is IMergeableLinear);
        if (mergedLayers > 0) notes.Add($"{mergedLayers} adapter layer(s) merged into their weights");
        if (stored && dtype == ScalarType.BFloat16 && storedTypes.Any(t => t != GgufTensorType.BF16))
            notes.Add("written in bf16: the base's quantized matrices dequantized");
        return new DecoderExportResult(files.Select(Path.GetFullPath).ToList(), notes);
    }

    static void CheckModelType(GgufTensorType type)
    {
        if (!TensorTypes.Values.Contains(type))
            throw new ArgumentException($"GGUF tensor type {type} is not one SharpTune writes; choose one of {string.Join(", ", TensorTypes.Keys)}", nameof(type));
    }

    static void CheckGgufOutput(string path, DecoderSource source, string what)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{what}: no output path given", nameof(path));
        if (Directory.Exists(path)) throw new ArgumentException($"{what}: the output '{path}' is a directory; give the path of a .gguf file", nameof(path));
        if (!IsGgufPath(path))
            throw new ArgumentException($"{what}: the output '{path}' does not end in .gguf (llama.cpp, Ollama and SharpTune know GGUF files by it)", nameof(path));
        if (source.IsGguf && Path.GetFullPath(path) == source.Path)
            throw new ArgumentException($"{what}: the output {path} is the base GGUF the model came from; write it elsewhere", nameof(path));
    }

    /// <summary>The model's GGUF layout, after checking that the base is of the same family and that no prompt method is in it.</summary>
    static GgufDecoderLayout Layout(ICausalLanguageModel model, DecoderSource source)
    {
        if (model.Module.state_dict().Keys.FirstOrDefault(k => k.StartsWith("prompt_encoder.", StringComparison.Ordinal)) is { } prompt)
            throw new NotSupportedException(
                $"the model carries a prompt method ({prompt}): its virtual tokens or key/value prefixes fold into no weight, and neither " +
                "a GGUF file nor llama.cpp's adapter can hold them; keep the PEFT adapter folder, which SharpTune loads");
        var layout = GgufDecoderLayout.For(model);
        string family = DecoderFamilies.ForConfig(model.ToConfigJson(), "model config").Name, sourceFamily = source.Family();
        if (family != sourceFamily)
            throw new ArgumentException($"the model is a {family} decoder but its base {source} is a {sourceFamily} one: not the base of this model");
        return layout;
    }

    /// <summary>Every LoRA layer by module path; other adapter layers, a merged LoRA layer or none at all are refused by name.</summary>
    static Dictionary<string, LoraLinear> LoraLayers(ICausalLanguageModel model)
    {
        var wrapped = model.Module.named_modules().Where(m => m.module is IMergeableLinear).ToList();
        if (wrapped.FirstOrDefault(m => m.module is not LoraLinear) is { module: not null } other)
            throw new NotSupportedException(
                $"{other.name} is a {other.module.GetType().Name}: llama.cpp's adapter GGUF holds LoRA pairs only; export the merged model (gguf) instead");
        var layers = wrapped.ToDictionary(m => m.name, m => (LoraLinear)m.module);
        if (layers.Count == 0)
            throw new ArgumentException("the model has no LoRA layers, so there is no adapter to write; export the merged model (gguf or hf) instead", nameof(model));
        if (layers.FirstOrDefault(l => l.Value.IsMerged) is { Value: not null } mergedLayer)
            throw new InvalidOperationException($"{mergedLayer.Key}: the LoRA update is merged into its weight; unmerge the model before exporting its adapter");
        return layers;
    }

    /// <summary>Refuses an adapter export whose model changed weights outside its LoRA pairs (the adapter file cannot carry them).</summary>
    /// <param name="modules">The model's module paths: a base weight whose module is there but holds no such tensor is kept in
    /// the base's own blocks (stored weights), unchanged by construction.</param>
    static void CheckBaseUnchanged(IReadOnlyDictionary<string, Tensor> ours, DecoderSource source, IReadOnlySet<string> modules)
    {
        var differing = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, value) in source.BaseWeights())
        {
            using (value)
            using (NewDisposeScope())
            {
                if (!ours.TryGetValue(key, out var mine))
                {
                    int dot = key.LastIndexOf('.');
                    if (dot < 0 || !modules.Contains(key[..dot])) differing.Add($"{key} (not in the model)");
                    continue;
                }
                seen.Add(key);
                if (!mine.shape.SequenceEqual(value.shape) || !mine.detach().eq(value.to(mine.dtype)).all().item<bool>()) differing.Add(key);
            }
        }
        differing.AddRange(ours.Keys.Where(k => !seen.Contains(k)).Select(k => $"{k} (not in the base)"));
        if (differing.Count > 0)
            throw new NotSupportedException(
                $"llama.cpp's LoRA adapter holds only lora_a/lora_b pairs, but {differing.Count} weight(s) of the model differ from its base {source} " +
                $"(trained biases or layers?): {string.Join(", ", differing.Take(6))}{(differing.Count > 6 ? ", ..." : "")}; export the merged model (gguf) instead");
    }
}
