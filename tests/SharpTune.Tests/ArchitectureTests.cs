using System.Text.RegularExpressions;

namespace SharpTune.Tests;

/// <summary>
/// The library's namespaces form a ladder: file formats, tokenizers, data and metrics at the bottom, then the model
/// families, then heads and methods, then saving, training and inference. A namespace may use only those below it,
/// so a new family or method never needs an edit above its own rung.
/// </summary>
public class ArchitectureTests
{
    static readonly Dictionary<string, int> Rungs = new()
    {
        ["Native"] = 0, ["Distributed"] = 0, ["Checkpoints"] = 0, ["Data"] = 0, ["Metrics"] = 0, ["Tokenization"] = 0,
        ["Quantization"] = 1,
        ["Models"] = 2,
        ["Heads"] = 3, ["Generation"] = 3,
        ["Peft"] = 4,
        ["ModelFolders"] = 5,
        ["Training"] = 6,
        ["Inference"] = 7,
    };

    [Fact]
    public void Namespaces_use_only_the_rungs_below_them()
    {
        string src = Path.Combine(RepositoryRoot(), "src", "SharpTune");
        var violations = new List<string>();
        foreach (string file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(src, file);
            string top = relative.Split(Path.DirectorySeparatorChar)[0];
            if (top is "bin" or "obj" || !relative.Contains(Path.DirectorySeparatorChar)) continue;
            Assert.True(Rungs.ContainsKey(top), $"{relative}: the folder {top} has no rung in the ladder; add it to {nameof(ArchitectureTests)}");
            foreach (Match used in Regex.Matches(File.ReadAllText(file), @"\bSharpTune\.([A-Z]\w*)"))
            {
                string other = used.Groups[1].Value;
                if (other == top || !Rungs.TryGetValue(other, out int rung)) continue;
                if (rung >= Rungs[top]) violations.Add($"{relative} ({top}, rung {Rungs[top]}) uses {other} (rung {rung})");
            }
        }
        Assert.True(violations.Count == 0, "dependencies that climb the ladder:\n" + string.Join("\n", violations.Distinct()));
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("the repository root (SharpTune.slnx) is not above the test binaries");
    }
}
