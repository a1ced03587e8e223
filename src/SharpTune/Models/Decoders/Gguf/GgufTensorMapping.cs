using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>How a tensor's GGUF layout differs from its Hugging Face layout; each case is applied both ways (read and write).</summary>
public enum GgufTensorTransform
{
    /// <summary>Same layout.</summary>
    None,
    /// <summary>HF GPT-2 Conv1D stores [in, out]; GGUF stores the Linear layout [out, in].</summary>
    Transposed,
    /// <summary>Llama q/k rows in llama.cpp's pair order (<see cref="GgufPermutation"/>) over <see cref="GgufTensorMapping.Heads"/> heads.</summary>
    PermutedRows,
    /// <summary>Gemma's norm weights: Hugging Face stores w and computes x·(1 + w); llama.cpp's converter writes 1 + w.</summary>
    PlusOne,
}

/// <summary>
/// One row of a family's two-way GGUF tensor table: a Hugging Face key, its GGUF tensor name, its Hugging Face shape and
/// the transform between the two layouts. The reader (<see cref="GgufModelMap"/>) and the writers (merged GGUF, LoRA
/// adapter GGUF) use the same rows, so a name or a transform is written once.
/// </summary>
public sealed record GgufTensorMapping(string HfKey, string GgufName, long[] Shape, GgufTensorTransform Transform = GgufTensorTransform.None, int Heads = 0)
{
    /// <summary>The shape the GGUF tensor has (PyTorch order): <see cref="Shape"/> in the file's layout.</summary>
    public long[] FileShape => Transform == GgufTensorTransform.Transposed ? [Shape[1], Shape[0]] : Shape;

    /// <summary>The file's tensor (float32) in Hugging Face's layout.</summary>
    public Tensor FromFile(Tensor file) => Transform switch
    {
        GgufTensorTransform.Transposed => file.t(),
        GgufTensorTransform.PermutedRows => GgufPermutation.FromLlamaCpp(file, Heads),
        GgufTensorTransform.PlusOne => file - 1,
        _ => file,
    };

    /// <summary>A Hugging Face tensor in the file's layout.</summary>
    public Tensor ToFile(Tensor hf) => Transform switch
    {
        GgufTensorTransform.Transposed => hf.t().contiguous(),
        GgufTensorTransform.PermutedRows => GgufPermutation.ToLlamaCpp(hf, Heads),
        GgufTensorTransform.PlusOne => hf + 1,
        _ => hf,
    };

    /// <summary>
    /// A LoRA pair's lora_B (out, r) for this weight as llama.cpp's adapter wants it: the pair is in Linear's convention
    /// whatever the base's layout (B A is (out, in), as GGUF's weight), so only a row permutation applies to it.
    /// </summary>
    public Tensor LoraBToFile(Tensor loraB) => Transform switch
    {
        GgufTensorTransform.PermutedRows => GgufPermutation.ToLlamaCpp(loraB, Heads),
        GgufTensorTransform.None or GgufTensorTransform.Transposed => loraB,
        _ => throw new NotSupportedException($"{HfKey}: a LoRA pair cannot be written for a {Transform} tensor"),
    };
}
