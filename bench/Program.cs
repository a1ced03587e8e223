using SharpTune.Bench.Reporting;
using SharpTune.Bench.Suites;
using SharpTune.Bench.Suites.Decoders;
using SharpTune.Bench.Suites.Serving;

namespace SharpTune.Bench;

/// <summary>
/// dotnet run --project bench -c Release -- &lt;suite&gt; [--quick]
/// Runs one suite, prints its table and writes bench/results/&lt;suite&gt;.json (&lt;suite&gt;.quick.json with --quick), then
/// docs/benchmarks.md from every result there (a full run only). <c>-- docs</c> rewrites the page alone.
/// </summary>
public static class Program
{
    static SuiteRegistry CreateRegistry()
    {
        var mlnet = new MlNetSpamSuite();
        var full = new SharpTuneSpamSuite("full", epochs: 4, learningRate: 1e-4);
        var fullBf16 = new SharpTuneSpamSuite("full", epochs: 4, learningRate: 1e-4, name: "spam-full-bf16", precision: "bf16");
        var lora = new SharpTuneSpamSuite("lora", epochs: 4, learningRate: 1e-3);
        // Longer inputs: many misclassified messages spend their first 128 tokens on MIME and HTML scaffolding.
        var fullBf16Long = new SharpTuneSpamSuite("full", epochs: 4, learningRate: 1e-4, name: "spam-full-bf16-256", maxLength: 256, precision: "bf16");
        var speed = new SpeedSuite();
        var pos = new PosSuite(crf: false, epochs: 1, trainEvery: 1);
        var posCrf = new PosSuite(crf: true, epochs: 1, trainEvery: 1);
        var peft = new PeftComparisonSuite();
        var spam = new CompositeSuite("spam", "the ML.NET peer, SharpTune full fine-tuning (fp32 and bf16) and LoRA on the same SpamAssassin split", mlnet, full, fullBf16, lora);
        var registry = new SuiteRegistry();
        foreach (var suite in PeftComparisonSuite.MethodSuites()) registry.Register(suite);
        foreach (var suite in LoraVariantsSuite.VariantSuites()) registry.Register(suite);
        foreach (var config in DecoderMemorySuite.Configs) registry.Register(new DecoderTrainingStepSuite(config));
        foreach (var config in DecoderStoredTrainingSuite.Configs.Append(Decoder7bSuite.Lora)) registry.Register(new DecoderTrainingStepSuite(config));
        foreach (var suite in BrownPreferenceSuite.Objectives) registry.Register(suite);
        foreach (var (key, _) in DecoderSpeedSuite.Files) registry.Register(new StoredResidentSuite(key));
        foreach (var suite in BrownLmSuite.Methods) registry.Register(suite);
        foreach (var suite in LmVariantsSuite.Runs) registry.Register(suite);
        return registry
            .Register(mlnet).Register(full).Register(fullBf16).Register(lora).Register(fullBf16Long).Register(speed).Register(pos).Register(posCrf).Register(peft).Register(spam)
            .Register(new CompositeSuite("all", "speed, spam, pos (with and without CRF) and the method comparison", speed, spam, pos, posCrf, peft))
            .Register(new LoraVariantsSuite())
            .Register(new InteropExportSuite())
            .Register(new OnnxEmbeddingSuite())
            .Register(new DecoderSpeedSuite())
            .Register(new DecoderMemorySuite())
            .Register(new BrownPreferenceSuite())
            .Register(new DecoderLoadSuite())
            .Register(new ScalingSuite())
            .Register(new BrownLmSuite())
            .Register(new LmVariantsSuite())
            .Register(new QuantKernelSuite())
            .Register(new DecoderStoredTrainingSuite())
            .Register(new Decoder7bSuite())
            .Register(new Decoder7bGenerateSuite())
            .Register(new StoredPromptProfileSuite())
            .Register(new ServeLoadSuite());
    }

    public static int Main(string[] args)
    {
        // The allocator the CLI runs on (tcmalloc where installed; may restart the process in place), so the suites
        // measure what users get; SHARPTUNE_ALLOCATOR=system measures glibc's malloc.
        if (SharpTune.Native.NativeAllocator.EnsureForEntryPoint() is { } allocatorError)
        {
            Console.Error.WriteLine($"error: {allocatorError}");
            return 2;
        }
        SharpTune.Native.MklDispatch.Ensure();   // before anything loads libtorch
        if (Environment.GetEnvironmentVariable(DecoderLoadSuite.ChildVariable) is { } load) return DecoderLoadSuite.RunChild(load);
        SuiteRegistry registry = CreateRegistry();
        bool quick = args.Contains("--quick"), reuse = args.Contains("--reuse");
        string[] names = args.Where(a => a is not ("--quick" or "--reuse")).ToArray();
        bool help = names.Length == 1 && names[0] is "-h" or "--help" or "list";
        if (names.Length != 1 || help)
        {
            PrintUsage(registry, help ? Console.Out : Console.Error);
            return help ? 0 : 2;
        }
        if (names[0] == "docs")
        {
            string root = FindRepoRoot();
            Console.WriteLine($"updated {Path.GetRelativePath(root, BenchmarksDoc.Update(root))}");
            return 0;
        }
        if (names[0].StartsWith('-') || !registry.TryGet(names[0], out IBenchSuite suite))
        {
            Console.Error.WriteLine($"unknown suite or option '{names[0]}'.");
            PrintUsage(registry, Console.Error);
            return 2;
        }

        string repoRoot = FindRepoRoot();
        var context = new BenchContext(repoRoot, quick, reuse);
        try
        {
            Console.WriteLine($"suite {suite.Name}{(quick ? " (quick)" : "")}: {suite.Description}");
            BenchResult result = suite.Run(context);
            ResultTable.Print(result);
            string path = ResultWriter.Write(result, Path.Combine(repoRoot, "bench", "results"));
            Console.WriteLine($"\nwrote {Path.GetRelativePath(repoRoot, path)}");
            if (!quick) Console.WriteLine($"updated {Path.GetRelativePath(repoRoot, BenchmarksDoc.Update(repoRoot))}");
            return 0;
        }
        catch (Exception e) when (e is MissingDataException or InvalidDataException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    static void PrintUsage(SuiteRegistry registry, TextWriter output)
    {
        output.WriteLine("usage: dotnet run --project bench -c Release -- <suite> [--quick] [--reuse]");
        output.WriteLine("       dotnet run --project bench -c Release -- docs   (rewrites docs/benchmarks.md from bench/results/*.json)");
        output.WriteLine("  --reuse: lm and lm-variants take each run's result written after the pretrained base, lora-variants each variant's last result, instead of running it again");
        output.WriteLine("suites:");
        foreach (IBenchSuite s in registry.All) output.WriteLine($"  {s.Name,-14} {s.Description}");
    }

    /// <summary>The folder holding SharpTune.slnx, searched upwards from the working directory, then from the program.</summary>
    static string FindRepoRoot()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        }
        return Environment.CurrentDirectory;
    }
}
