using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Tests.Distributed;
using SharpTune.Training;

namespace SharpTune.Tests.Cli;

/// <summary>
/// Ctrl-C, SIGTERM and a second process on a run folder, for real: the CLI in a process of its own, held after a known
/// step (SHARPTUNE_FAULT_HOLD_AFTER_STEP) while the test signals it.
/// </summary>
public class StopSignalsTests
{
    const int SIGINT = 2, SIGTERM = 15;

    static string[] TrainArgs(string model, string train, string validation, string run) =>
        ["train", "--model", model, "--train", train, "--validation", validation, "--max-steps", "12", "--eval-every", "5",
         "--batch-size", "4", "--seed", "7", "--log-every", "1", "--lr", "3e-3", "--out", run];

    /// <summary>metrics.jsonl without what depends on the clock.</summary>
    static List<string> Values(string run) => File.ReadLines(Path.Combine(run, "metrics.jsonl"))
        .Select(line => JsonNode.Parse(line)!.AsObject())
        .Where(o => o["type"]!.GetValue<string>() is "train" or "eval" or "final")
        .Select(o =>
        {
            foreach (string key in new[] { "time", "examples_per_second", "tokens_per_second" }) o.Remove(key);
            return o.ToJsonString();
        })
        .ToList();

    [Fact]
    public void Ctrl_C_finishes_the_step_saves_a_checkpoint_and_the_printed_resume_ends_as_the_uninterrupted_run()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string whole = temp.File("whole"), stopped = temp.File("stopped"), release = temp.File("release");

        var (code, output, error) = CliProcess.Run(TrainArgs(model, train, validation, whole));
        Assert.True(code == 0, error + output);

        using (var child = new Child(TrainArgs(model, train, validation, stopped), holdAfterStep: 2, release))
        {
            child.WaitFor("step 2/12");
            child.Signal(SIGINT);
            child.WaitFor("sharptune: SIGINT: stopping after the current step");
            File.WriteAllText(release, "");
            Assert.True(child.Exit() == 130, child.Output);
            // Step 3 ran (no evaluation due there) and was saved; nothing of the finished run's was written.
            Assert.Contains($"stopped by SIGINT after step 3 of 12; checkpoint saved in {Path.Combine(stopped, "checkpoints", "step-00000003")}", child.Output);
            Assert.Equal(Path.Combine(stopped, "checkpoints", "step-00000003"), new TrainingCheckpoint(stopped).Latest());
            Assert.False(Directory.Exists(Path.Combine(stopped, "final")));
            Assert.False(File.Exists(Path.Combine(stopped, "eval_final.json")));

            // The command it prints is the one to run: the same options, --out and --resume.
            string resume = child.Output.Split('\n').Single(l => l.StartsWith("to continue: ", StringComparison.Ordinal))["to continue: ".Length..].Trim();
            Assert.EndsWith($"--out {stopped} --resume", resume);
            var words = resume.Split(' ');
            Assert.Equal("sharptune", words[0]);
            (code, output, error) = CliProcess.Run(words[1..]);
            Assert.True(code == 0, error + output);
            Assert.Contains("resuming at step 3 of 12", output);
        }
        Assert.Equal(Values(whole), Values(stopped));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "eval_final.json")), File.ReadAllText(Path.Combine(stopped, "eval_final.json")));
    }

    [Fact]
    public void SIGTERM_stops_with_a_checkpoint_and_143_and_a_second_signal_ends_the_process_at_once()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);

        string run = temp.File("terminated"), release = temp.File("release");
        using (var child = new Child(TrainArgs(model, train, validation, run), holdAfterStep: 4, release))
        {
            child.WaitFor("step 4/12");
            child.Signal(SIGTERM);
            child.WaitFor("sharptune: SIGTERM: stopping after the current step");
            File.WriteAllText(release, "");
            Assert.True(child.Exit() == 143, child.Output);
            Assert.Contains($"stopped by SIGTERM after step 5 of 12; checkpoint saved in {Path.Combine(run, "checkpoints", "step-00000005")}", child.Output);
            Assert.Contains($"--out {run} --resume", child.Output);
        }

        // The second signal while the step is still under way (held): the process ends there, killed by the signal.
        run = temp.File("killed");
        using (var child = new Child(TrainArgs(model, train, validation, run), holdAfterStep: 2, temp.File("never")))
        {
            child.WaitFor("step 2/12");
            child.Signal(SIGINT);
            child.WaitFor("sharptune: SIGINT: stopping after the current step");
            child.Signal(SIGINT);
            int code = child.Exit();
            Assert.True(code is 130 or -2, $"exit {code}\n{child.Output}");
            Assert.DoesNotContain("to continue", child.Output);
            Assert.Null(new TrainingCheckpoint(run).Latest());   // no evaluation was due yet, and the stop saved nothing
        }
    }

    [Fact]
    public void A_second_process_on_a_run_folder_in_use_is_refused_with_the_holders_id_until_the_holder_is_killed()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string run = temp.File("run");

        // Held after step 6, with the checkpoint of step 5 written: what a second `train --resume` would continue from.
        using var child = new Child(TrainArgs(model, train, validation, run), holdAfterStep: 6, temp.File("never"));
        child.WaitFor("step 6/12");
        var (code, output, error) = CliHarness.Run([.. TrainArgs(model, train, validation, run), "--resume"]);
        Assert.True(code == 1, error + output);
        Assert.Contains($"--out {run} is in use: process {child.Id} is training in it", error);
        Assert.DoesNotContain("resuming", output);

        child.Kill();   // kill -9: no handler runs, and the OS releases the lock
        using (RunFolderLock.Acquire(run)) { }
    }

    [Fact]
    public void The_resume_command_is_the_command_line_with_out_and_resume_in_place_of_its_own_and_quoted_for_a_shell()
    {
        var parsed = SharpTune.Cli.Program.CreateRoot().Parse(["train", "--out", "old run", "--lr=3e-3", "--resume", "--train", "it's.csv", "--epochs", "2"]);
        Assert.Equal("sharptune train --lr 3e-3 --train 'it'\\''s.csv' --epochs 2 --out '/runs/my run' --resume",
            SharpTune.Cli.Commands.TrainCommand.ResumeCommand(parsed, "/runs/my run"));
        // The sample run: no options at all.
        Assert.Equal("sharptune train --out /runs/spam --resume", SharpTune.Cli.Commands.TrainCommand.ResumeCommand(SharpTune.Cli.Program.CreateRoot().Parse(["train"]), "/runs/spam"));
    }

    [MpiFact]
    [Trait("Category", "Mpi")]
    public void Under_mpirun_a_signal_to_one_rank_stops_every_rank_after_the_same_step_and_the_job_resumes_exactly()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string whole = temp.File("whole"), stopped = temp.File("stopped"), release = temp.File("release");
        string[] Args(string run) => [.. TrainArgs(model, train, validation, run), "--threads", "1"];

        var run = MpiRun.Run(2, Args(whole));
        Assert.True(run.Code == 0, run.Error + run.Out);

        var mpirun = new ProcessStartInfo(MpiRun.Mpirun!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["-np", "2", "--oversubscribe", "--bind-to", "none", "-x", HoldVariable, "dotnet", Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"), .. Args(stopped)])
            mpirun.ArgumentList.Add(a);
        mpirun.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = mpirun.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using (var job = new Child(mpirun, holdAfterStep: 2, release))
        {
            job.WaitFor("step 2/12");   // rank 0 holds there; rank 1 waits for it in the next step's collective
            // SIGTERM to rank 0 alone: rank 1 gets no signal and must stop after the same step, or wait forever.
            job.Signal(SIGTERM, Ranks(job.Id)[0]);
            job.WaitFor("sharptune: SIGTERM: stopping after the current step");
            File.WriteAllText(release, "");
            // Both ranks end with 143, rank 1 too (mpirun passes on a rank's non-zero code).
            Assert.True(job.Exit() == 143, job.Output);
            Assert.Contains($"stopped by SIGTERM after step 3 of 12; checkpoint saved in {Path.Combine(stopped, "checkpoints", "step-00000003")}", job.Output);
            Assert.DoesNotContain("failed (exit code", job.Output);   // left normally, not ended through MPI_Abort
        }

        run = MpiRun.Run(2, [.. Args(stopped), "--resume"]);
        Assert.True(run.Code == 0, run.Error + run.Out);
        Assert.Equal(Values(whole), Values(stopped));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "eval_final.json")), File.ReadAllText(Path.Combine(stopped, "eval_final.json")));
    }

    const string HoldVariable = "SHARPTUNE_FAULT_HOLD_AFTER_STEP";

    /// <summary>The process ids of an mpirun's ranks, by rank.</summary>
    static int[] Ranks(int mpirun)
    {
        var ranks = new SortedDictionary<int, int>();
        var clock = Stopwatch.StartNew();
        while (ranks.Count < 2 && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            foreach (string folder in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(folder), out int pid)) continue;
                try
                {
                    var environment = File.ReadAllText(Path.Combine(folder, "environ")).Split('\0');
                    if (!File.ReadAllText(Path.Combine(folder, "cmdline")).Contains("SharpTune.Cli.dll")) continue;
                    if (environment.FirstOrDefault(e => e.StartsWith("OMPI_COMM_WORLD_RANK=", StringComparison.Ordinal)) is not { } rank) continue;
                    if (!IsDescendant(pid, mpirun)) continue;   // not a rank of another test's job
                    ranks[int.Parse(rank["OMPI_COMM_WORLD_RANK=".Length..])] = pid;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // ended, or not ours
            }
        }
        return [.. ranks.Values];

        static bool IsDescendant(int pid, int ancestor)
        {
            for (int p = pid; p > 1;)
            {
                string stat = File.ReadAllText($"/proc/{p}/stat");
                p = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);   // the parent's id, after the state
                if (p == ancestor) return true;
            }
            return false;
        }
    }

    /// <summary>The CLI training in a child process, its stdout and stderr lines collected as they come.</summary>
    sealed class Child : IDisposable
    {
        readonly Process process;
        readonly BlockingCollection<string> lines = [];
        readonly StringBuilder output = new();

        public Child(IEnumerable<string> args, int holdAfterStep, string releaseFile)
            : this(CliProcess.Start(args), holdAfterStep, releaseFile) { }

        public Child(ProcessStartInfo start, int holdAfterStep, string releaseFile)
        {
            start.Environment[HoldVariable] = $"{holdAfterStep}:{releaseFile}";
            process = Process.Start(start)!;
            process.OutputDataReceived += (_, e) => Add(e.Data);
            process.ErrorDataReceived += (_, e) => Add(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public int Id => process.Id;

        public string Output
        {
            get { lock (output) return output.ToString(); }
        }

        void Add(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
            lines.Add(line);
        }

        /// <summary>Waits for a line that starts with <paramref name="start"/>.</summary>
        public void WaitFor(string start)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromMinutes(2))
            {
                if (lines.TryTake(out var line, TimeSpan.FromMilliseconds(200)) && line.StartsWith(start, StringComparison.Ordinal)) return;
                if (process.HasExited && lines.Count == 0) break;
            }
            throw new TimeoutException($"no line '{start}' from the CLI\n{Output}");
        }

        /// <summary>Sends <paramref name="signal"/> to the CLI, or to the process <paramref name="pid"/> (a rank).</summary>
        public void Signal(int signal, int? pid = null)
        {
            int target = pid ?? process.Id;
            // A process started in the background by a shell without job control inherits SIGINT ignored, and keeps it so.
            string ignored = File.ReadLines($"/proc/{target}/status").Single(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))[7..].Trim();
            Assert.True((Convert.ToUInt64(ignored, 16) & (1UL << (signal - 1))) == 0,
                $"signal {signal} is ignored by the CLI's process (inherited from this one): run the tests in the foreground");
            Assert.Equal(0, kill(target, signal));
        }

        public void Kill()
        {
            process.Kill();
            process.WaitForExit();
        }

        /// <summary>Waits for the process to end and returns its exit code (128 + the signal for one killed by a signal).</summary>
        public int Exit()
        {
            if (!process.WaitForExit(TimeSpan.FromMinutes(2))) throw new TimeoutException($"the CLI did not end\n{Output}");
            process.WaitForExit();   // and its output read to the end
            return process.ExitCode;
        }

        public void Dispose()
        {
            if (!process.HasExited) Kill();
            process.Dispose();
        }

        [DllImport("libc.so.6", SetLastError = true)]
        static extern int kill(int pid, int signal);
    }
}
