using SharpTune.Heads;
using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// The trainer's step, outside the trainer so it can be timed whole and in parts: collate a batch of tokenized
/// examples, forward, loss, backward, clip the gradient norm, AdamW step, zero the gradients. Examples are
/// random token ids of the full length (speed does not depend on the text).
/// </summary>
public sealed class TaskModelStep(TaskModel model, int batch, int length, double maxGradNorm = 1.0)
{
    readonly optim.Optimizer optimizer = OptimizerFactory.Create("adamw", model, 5e-5, 0.01, 0);
    readonly List<Parameter> trainable = model.parameters().Where(p => p.requires_grad).ToList();
    readonly List<EncodedExample> examples = Examples(batch, length, model.Head.NumLabels);
    readonly List<EncodedExample> tiny = Examples(1, 8, model.Head.NumLabels);

    static List<EncodedExample> Examples(int count, int length, int labels)
    {
        var random = new Random(count * 7919 + length);
        return Enumerable.Range(0, count).Select(i => new EncodedExample(
            Enumerable.Range(0, length).Select(_ => (long)random.Next(1000, 29000)).ToArray(), new long[length], $"random:{i}",
            ClassId: i % labels)).ToList();
    }

    void ForwardBackward(IReadOnlyList<EncodedExample> data)
    {
        using var scope = NewDisposeScope();
        var (inputs, labels) = Collator.Collate(data, model.Head, 0);
        model.Loss(model.forward(inputs), labels, inputs).backward();
    }

    void Update()
    {
        using var scope = NewDisposeScope();
        if (maxGradNorm > 0) nn.utils.clip_grad_norm_(trainable, maxGradNorm);
        optimizer.step();
        optimizer.zero_grad();
    }

    /// <summary>One whole step at the full batch.</summary>
    public double StepSeconds(int repeats) => Timing.Seconds(RunStep, repeats);

    /// <summary>Runs one whole step at the full batch, in training mode.</summary>
    public void RunStep()
    {
        model.train();
        ForwardBackward(examples);
        Update();
    }

    /// <summary>Forward and backward of a single 8-token sequence: what a step costs when there is almost no arithmetic.</summary>
    public double SmallForwardBackwardSeconds(int repeats)
    {
        model.train();
        double seconds = Timing.Seconds(() => ForwardBackward(tiny), Math.Max(repeats, 5));
        optimizer.zero_grad();
        return seconds;
    }

    /// <summary>Clipping, the AdamW step and zeroing, each timed with the gradients of a real backward in place.</summary>
    public (double Clip, double Step, double Zero) OptimizerSeconds(int repeats)
    {
        model.train();
        double clip = double.MaxValue, step = double.MaxValue, zero = double.MaxValue;
        for (int i = 0; i <= repeats; i++)
        {
            ForwardBackward(examples);
            using var scope = NewDisposeScope();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            if (maxGradNorm > 0) nn.utils.clip_grad_norm_(trainable, maxGradNorm);
            double c = clock.Elapsed.TotalSeconds;
            clock.Restart();
            optimizer.step();
            double s = clock.Elapsed.TotalSeconds;
            clock.Restart();
            optimizer.zero_grad();
            double z = clock.Elapsed.TotalSeconds;
            if (i == 0) continue; // warm-up: AdamW allocates its moments on the first step
            (clip, step, zero) = (Math.Min(clip, c), Math.Min(step, s), Math.Min(zero, z));
        }
        return (clip, step, zero);
    }

    /// <summary>Building the batch tensors from the examples.</summary>
    public double CollateSeconds(int repeats) => Timing.Seconds(() =>
    {
        using var scope = NewDisposeScope();
        Collator.Collate(examples, model.Head, 0);
    }, Math.Max(repeats, 5));
}
