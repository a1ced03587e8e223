using SharpTune.Training;

namespace SharpTune.Tests.Training;

public class RunFolderLockTests
{
    [Fact]
    public void A_locked_folder_is_refused_naming_the_holder_and_free_again_once_released()
    {
        using var temp = new TestModels.TempFolder();
        string run = temp.File("run");
        using (RunFolderLock.Acquire(run))
        {
            // The OS lock holds against any other open of the file, in this process too; the message reads the holder's id from it.
            var error = Assert.Throws<ArgumentException>(() => RunFolderLock.Acquire(run));
            Assert.Contains($"--out {run} is in use: process {Environment.ProcessId} is training in it", error.Message);
        }
        // The lock created the folder and nothing else was written: released, it leaves nothing behind.
        Assert.False(Directory.Exists(run));
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "metrics.jsonl"), "");
        using (RunFolderLock.Acquire(run)) { }
        Assert.Equal($"{Environment.ProcessId}\n", File.ReadAllText(Path.Combine(run, RunFolderLock.FileName)));   // a run's folder keeps it, unlocked
    }
}
