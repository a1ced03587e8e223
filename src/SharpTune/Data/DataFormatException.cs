namespace SharpTune.Data;

/// <summary>
/// A data file, or one row of it, that cannot be read. The message always starts with the location
/// (<c>path:line</c>, or the path alone for problems of the whole file) so a user can jump to the row.
/// Derives from <see cref="FormatException"/>, the framework's base for badly formed input, because
/// <see cref="InvalidDataException"/> is sealed; the CLI should catch both.
/// </summary>
public sealed class DataFormatException : FormatException
{
    public DataFormatException(string path, int line, string reason) : this($"{path}:{line}", reason) { }

    public DataFormatException(string location, string reason) : base($"{location}: {reason}")
    {
        Location = location;
        Reason = reason;
    }

    /// <summary><c>path:line</c> of the bad row, or the path when the whole file is at fault.</summary>
    public string Location { get; }

    /// <summary>What was wrong and what was expected, without the location.</summary>
    public string Reason { get; }
}
