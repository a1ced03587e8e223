using System.CommandLine;
using SharpTune.Cli.Commands;
using SharpTune.Native;

namespace SharpTune.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        MklDispatch.Ensure();   // before anything loads libtorch
        int code = CreateRoot().Parse(args).Invoke();
        // Under mpirun: MPI_Finalize, or MPI_Abort with a failed rank's code. A run stopped by a signal stopped on every
        // rank after the same step, so its ranks leave the job normally.
        return SharpTune.Distributed.World.Exit(code, together: code is CommandRunner.Interrupted or CommandRunner.Terminated);
    }

    /// <summary>The command tree. The root is named as the installed tool: RootCommand would take the assembly's name, SharpTune.Cli.</summary>
    public static Command CreateRoot()
    {
        var root = new Command("sharptune", "SharpTune: fine-tune pretrained transformer models locally, with no data leaving the machine.")
        {
            new System.CommandLine.Help.HelpOption(),
            new VersionOption(),
        };
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        return root;
    }
}
