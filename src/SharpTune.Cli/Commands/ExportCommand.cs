using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using System.CommandLine;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune export --model MODEL --out OUT [--format hf|gguf|gguf-lora|onnx] [--dtype f16]</c>: a LoRA or IA3 task model merged
/// into a plain Hugging Face model; a decoder language model (Hugging Face folder or .gguf file) written as a Hugging Face
/// folder or a GGUF file llama.cpp and Ollama run; an encoder (task model or embedding model) as an ONNX file.
/// </summary>
/// <remarks>
/// A language model's run folder (or its best/, final/) exports its adapter merged (hf, gguf) or as a llama.cpp adapter over
/// its base (gguf-lora), with the base's tokenizer; a plain decoder is its own base, so hf and gguf convert it.
/// </remarks>
public static class ExportCommand
{
    static readonly string[] Formats = ["hf", "gguf", "gguf-lora", "onnx"];

    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "Run folder (its best/ model is used) or saved model folder: a task model trained with lora or ia3, or a fine-tuned language model; or a plain decoder (Hugging Face folder or .gguf file). " +
                "onnx: a task model trained with any method, or a pretrained encoder (built-in name, Hugging Face or sentence-transformers folder, .onnx file)",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "Where to write. gguf, gguf-lora: a path ending in .gguf is the file written (with an Ollama Modelfile beside it, named after it: " +
                "adapter.gguf -> adapter.Modelfile); any other path is a folder, which gets model.gguf or adapter.gguf (+ base.gguf when the base is a " +
                "Hugging Face folder) and its .Modelfile. hf: a folder. onnx: a path ending in .onnx is the file written; any other path is a folder " +
                "that gets model.onnx with vocab.txt, tokenizer_config.json and config.json",
            Required = true,
        };
        var format = new Option<string>("--format") { Description = "hf (Hugging Face folder, merged), gguf (merged, for llama.cpp and Ollama, + Modelfile), gguf-lora (llama.cpp LoRA adapter + Modelfile) or onnx (encoders: a task model's logits, or an embedding model's token states and sentence embedding); gguf formats are for decoders, onnx for encoders", DefaultValueFactory = _ => "hf" };
        var dtype = new Option<string?>("--dtype") { Description = "GGUF tensor type of the matrices: stored (default over a GGUF base: each matrix in the base's own type), f32, f16 (default over a Hugging Face base), bf16, or merged only q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k; adapters: f32 (default), f16, bf16" };
        var command = new Command("export", "Merge an adapter into its base and save a plain model: a Hugging Face folder, for decoders a GGUF file or a llama.cpp LoRA adapter, for encoders an ONNX file.")
            { model, output, format, dtype };
        command.SetAction(result => CommandRunner.Run(() =>
            Run(result.GetValue(model)!, result.GetValue(output)!, result.GetValue(format)!, result.GetValue(dtype))));
        return command;
    }

    static int Run(string model, string output, string format, string? dtype)
    {
        if (!Formats.Contains(format)) throw new ArgumentException($"--format '{format}' is not one of {string.Join(", ", Formats)}");
        if (format == "onnx") return RunOnnx(model, output, dtype);
        if (!LanguageModelFolder.IsLanguageModel(model))
        {
            if (format != "hf") throw new ArgumentException($"--format {format} is for decoder language models; {model} is a task model (export it as hf)");
            if (dtype is not null) throw new ArgumentException("--dtype applies to GGUF exports only");
            if (output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"--out {output} ends in .gguf, which names a GGUF file; a merged task model is a Hugging Face folder");
            MergedTaskExport.Export(model, output);
            Console.WriteLine($"merged model written to {Path.GetFullPath(output)}");
            return 0;
        }
        if (format == "hf" && dtype is not null) throw new ArgumentException("--dtype applies to GGUF exports only (a Hugging Face folder keeps the model's dtype)");
        // gguf: the asked type, or each matrix in the base GGUF's own type ("stored", the default over a GGUF base), F16
        // over a Hugging Face base; gguf-lora: F32 unless asked.
        GgufTensorType? type = dtype is null or "stored" ? (format == "gguf" ? null : GgufTensorType.F32) : DecoderExport.ParseTensorType(dtype);
        // A fine-tuned language model (a run folder, its best/ or final/) exports with its base's tokenizer and the chat
        // template it was trained with; a plain one is its own base.
        string? fineTuned = LanguageModelFolder.Resolve(model);
        ModelMemory.Check(model, WeightStorage.AsStored, "export", 1, 1);
        using var loaded = LanguageModelFolder.Load(model, WeightStorage.AsStored); // a GGUF base stays in its blocks; merges dequantize one tensor at a time
        var source = fineTuned is null ? DecoderSource.Open(model)
            : DecoderSource.Open(LanguageModelFolder.BaseModel(fineTuned)).WithChatTemplate(loaded.Template?.Text);
        string gguf = DecoderExport.GgufPath(output, format == "gguf" ? "model.gguf" : "adapter.gguf");
        var result = format switch
        {
            "hf" => DecoderExport.MergedHuggingFace(loaded.Model, source, output),
            "gguf" => DecoderExport.MergedGguf(loaded.Model, source, gguf, type),
            _ => DecoderExport.LoraGguf(loaded.Model, source, gguf, type ?? GgufTensorType.F32),
        };
        foreach (string file in result.Files) Console.WriteLine($"wrote {file}");
        foreach (string note in result.Notes) Console.WriteLine($"note: {note}");
        if (format != "hf") PrintHowToRun(model, format, result.Files, source);
        return 0;
    }

    /// <summary>An encoder (task model or embedding model) as ONNX; a decoder is refused with the formats that apply to it.</summary>
    static int RunOnnx(string model, string output, string? dtype)
    {
        if (LanguageModelFolder.IsLanguageModel(model))
            throw new ArgumentException($"--format onnx exports encoders (fine-tuned task models and embedding models); {model} is a decoder language model: export it with --format hf, gguf or gguf-lora");
        if (dtype is not null) throw new ArgumentException("--dtype applies to GGUF exports only (an ONNX export keeps fp32 weights)");
        var result = OnnxExport.Export(model, output);
        foreach (string file in result.Files) Console.WriteLine($"wrote {file}");
        foreach (string line in result.Outputs) Console.WriteLine($"output: {line}");
        foreach (string note in result.Notes) Console.WriteLine($"note: {note}");
        Console.WriteLine("inputs: input_ids, attention_mask, token_type_ids (int64, batch x sequence; both axes dynamic)");
        return 0;
    }

    /// <summary>The commands that run what was written, with its full paths.</summary>
    static void PrintHowToRun(string model, string format, IReadOnlyList<string> files, DecoderSource source)
    {
        string gguf = files[0], modelfile = files[^1];
        Console.WriteLine($"Ollama:    ollama create NAME -f {Quote(modelfile)} && ollama run NAME");
        if (format == "gguf")
        {
            Console.WriteLine($"llama.cpp: llama-cli -m {Quote(gguf)}");
            return;
        }
        string baseGguf = source.IsGguf ? source.Path : files[1]; // a Hugging Face base was written as base.gguf beside the adapter
        string merged = Path.Combine(Path.GetDirectoryName(gguf)!, "merged.gguf");
        Console.WriteLine("           (Ollama 0.34.1 and later refuse a Modelfile with ADAPTER; the merged GGUF works in every version:");
        Console.WriteLine($"           sharptune export --model {Quote(model)} --format gguf --dtype q8_0 --out {Quote(merged)}");
        Console.WriteLine($"           ollama create NAME -f {Quote(DecoderExport.ModelfilePath(merged))})");
        Console.WriteLine($"llama.cpp: llama-cli -m {Quote(baseGguf)} --lora {Quote(gguf)}");
    }

    static string Quote(string path) => path.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"') ? $"'{path.Replace("'", "'\\''")}'" : path;
}
