using System.Globalization;

namespace SharpTune.Checkpoints;

/// <summary>Byte counts as people write and read them: <c>512M</c>, <c>2G</c>, <c>1.5GiB</c>, <c>3000000000</c>; 1.23 GB.</summary>
public static class ByteSize
{
    /// <summary>
    /// Parses a size: a number of bytes, or a number with K, M, G or T (powers of 1024, as <c>free</c> and cgroups
    /// count; <c>KiB</c>, <c>KB</c>, <c>MiB</c> ... mean the same). Throws <see cref="FormatException"/> naming <paramref name="source"/>.
    /// </summary>
    public static long Parse(string text, string source)
    {
        string t = text.Trim();
        int end = 0;
        while (end < t.Length && (char.IsDigit(t[end]) || t[end] == '.')) end++;
        string unit = t[end..].Trim().ToUpperInvariant();
        if (unit.EndsWith("IB", StringComparison.Ordinal)) unit = unit[..^2];
        else if (unit.Length == 2 && unit.EndsWith('B')) unit = unit[..^1];
        else if (unit == "B") unit = "";
        int power = unit switch { "" => 0, "K" => 1, "M" => 2, "G" => 3, "T" => 4, _ => -1 };
        if (end == 0 || power < 0 || !double.TryParse(t[..end], NumberStyles.Float, CultureInfo.InvariantCulture, out double number) || number < 0)
            throw new FormatException($"{source}: '{text}' is not a size (a number of bytes, or with K, M, G or T: 512M, 2G, 1.5GiB)");
        return (long)(number * Math.Pow(1024, power));
    }

    /// <summary>A size for messages: <c>812 MB</c>, <c>30.5 GB</c> (decimal units, as the docs' tables).</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 10_000_000_000 => FormattableString.Invariant($"{bytes / 1e9:F1} GB"),
        >= 1_000_000_000 => FormattableString.Invariant($"{bytes / 1e9:F2} GB"),
        >= 1_000_000 => FormattableString.Invariant($"{bytes / 1e6:F0} MB"),
        >= 1_000 => FormattableString.Invariant($"{bytes / 1e3:F0} kB"),
        _ => FormattableString.Invariant($"{bytes} bytes"),
    };
}
