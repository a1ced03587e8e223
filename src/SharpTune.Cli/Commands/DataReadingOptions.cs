using System.CommandLine;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// The data options <c>eval</c> and <c>predict</c> share with <c>train</c> (same names, help and parsing, from
/// <see cref="OptionCatalog"/>); each defaults to what the model was trained with.
/// </summary>
sealed class DataReadingOptions
{
    static readonly string[] Names = ["format", "text-column", "text-pair-column", "label-column", "label-separator", "skip-bad-rows"];

    readonly List<(OptionSpec Spec, Option Option)> options = Names.Select(name =>
    {
        var spec = OptionCatalog.Get(name);
        string help = spec.Kind == OptionValueKind.Flag ? spec.Help : $"{spec.Help.Split(" (default")[0]} (default: as the model was trained)";
        Option option = spec.Kind == OptionValueKind.Flag
            ? new Option<bool>(spec.Flag) { Description = help }
            : new Option<string>(spec.Flag) { Description = help };
        return (spec, option);
    }).ToList();

    public void AddTo(Command command)
    {
        foreach (var (_, option) in options) command.Options.Add(option);
    }

    /// <summary>What the command line gives, parsed and checked as <c>train</c> would.</summary>
    public DataReading Read(ParseResult result)
    {
        var values = new FineTuneOptions();
        var given = new HashSet<string>();
        foreach (var (spec, option) in options)
        {
            if (result.GetResult(option) is not { Implicit: false }) continue;
            JsonNode? value = option is Option<bool> flag ? JsonValue.Create(result.GetValue(flag)) : JsonValue.Create(result.GetValue((Option<string>)option));
            values = spec.Set(values, value, spec.Flag);
            given.Add(spec.Name);
        }
        return new DataReading
        {
            Format = given.Contains("format") ? values.Format : null,
            TextColumn = given.Contains("text-column") ? values.TextColumn : null,
            TextPairColumn = given.Contains("text-pair-column") ? values.TextPairColumn : null,
            LabelColumn = given.Contains("label-column") ? values.LabelColumn : null,
            LabelSeparator = given.Contains("label-separator") ? values.LabelSeparator : null,
            SkipBadRows = given.Contains("skip-bad-rows") ? values.SkipBadRows : null,
        };
    }
}
