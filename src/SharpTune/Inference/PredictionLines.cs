using SharpTune.Data;

namespace SharpTune.Inference;

/// <summary>
/// Texts to predict given a line each (standard input, a pipe): the model's task reads the line as a text, or as words
/// separated by spaces for a token task. With several adapters loaded, a line <c>@name text</c> uses adapter
/// <c>name</c> for that line only. Blank lines are skipped; an unknown adapter names the line.
/// </summary>
public static class PredictionLines
{
    public static IReadOnlyList<LabeledPrediction> Predict(IEnumerable<(string Line, string Where)> lines,
        IReadOnlyDictionary<string, Predictor> predictors, string defaultName)
    {
        var results = new List<LabeledPrediction>();
        foreach (var (line, where) in lines)
        {
            string text = line.Trim();
            if (text.Length == 0) continue;
            string name = defaultName;
            if (text.StartsWith('@') && text.IndexOf(' ') is > 1 and var space)
            {
                name = text[1..space];
                text = text[(space + 1)..].Trim();
                if (!predictors.ContainsKey(name)) throw new ArgumentException($"{where}: no adapter named '{name}' ({string.Join(", ", predictors.Keys)})");
            }
            var predictor = predictors[name];
            var prediction = predictor.Spec.LabelsWords
                ? predictor.PredictWords([new TokenExample(text.Split(' ', StringSplitOptions.RemoveEmptyEntries), null, where)])[0]
                : predictor.PredictTexts([new TextExample(text, null, null, where)])[0];
            results.Add(predictors.Count > 1 ? prediction with { Source = $"{prediction.Source} ({name})" } : prediction);
        }
        return results;
    }
}
