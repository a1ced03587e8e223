namespace SharpTune.Training;

/// <summary>Draws the training and validation curves of a run as a PNG (ScottPlot).</summary>
public static class CurvesPlot
{
    public static void Save(string path, RunLog log, string? metric)
    {
        var plot = new ScottPlot.Plot();
        if (log.TrainLoss.Count > 0)
        {
            var train = plot.Add.Scatter(log.TrainLoss.Select(p => (double)p.Step).ToArray(), log.TrainLoss.Select(p => p.Loss).ToArray());
            train.LegendText = "training loss";
        }
        var evaluations = log.Evaluations.Where(e => e.Metrics.ContainsKey("loss")).ToList();
        if (evaluations.Count > 0)
        {
            var validation = plot.Add.Scatter(evaluations.Select(e => (double)e.Step).ToArray(), evaluations.Select(e => e.Metrics["loss"]).ToArray());
            validation.LegendText = "validation loss";
        }
        if (metric is not null && metric != "loss")
        {
            var points = log.Evaluations.Where(e => e.Metrics.ContainsKey(metric)).ToList();
            if (points.Count > 0)
            {
                var curve = plot.Add.Scatter(points.Select(e => (double)e.Step).ToArray(), points.Select(e => e.Metrics[metric]).ToArray());
                curve.LegendText = $"validation {metric}";
                curve.Axes.YAxis = plot.Axes.Right;
                plot.Axes.Right.Label.Text = metric;
            }
        }
        plot.Axes.Bottom.Label.Text = "optimizer step";
        plot.Axes.Left.Label.Text = "loss";
        plot.Title("SharpTune training curves");
        plot.ShowLegend();
        plot.SavePng(path, 900, 500);
    }
}
