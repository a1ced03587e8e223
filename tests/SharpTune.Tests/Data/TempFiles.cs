using System.Text;

namespace SharpTune.Tests.Data;

/// <summary>A scratch folder for data files written byte-exact (BOM, CRLF) and removed afterwards.</summary>
public sealed class TempFiles : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("sharptune-data-").FullName;

    public string Write(string name, string content, bool bom = false)
    {
        var bytes = Encoding.UTF8.GetBytes(content);
        if (bom) bytes = [0xEF, 0xBB, 0xBF, .. bytes];
        return WriteBytes(name, bytes);
    }

    public string WriteBytes(string name, byte[] bytes)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public string PathOf(string name) => Path.Combine(folder, name);

    public void Dispose() => Directory.Delete(folder, recursive: true);
}
