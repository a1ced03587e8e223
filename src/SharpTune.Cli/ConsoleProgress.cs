using SharpTune.Heads;
using SharpTune.Training;
using Spectre.Console;

namespace SharpTune.Cli;

/// <summary>
/// Shows training as it goes: a live progress bar with loss, learning rate, throughput and ETA when the
/// console is interactive, plain log lines when output is redirected (where Spectre.Console prints nothing).
/// </summary>
public sealed class ConsoleProgress : ITrainerCallback
{
    ProgressTask? bar;
    DateTime started = DateTime.UtcNow;
    long firstStep;

    public static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>Runs <paramref name="work"/> under a progress display when interactive.</summary>
    public T Run<T>(Func<T> work)
    {
        if (!Interactive) return work();
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(context =>
            {
                bar = context.AddTask("training", maxValue: 1);
                result = work();
                bar.StopTask();
            });
        return result;
    }

    public static void Say(string message)
    {
        if (Interactive) AnsiConsole.MarkupLine(Markup.Escape(message));
        else Console.WriteLine(message);
    }

    public void OnTrainBegin(TrainerState state, TorchSharp.torch.nn.Module model)
    {
        started = DateTime.UtcNow;
        firstStep = state.GlobalStep;
        if (bar is not null)
        {
            bar.MaxValue = state.TotalSteps;
            bar.Value = state.GlobalStep;
        }
        else if (state.GlobalStep > 0) Console.WriteLine($"resuming at step {state.GlobalStep} of {state.TotalSteps}");
    }

    public void OnStep(StepInfo step)
    {
        double elapsed = (DateTime.UtcNow - started).TotalSeconds;
        double perStep = elapsed / Math.Max(1, step.Step - firstStep);
        var eta = TimeSpan.FromSeconds(perStep * (step.TotalSteps - step.Step));
        string line = $"step {step.Step}/{step.TotalSteps} epoch {step.Epoch + 1} loss {step.Loss:F4} lr {step.LearningRate:E2} " +
                      $"{step.ExamplesPerSecond:F1} ex/s {step.TokensPerSecond:F0} tok/s eta {eta:hh\\:mm\\:ss}";
        if (bar is null)
        {
            Console.WriteLine(line);
            return;
        }
        bar.Value = step.Step;
        bar.Description = Markup.Escape($"loss {step.Loss:F4} lr {step.LearningRate:E1} {step.TokensPerSecond:F0} tok/s");
    }

    public void OnEvaluate(EvaluationInfo evaluation)
    {
        string metrics = string.Join(" ", evaluation.Metrics.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value:F4}"));
        Say($"eval at step {evaluation.Step} ({evaluation.Trigger}): {metrics}{(evaluation.IsBest ? "  [best]" : "")}");
    }
}
