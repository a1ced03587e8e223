using System.CommandLine;
using SharpTune.Cli.Commands;
using SharpTune.Native;

namespace SharpTune.Cli;

public static class Program
{
    /// <summary>The process's entry point: settles the C allocator (which may restart the process in place, see
    /// <see cref="NativeAllocator"/>), then runs the command.</summary>
    public static int Main(string[] args)
    {
        if (NativeAllocator.EnsureForEntryPoint() is { } allocatorError)
        {
            Console.Error.WriteLine($"error: {allocatorError}");
            return CommandRunner.UserError;
        }
        return Run(args);
    }

    /// <summary>Runs one command in this process (what tests call: <see cref="Main"/> may replace the process).</summary>
    public static int Run(string[] args)
    {
        MklDispatch.Ensure();   // before anything loads libtorch
        if (EnvironmentChoiceError() is { } error)
        {
            Console.Error.WriteLine($"error: {error}");
            return CommandRunner.UserError;
        }
        int code = CreateRoot().Parse(args).Invoke();
        // Under mpirun: MPI_Finalize, or MPI_Abort with a failed rank's code. A run stopped by a signal stopped on every
        // rank after the same step, so its ranks leave the job normally.
        return SharpTune.Distributed.World.Exit(code, together: code is CommandRunner.Interrupted or CommandRunner.Terminated);
    }

    /// <summary>
    /// The process-wide choices read from the environment (SHARPTUNE_KERNELS, SHARPTUNE_TILE_DTYPE), resolved before any
    /// command runs, so a mistyped value stops the tool at once with its name rather than deep inside a product.
    /// </summary>
    static string? EnvironmentChoiceError()
    {
        try
        {
            _ = SharpTune.Quantization.QuantizedKernels.Path;
            _ = SharpTune.Models.Quantized.QuantizedOps.DefaultTileDtype;
            return null;
        }
        catch (TypeInitializationException e) when (e.InnerException is InvalidOperationException inner)
        {
            return inner.Message;
        }
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
