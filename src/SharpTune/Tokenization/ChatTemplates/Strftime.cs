using System.Globalization;
using System.Text;

namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// Python's <c>datetime.strftime</c> for the directives chat templates use (Llama 3.1+ writes
/// <c>strftime_now("%d %b %Y")</c>), in the C locale. transformers' <c>strftime_now</c> uses local time.
/// </summary>
static class Strftime
{
    public static string Format(DateTime time, string format)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length) { sb.Append(format[i]); continue; }
            char d = format[++i];
            sb.Append(d switch
            {
                'd' => time.Day.ToString("00", inv),
                'm' => time.Month.ToString("00", inv),
                'Y' => time.Year.ToString("0000", inv),
                'y' => (time.Year % 100).ToString("00", inv),
                'b' or 'h' => time.ToString("MMM", inv),
                'B' => time.ToString("MMMM", inv),
                'a' => time.ToString("ddd", inv),
                'A' => time.ToString("dddd", inv),
                'H' => time.Hour.ToString("00", inv),
                'I' => ((time.Hour + 11) % 12 + 1).ToString("00", inv),
                'M' => time.Minute.ToString("00", inv),
                'S' => time.Second.ToString("00", inv),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => time.DayOfYear.ToString("000", inv),
                'f' => (time.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv),
                'w' => ((int)time.DayOfWeek).ToString(inv),
                'F' => time.ToString("yyyy-MM-dd", inv),
                'T' => time.ToString("HH:mm:ss", inv),
                '%' => "%",
                _ => throw TemplateError.Unsupported($"strftime directive '%{d}' is not supported"),
            });
        }
        return sb.ToString();
    }
}
