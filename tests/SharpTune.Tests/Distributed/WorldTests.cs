using SharpTune.Distributed;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Distributed;

[Collection(nameof(ConsoleCollection))]
public class WorldTests
{
    [Fact]
    public void Without_a_launcher_a_run_is_a_job_of_one_and_never_loads_MPI()
    {
        Assert.False(Launcher.Detected);
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 16, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 8, 2);
        var (code, output, error) = CliHarness.Run("train", "--model", model, "--train", train, "--validation", validation,
            "--max-steps", "2", "--batch-size", "8", "--out", temp.File("run"));
        Assert.True(code == 0, error + output);
        Assert.DoesNotContain("data parallel", output);
        Assert.IsType<SingleProcess>(World.Current);
        Assert.False(World.Started);
        Assert.DoesNotContain(File.ReadLines("/proc/self/maps"), line => line.Contains(OpenMpi.LibraryName));
        Assert.Equal(3, World.Exit(3));   // a single process's exit code passes through
    }
}
