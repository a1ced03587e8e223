using System.CommandLine;


namespace SharpTune.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("SharpTune: fine-tune pretrained transformer models locally, with no data leaving the machine.");
        
        return root.Parse(args).Invoke();
    }
}
