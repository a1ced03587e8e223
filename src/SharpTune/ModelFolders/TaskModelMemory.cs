using SharpTune.Checkpoints;
using SharpTune.Models.Bert;
using SharpTune.Models.Memory;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>The memory check of commands that load a fine-tuned task model (eval, predict): its encoder's config, read alone.</summary>
public static class TaskModelMemory
{
    /// <summary>
    /// Throws <see cref="NotEnoughMemoryException"/> when the task model in <paramref name="folder"/> (or a run folder's best/,
    /// final/) would not fit for <paramref name="what"/> at <paramref name="batch"/> x <paramref name="tokens"/>; returns the
    /// estimate, or null when the folder has no config.json (the load then says what is missing).
    /// </summary>
    public static MemoryEstimate? EnsureFits(string folder, string what, int batch = 32, int tokens = 128)
    {
        if (!Directory.Exists(folder)) return null;
        string config = Path.Combine(TaskModelFolder.Resolve(folder), HuggingFaceCheckpoint.ConfigFile);
        if (!File.Exists(config)) return null;
        var shape = BertConfig.Load(config);
        // An adapter's model is its base (of this shape) with the adapter built in: the weights count once.
        var estimate = MemoryEstimator.Inference(shape, MemoryEstimator.WeightBytes(shape, ScalarType.Float32), ScalarType.Float32, batch,
            Math.Min(tokens, shape.MaxPositionEmbeddings));
        estimate.EnsureFits(AvailableMemory.Current(), $"{what} with {folder}", []);
        return estimate;
    }
}
