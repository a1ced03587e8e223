namespace SharpTune.Bench.Reporting;

/// <summary>Labels, titles and saves the bench's plots into docs/images, where the docs link them.</summary>
public static class Plots
{
    public static string Save(ScottPlot.Plot plot, string repoRoot, string fileName, string xLabel, string yLabel, string title)
    {
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = yLabel;
        plot.Title(title);
        plot.ShowLegend();
        string png = Path.Combine(repoRoot, "docs", "images", fileName);
        Directory.CreateDirectory(Path.GetDirectoryName(png)!);
        plot.SavePng(png, 800, 500);
        return png;
    }
}
