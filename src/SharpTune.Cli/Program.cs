using System.CommandLine;
using SharpTune.Cli.Commands;
using SharpTune.Native;

namespace SharpTune.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        MklDispatch.Ensure();   // before anything loads libtorch
        var root = new RootCommand("SharpTune: fine-tune pretrained transformer models locally, with no data leaving the machine.");
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        return root.Parse(args).Invoke();
    }
}
