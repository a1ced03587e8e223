namespace SharpTune.Heads;

/// <summary>The one place a task kind becomes a head class.</summary>
public static class TaskHeads
{
    /// <summary>
    /// The head for <paramref name="options"/> (validated here). <paramref name="crf"/>: the CRF layer a token head with
    /// <see cref="HeadOptions.UseCrf"/> scores paths with; a head made without it still collates and scores data.
    /// </summary>
    public static ITaskHead Create(HeadOptions options, ConditionalRandomField? crf = null)
    {
        options.Validate();
        if (crf is not null && !options.UseCrf) throw new ArgumentException("A CRF layer was given to a head without the CRF option.");
        return options.Kind switch
        {
            TaskKind.SingleLabel => new SequenceClassificationHead(options),
            TaskKind.MultiLabel => new MultiLabelClassificationHead(options),
            TaskKind.Regression => new RegressionHead(options),
            TaskKind.Tokens when options.UseCrf => new CrfTokenClassificationHead(options, crf),
            TaskKind.Tokens => new TokenClassificationHead(options),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "unknown task kind"),
        };
    }
}
