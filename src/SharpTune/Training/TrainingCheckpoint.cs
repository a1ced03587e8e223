using SharpTune.Checkpoints;
using System.Text.Json;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Resumable training checkpoints in <c>RUN/checkpoints/</c>. Each is a folder <c>step-N</c> with the
/// trainable weights, the optimizer's state and the trainer's state. A folder is written under a
/// temporary name and renamed when complete; then the pointer file <c>latest</c> is replaced atomically,
/// and only after that are older folders removed. A crash or kill at any moment leaves <c>latest</c>
/// naming a complete checkpoint.
/// </summary>
public sealed class TrainingCheckpoint
{
    public const string WeightsFile = "weights.safetensors";
    public const string OptimizerFile = "optimizer.bin";
    public const string StateFile = "trainer_state.json";
    const string LatestFile = "latest";

    public TrainingCheckpoint(string runDirectory) => Directory = Path.Combine(runDirectory, "checkpoints");

    public string Directory { get; }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>The folder <see cref="Save"/> writes for <paramref name="state"/>.</summary>
    public string FolderOf(TrainerState state) => Path.Combine(Directory, NameOf(state));

    static string NameOf(TrainerState state) => $"step-{state.GlobalStep:D8}";

    public string Save(nn.Module model, optim.Optimizer optimizer, TrainerState state)
    {
        System.IO.Directory.CreateDirectory(Directory);
        string name = NameOf(state);
        string final = FolderOf(state);
        string temporary = Path.Combine(Directory, $".{name}.{Guid.NewGuid():N}.tmp");
        System.IO.Directory.CreateDirectory(temporary);
        try
        {
            // Only what training changes: frozen weights come from the base model on resume.
            var weights = model.named_parameters().Where(p => p.parameter.requires_grad)
                .ToDictionary(p => p.name, p => (Tensor)p.parameter);
            SafeTensors.Save(Path.Combine(temporary, WeightsFile), weights);
            AtomicFile.Write(Path.Combine(temporary, OptimizerFile), stream =>
            {
                using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
                ((TorchSharp.Modules.OptimizerHelper)optimizer).save_state_dict(writer);
            });
            AtomicFile.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state, Json));
            if (System.IO.Directory.Exists(final)) System.IO.Directory.Delete(final, recursive: true);
            System.IO.Directory.Move(temporary, final);
        }
        catch
        {
            try { System.IO.Directory.Delete(temporary, recursive: true); } catch (IOException) { }
            throw;
        }
        AtomicFile.WriteAllText(Path.Combine(Directory, LatestFile), name + "\n");
        foreach (string old in System.IO.Directory.GetDirectories(Directory))
        {
            string folder = Path.GetFileName(old);
            if (folder != name && (folder.StartsWith("step-", StringComparison.Ordinal) || folder.EndsWith(".tmp", StringComparison.Ordinal)))
                System.IO.Directory.Delete(old, recursive: true);
        }
        return final;
    }

    /// <summary>The latest complete checkpoint's folder, or null when the run has none.</summary>
    public string? Latest()
    {
        string pointer = Path.Combine(Directory, LatestFile);
        if (!File.Exists(pointer)) return null;
        string name = File.ReadAllText(pointer).Trim();
        string folder = Path.Combine(Directory, name);
        if (name.Length == 0 || name.Contains('/') || !System.IO.Directory.Exists(folder))
            throw new InvalidDataException($"{pointer} names checkpoint '{name}', which does not exist");
        return folder;
    }

    /// <summary>Restores weights, optimizer state and trainer state from <paramref name="folder"/>.</summary>
    public static TrainerState Load(string folder, nn.Module model, optim.Optimizer optimizer)
    {
        string statePath = Path.Combine(folder, StateFile);
        if (!File.Exists(statePath)) throw new InvalidDataException($"{folder}: checkpoint has no {StateFile}");
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath))
                ?? throw new InvalidDataException($"{statePath}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{statePath}: corrupted trainer state ({e.Message})", e);
        }
        var weights = SafeTensors.Load(Path.Combine(folder, WeightsFile));
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, parameter) in parameters.Where(p => p.Value.requires_grad))
            {
                if (!weights.TryGetValue(name, out var value))
                    throw new InvalidDataException($"{folder}: checkpoint lacks trainable weight {name}; was it written by a run with other options?");
                if (!value.shape.SequenceEqual(parameter.shape))
                    throw new InvalidDataException($"{folder}: weight {name} has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", parameter.shape)}]");
                parameter.copy_(value);
            }
        }
        foreach (var tensor in weights.Values) tensor.Dispose();
        string optimizerPath = Path.Combine(folder, OptimizerFile);
        try
        {
            using var reader = new BinaryReader(File.OpenRead(optimizerPath));
            ((TorchSharp.Modules.OptimizerHelper)optimizer).load_state_dict(reader);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{optimizerPath}: cannot restore the optimizer state ({e.Message})", e);
        }
        return state;
    }
}
