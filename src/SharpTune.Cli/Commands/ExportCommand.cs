using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using System.CommandLine;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune export --model MODEL --out OUT [--format hf|gguf|gguf-lora] [--dtype f16]</c>: a LoRA or IA3 task model merged
/// into a plain Hugging Face model; a decoder language model (Hugging Face folder or .gguf file) written as a Hugging Face
/// folder or a GGUF file llama.cpp and Ollama run.
/// </summary>
/// <remarks>
/// A language model's run folder (or its best/, final/) exports its adapter merged (hf, gguf) or as a llama.cpp adapter over
/// its base (gguf-lora), with the base's tokenizer; a plain decoder is its own base, so hf and gguf convert it.
/// </remarks>
public static class ExportCommand
{
    static readonly string[] Formats = ["hf", "gguf", "gguf-lora"];

    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "Run folder (its best/ model is used) or saved model folder: a task model trained with lora or ia3, or a fine-tuned language model; or a plain decoder (Hugging Face folder or .gguf file)",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "Where to write: a folder (hf; gguf-lora: adapter.gguf, base.gguf when the base is a folder, and an Ollama Modelfile) or a .gguf file (gguf)",
            Required = true,
        };
        var format = new Option<string>("--format") { Description = "hf (Hugging Face folder, merged), gguf (merged, for llama.cpp and Ollama) or gguf-lora (llama.cpp LoRA adapter + Modelfile); gguf formats are for decoders", DefaultValueFactory = _ => "hf" };
        var dtype = new Option<string?>("--dtype") { Description = "GGUF tensor type of the matrices: f32, f16 (default; adapters: f32), bf16 or q8_0 (merged only)" };
        var command = new Command("export", "Merge an adapter into its base and save a plain model: a Hugging Face folder, or for decoders a GGUF file or a llama.cpp LoRA adapter.")
            { model, output, format, dtype };
        command.SetAction(result => CommandRunner.Run(() =>
            Run(result.GetValue(model)!, result.GetValue(output)!, result.GetValue(format)!, result.GetValue(dtype))));
        return command;
    }

    static int Run(string model, string output, string format, string? dtype)
    {
        if (!Formats.Contains(format)) throw new ArgumentException($"--format '{format}' is not one of {string.Join(", ", Formats)}");
        if (!LanguageModelFolder.IsLanguageModel(model))
        {
            if (format != "hf") throw new ArgumentException($"--format {format} is for decoder language models; {model} is a task model (export it as hf)");
            if (dtype is not null) throw new ArgumentException("--dtype applies to GGUF exports only");
            MergedTaskExport.Export(model, output);
            Console.WriteLine($"merged model written to {Path.GetFullPath(output)}");
            return 0;
        }
        if (format == "hf" && dtype is not null) throw new ArgumentException("--dtype applies to GGUF exports only (a Hugging Face folder keeps the model's dtype)");
        var type = dtype is not null ? DecoderExport.ParseTensorType(dtype) : format == "gguf" ? GgufTensorType.F16 : GgufTensorType.F32;
        // A fine-tuned language model (a run folder, its best/ or final/) exports with its base's tokenizer; a plain one is its own base.
        string? fineTuned = LanguageModelFolder.Resolve(model);
        var source = DecoderSource.Open(fineTuned is null ? model : LanguageModelFolder.BaseModel(fineTuned));
        ModelMemory.Check(model, TorchSharp.torch.ScalarType.Float32, "export", 1, 1);
        using var loaded = LanguageModelFolder.Load(model);
        var result = format switch
        {
            "hf" => DecoderExport.MergedHuggingFace(loaded.Model, source, output),
            "gguf" => DecoderExport.MergedGguf(loaded.Model, source, output, type),
            _ => DecoderExport.LoraGguf(loaded.Model, source, Path.Combine(output, "adapter.gguf"), type),
        };
        foreach (string file in result.Files) Console.WriteLine($"wrote {file}");
        foreach (string note in result.Notes) Console.WriteLine($"note: {note}");
        return 0;
    }
}
