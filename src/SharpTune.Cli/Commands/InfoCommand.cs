using SharpTune.ModelFolders;
using System.CommandLine;
using System.Globalization;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using SharpTune.Checkpoints;
using SharpTune.Models.Memory;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune info --model NAME|FOLDER|FILE.onnx</c>: what a model is and where its weights came from.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "Built-in model name (minilm, arctic-xs), Hugging Face model folder, ONNX file, or GGUF file",
            DefaultValueFactory = _ => BuiltInModels.MiniLM.Name,
        };
        // Not for users: prints MKL's state and a seeded product, so tests can compare processes started with and without the override.
        var probe = new Option<bool>("--mkl-probe") { Hidden = true };
        var command = new Command("info", "Show a pretrained model's architecture, size, vocabulary and weight source, and the CPU's matrix-product path.")
            { model, probe };
        command.SetAction(result => CommandRunner.Run(() => result.GetValue(probe) ? MklProbe() : Run(result.GetValue(model)!)));
        return command;
    }

    /// <summary>The CPU, whether MKL dispatches by its features, and the code path MKL chose.</summary>
    public static IEnumerable<string> NativeLines()
    {
        var status = MklDispatch.Ensure();
        yield return $"cpu            {status.Cpu}";
        yield return $"mkl override   {status.Reason} ({MklDispatch.EnvironmentVariable}=0 turns it off)";
        yield return $"mkl code path  {MklDispatch.DescribeCodePath(MklDispatch.CodePath())}";
        yield return $"allocator      {NativeAllocator.Status}";
    }

    static int MklProbe()
    {
        var status = MklDispatch.Ensure();
        var generator = new TorchSharp.torch.Generator(7);
        using var a = randn([257, 263], generator: generator);
        using var b = randn([263, 131], generator: generator);
        using var c = a.matmul(b);
        Console.WriteLine($"status {status.Reason}");
        Console.WriteLine($"code {MklDispatch.CodePath() ?? -1}");
        Console.WriteLine($"allocator {NativeAllocator.Status}");
        Console.WriteLine("values " + string.Join(' ', c.flatten().data<float>().ToArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
        return 0;
    }

    static int Run(string spec)
    {
        if (LanguageModelFolder.Find(spec) is { } languageModel) return RunLanguageModel(languageModel);
        using var encoder = PretrainedEncoder.Load(spec);
        var c = encoder.Config;
        int vocabEntries = CountLines(encoder.Vocab);
        Console.WriteLine($"model          {spec}");
        Console.WriteLine($"architecture   BertModel ({c.ModelType}): {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, " +
                          $"{c.NumAttentionHeads} heads, intermediate {c.IntermediateSize}, {c.HiddenAct}, " +
                          $"max positions {c.MaxPositionEmbeddings}, pooler {(encoder.Model.HasPooler ? "yes" : "no")}");
        Console.WriteLine($"parameters     {encoder.ParameterCount:N0}");
        Console.WriteLine($"vocabulary     {vocabEntries:N0} WordPiece entries ({(encoder.LowerCase ? "uncased" : "cased")}); config vocab_size {c.VocabSize:N0}");
        Console.WriteLine($"weights from   {encoder.Source}");
        long Weights(ScalarType dtype) => MemoryEstimator.WeightBytes(c, dtype);
        var inference = MemoryEstimator.Inference(c, Weights(ScalarType.Float32), ScalarType.Float32, 32, 128);
        var full = RunResources.Estimate(new FineTuneOptions { Training = new TrainingOptions { BatchSize = 16 } }, c, Weights,
            ScalarType.Float32, null, FreezePolicy.Full, 128);
        var lora = RunResources.LoraStep(c, Weights, 16, 128, saving: false);
        Console.WriteLine($"memory         inference (32 x 128 tokens): about {ByteSize.Format(inference.Total)}; training step at 16 x 128 tokens: " +
                          $"full fine-tuning about {ByteSize.Format(full.Total)} ({full}), LoRA about {ByteSize.Format(lora.Total)}; {AvailableMemory.Current()}");
        foreach (var note in encoder.Notes) Console.WriteLine($"note           {note}");
        foreach (var line in NativeLines()) Console.WriteLine(line);
        return 0;
    }

    /// <summary>A decoder language model: family, sizes, context, vocabulary, parameters and tensor types.</summary>
    static int RunLanguageModel(FoundLanguageModel found)
    {
        string spec = found.Spec;
        // What it takes, from the header or config alone, before a weight is read; a model too big for fp32 is loaded in bf16.
        var (shape, fp32Bytes, _) = LanguageModelMemory.Weights(found, ScalarType.Float32);
        long bf16Bytes = LanguageModelMemory.Weights(found, ScalarType.BFloat16).WeightBytes;
        long Weights(ScalarType dtype) => dtype == ScalarType.Float32 ? fp32Bytes : bf16Bytes;
        int tokens = Math.Min(512, shape.MaxPositions);
        var fp32 = MemoryEstimator.Inference(shape, fp32Bytes, ScalarType.Float32, 1, tokens);
        var bf16 = MemoryEstimator.Inference(shape, bf16Bytes, ScalarType.BFloat16, 1, tokens);
        var lora = RunResources.LoraStep(shape, Weights, 4, tokens, saving: false);
        var saving = RunResources.LoraStep(shape, Weights, 4, tokens, saving: true);
        var available = AvailableMemory.Current();
        Console.WriteLine($"memory         inference ({tokens} tokens): about {ByteSize.Format(fp32.Total)} in fp32 ({fp32}); {ByteSize.Format(bf16.Total)} with --dtype bf16");
        Console.WriteLine($"               LoRA step (r 8, default targets, 4 x {tokens} tokens): about {ByteSize.Format(lora.Total)} ({lora}); " +
                          $"{ByteSize.Format(saving.Total)} with --base-dtype bf16 --gradient-checkpointing ({saving})");
        bool gguf = (found.Base?.Path ?? LanguageModelFolder.BaseModel(found.FineTuned!)).EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        if (gguf)
        {
            var stored = LanguageModelMemory.Inference(found, WeightStorage.AsStored, 1, tokens);
            Console.WriteLine($"               with --dtype stored (the default for a GGUF: its blocks memory-mapped): about {ByteSize.Format(stored.Total)} ({stored})");
        }
        else
        {
            var q8 = LanguageModelMemory.Inference(found, WeightStorage.Quantized(Checkpoints.Gguf.GgufTensorType.Q8_0), 1, tokens);
            Console.WriteLine($"               with --dtype q8_0 (the matrices quantized on load, as llama.cpp quantizes them): about {ByteSize.Format(q8.Total)} ({q8})");
        }
        Console.WriteLine($"               {available}");
        // A GGUF is described as stored (mapped, nothing read); a folder in fp32, or bf16 when fp32 would not fit.
        WeightStorage dtype = gguf ? WeightStorage.AsStored : fp32.Total <= available.Bytes ? ScalarType.Float32 : ScalarType.BFloat16;
        if (!gguf)
            (dtype.Dtype == ScalarType.Float32 ? fp32 : bf16).EnsureFits(available, $"info with {spec} in {dtype} (it loads the weights to describe them)",
                dtype.Dtype == ScalarType.Float32 ? [] : ["nothing smaller: info loads a folder in bf16 at the least"]);
        using var lm = LanguageModelFolder.Load(found, dtype);
        if (!gguf && dtype.Dtype != ScalarType.Float32) Console.WriteLine($"note           loaded in bf16: {ByteSize.Format(fp32Bytes)} of fp32 weights would not fit");
        var i = lm.Model.Info;
        // Counted from the file's header for a GGUF (its matrices are mapped blocks, not parameters), from the module otherwise.
        long parameters = gguf && found.Base is { } file
            ? Models.Decoders.Gguf.GgufModelMap.Open(file.Path).Tensors.Sum(m => m.Shape.Aggregate(1L, (a, d) => a * d))
            : lm.Model.Module.parameters().Sum(p => p.numel());
        Console.WriteLine($"model          {spec}");
        Console.WriteLine($"architecture   {i.Family}: {i.Layers} layers, hidden {i.HiddenSize}, {i.Heads} heads / {i.KeyValueHeads} key-value heads " +
                          $"(head dim {i.HeadDim}), feed-forward {i.IntermediateSize}, {(i.TiedEmbeddings ? "tied" : "separate")} output embeddings");
        Console.WriteLine($"context        {i.ContextLength:N0} tokens");
        Console.WriteLine($"vocabulary     {i.VocabSize:N0} (tokenizer {lm.Tokenizer.VocabSize:N0}; BOS {Describe(lm.Tokenizer.BosId)}, EOS {Describe(lm.Tokenizer.EosId)}, " +
                          $"BOS added: {(lm.Tokenizer.AddBos ? "yes" : "no")})");
        Console.WriteLine($"chat template  {(lm.Template is null ? "none" : lm.Template.Source)}");
        Console.WriteLine($"parameters     {parameters:N0}");
        Console.WriteLine($"weights from   {lm.Source}");
        foreach (var note in lm.Notes) Console.WriteLine($"note           {note}");
        foreach (var line in NativeLines()) Console.WriteLine(line);
        return 0;

        string Describe(int? id) => id is { } v ? $"{v} {lm.Tokenizer.IdToToken(v)}" : "none";
    }

    static int CountLines(byte[] text)
    {
        int lines = text.Count(b => b == (byte)'\n');
        return text.Length > 0 && text[^1] != (byte)'\n' ? lines + 1 : lines;
    }
}
