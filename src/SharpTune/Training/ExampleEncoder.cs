using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Tokenization;

namespace SharpTune.Training;

/// <summary>The encoded examples and what encoding had to do to them.</summary>
/// <param name="Truncated">Examples cut to the max length.</param>
/// <param name="DroppedWords">Token tasks: words lost entirely to truncation (they get no prediction).</param>
public sealed record EncodedData(IReadOnlyList<EncodedExample> Examples, int Truncated, int DroppedWords);

/// <summary>Tokenizes examples and maps their labels to ids for a head.</summary>
public sealed class ExampleEncoder(IEncoderTokenizer tokenizer, HeadOptions head, LabelMap? labels, int maxLength, string labelSeparator = "|")
{
    readonly ITaskHead task = TaskHeads.Create(head);

    /// <summary>Encodes texts. With <paramref name="withLabels"/> false (prediction) labels are ignored.</summary>
    public EncodedData Encode(IReadOnlyList<TextExample> examples, bool withLabels = true)
    {
        var result = new List<EncodedExample>(examples.Count);
        int truncated = 0;
        foreach (var example in examples)
        {
            var encoded = tokenizer.Encode(example.Text, example.TextPair, maxLength);
            if (encoded.Truncated) truncated++;
            var ids = Array.ConvertAll(encoded.InputIds, i => (long)i);
            var types = Array.ConvertAll(encoded.TokenTypeIds, i => (long)i);
            var item = new EncodedExample(ids, types, example.Source);
            if (withLabels)
            {
                string label = example.Label ?? throw new DataFormatException(example.Source, "the example has no label");
                var target = task.ParseLabel(label, labels, labelSeparator, example.Source);
                item = item with { ClassId = target.ClassId, ClassIds = target.ClassIds, Value = target.Value };
            }
            result.Add(item);
        }
        return new EncodedData(result, truncated, 0);
    }

    /// <summary>Encodes word sequences; each word's label goes on its first sub-word.</summary>
    public EncodedData Encode(IReadOnlyList<TokenExample> examples, bool withLabels = true)
    {
        var result = new List<EncodedExample>(examples.Count);
        int truncated = 0, dropped = 0;
        foreach (var example in examples)
        {
            var encoded = tokenizer.EncodeWords(example.Words, maxLength);
            if (encoded.Truncated) truncated++;
            dropped += encoded.DroppedWordCount;
            var starts = new List<int>();
            for (int t = 0; t < encoded.InputIds.Length; t++)
                if (encoded.WordIds[t] >= 0 && encoded.IsFirstSubword[t]) starts.Add(t);
            int[]? wordLabels = null;
            if (withLabels)
            {
                var names = example.Labels ?? throw new DataFormatException(example.Source, "the sentence has no labels");
                wordLabels = starts.Select(t => Labels.GetId(names[encoded.WordIds[t]], example.Source)).ToArray();
            }
            result.Add(new EncodedExample(
                Array.ConvertAll(encoded.InputIds, i => (long)i), Array.ConvertAll(encoded.TokenTypeIds, i => (long)i),
                example.Source, WordStarts: starts.ToArray(), WordLabels: wordLabels));
        }
        return new EncodedData(result, truncated, dropped);
    }

    LabelMap Labels => labels ?? throw new InvalidOperationException("A label map is needed to encode labels.");
}
