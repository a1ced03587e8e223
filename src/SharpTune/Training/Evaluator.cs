using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>Loss and predictions of a model over a data set, in the data set's order.</summary>
public sealed record EvaluationOutput(double Loss, Prediction[] Predictions);

/// <summary>Runs a model over data in eval mode with no gradients.</summary>
public static class Evaluator
{
    public static EvaluationOutput Run(TaskModel model, IReadOnlyList<EncodedExample> data, int batchSize, long padId, bool withLoss = true)
    {
        bool wasTraining = model.training;
        model.eval();
        var predictions = new Prediction[data.Count];
        double lossSum = 0;
        long lossCount = 0;
        try
        {
            using var noGrad = no_grad();
            foreach (var indices in Batcher.EvaluationBatches(data, batchSize))
            {
                using var scope = NewDisposeScope();
                var batch = indices.Select(i => data[i]).ToList();
                var (inputs, labels) = Collator.Collate(batch, model.TaskHead, padId);
                var logits = model.forward(inputs);
                if (withLoss)
                {
                    lossSum += model.Loss(logits, labels, inputs).item<float>() * batch.Count;
                    lossCount += batch.Count;
                }
                var decoded = model.Predict(logits, inputs);
                for (int j = 0; j < indices.Length; j++) predictions[indices[j]] = decoded[j];
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return new EvaluationOutput(lossCount == 0 ? double.NaN : lossSum / lossCount, predictions);
    }
}
