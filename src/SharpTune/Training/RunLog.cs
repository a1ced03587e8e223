using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Heads;

namespace SharpTune.Training;

/// <summary>
/// Appends one JSON object per line to <c>metrics.jsonl</c>: each logged step and each evaluation, flushed
/// at once so a killed run keeps its history. Also keeps the points for the curves plot.
/// </summary>
public sealed class RunLog : ITrainerCallback, IDisposable
{
    readonly TextWriter writer;
    static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public RunLog(string path, bool append)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        writer = new StreamWriter(path, append, new System.Text.UTF8Encoding(false)) { AutoFlush = true };
    }

    /// <summary>A log into <paramref name="writer"/> (<see cref="TextWriter.Null"/> for the ranks of a job that write no files).</summary>
    public RunLog(TextWriter writer) => this.writer = writer;

    public List<(long Step, double Loss)> TrainLoss { get; } = [];
    public List<(long Step, IReadOnlyDictionary<string, double> Metrics)> Evaluations { get; } = [];

    public void Write(string type, IReadOnlyDictionary<string, object?> fields)
    {
        var line = new JsonObject { ["type"] = type, ["time"] = DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture) };
        foreach (var (key, value) in fields) line[key] = JsonSerializer.SerializeToNode(value);
        writer.WriteLine(line.ToJsonString(Compact));
    }

    public void OnTrainBegin(TrainerState state, TorchSharp.torch.nn.Module model) =>
        Write("begin", new Dictionary<string, object?> { ["step"] = state.GlobalStep, ["total_steps"] = state.TotalSteps, ["resumed"] = state.GlobalStep > 0 });

    public void OnStep(StepInfo step)
    {
        TrainLoss.Add((step.Step, step.Loss));
        Write("train", new Dictionary<string, object?>
        {
            ["step"] = step.Step, ["epoch"] = step.Epoch + 1, ["loss"] = Round(step.Loss), ["learning_rate"] = step.LearningRate,
            ["examples_per_second"] = Round(step.ExamplesPerSecond), ["tokens_per_second"] = Round(step.TokensPerSecond),
        });
    }

    public void OnEvaluate(EvaluationInfo evaluation)
    {
        Evaluations.Add((evaluation.Step, evaluation.Metrics));
        var fields = new Dictionary<string, object?> { ["step"] = evaluation.Step, ["epoch"] = evaluation.Epoch, ["trigger"] = evaluation.Trigger, ["is_best"] = evaluation.IsBest };
        foreach (var (key, value) in evaluation.Metrics) fields[$"eval_{key}"] = double.IsFinite(value) ? Round(value) : null;
        Write("eval", fields);
    }

    static double Round(double value) => Math.Round(value, 6);

    public void Dispose() => writer.Dispose();
}
