using SharpTune.Checkpoints;

namespace SharpTune.Models.Memory;

/// <summary>
/// The memory a command will need, by part, in bytes: the weights as held, the gradients and optimizer state of what
/// trains, the activations (and the loss's logits) of a step or a forward pass, and the process's own runtime
/// (.NET, libtorch, the tokenizer). <see cref="MemoryEstimator"/> computes it from a model's shape before any weight is read.
/// </summary>
public sealed record MemoryEstimate(long Weights, long Gradients, long Optimizer, long Activations, long Runtime)
{
    public long Total => Weights + Gradients + Optimizer + Activations + Runtime;

    /// <summary><c>1.98 GB weights + 18 MB gradients + 35 MB optimizer + 2.2 GB activations + 200 MB runtime = 4.4 GB</c>.</summary>
    public override string ToString()
    {
        var parts = new List<string> { $"{ByteSize.Format(Weights)} weights" };
        if (Gradients > 0) parts.Add($"{ByteSize.Format(Gradients)} gradients");
        if (Optimizer > 0) parts.Add($"{ByteSize.Format(Optimizer)} optimizer state");
        parts.Add($"{ByteSize.Format(Activations)} activations");
        parts.Add($"{ByteSize.Format(Runtime)} runtime");
        return $"{string.Join(" + ", parts)} = {ByteSize.Format(Total)}";
    }

    /// <summary>
    /// Throws <see cref="NotEnoughMemoryException"/> when the estimate is more than <paramref name="available"/>:
    /// <paramref name="what"/> names the work (<c>generate with model.gguf in fp32</c>) and <paramref name="remedies"/>
    /// the options that would make it fit.
    /// </summary>
    public void EnsureFits(MemoryAvailability available, string what, IReadOnlyList<string> remedies)
    {
        if (Total <= available.Bytes) return;
        throw new NotEnoughMemoryException(
            $"not enough memory for {what}: it needs about {ByteSize.Format(Total)} ({this}), and {available}. " +
            (remedies.Count > 0 ? $"What would need less: {string.Join("; ", remedies)}. " : "") +
            $"(If the estimate is wrong for this machine, {AvailableMemory.Variable}=BYTES overrides what is taken as available.)",
            this, available);
    }
}

/// <summary>A command refused before it allocates: the model and the work asked of it need more memory than the machine has.</summary>
public sealed class NotEnoughMemoryException(string message, MemoryEstimate estimate, MemoryAvailability available) : Exception(message)
{
    public MemoryEstimate Estimate { get; } = estimate;
    public MemoryAvailability Available { get; } = available;
}
