using SharpTune.ModelFolders;
using System.CommandLine;
using SharpTune.Checkpoints;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune export --model RUN_DIR --out DIR</c>: a LoRA or IA3 model merged into a plain Hugging Face model.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Run folder (its best/ model is used) or saved model folder, trained with lora or ia3", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for the merged model (Hugging Face layout)", Required = true };
        var command = new Command("export", "Merge a LoRA or IA3 adapter into its base and save a plain Hugging Face model.") { model, output };
        command.SetAction(result => CommandRunner.Run(() =>
        {
            MergedTaskExport.Export(result.GetValue(model)!, result.GetValue(output)!);
            Console.WriteLine($"merged model written to {Path.GetFullPath(result.GetValue(output)!)}");
            return 0;
        }));
        return command;
    }
}
