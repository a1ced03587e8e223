namespace SharpTune.Training.Tasks;

/// <summary>
/// A task <c>sharptune train --task</c> can run: its name, what it learns, the options only it takes (every other task
/// refuses them when given), and the recipe that runs it.
/// </summary>
/// <param name="Options">Names in <see cref="OptionCatalog"/> of the options that apply to this task and not to every task.</param>
public sealed record TaskDefinition(string Name, string Summary, IReadOnlyList<string> Options, Func<FineTuneOptions, IRunRecipe> CreateRecipe);

/// <summary>
/// Every task, one line each: a new task is its recipe's files plus a line here. The options table, the validation of
/// options and <see cref="FineTuneJob"/> read their tasks from here.
/// </summary>
public static class TaskRegistry
{
    static readonly List<TaskDefinition> Tasks = [];

    static TaskRegistry()
    {
        Register(new("classify", "one class per text or text pair (several with --multi-label)",
            ["multi-label", "pooling", "class-weights", "text-pair-column"], o => new HeadTaskRecipe(o, o.MultiLabel ? Heads.TaskKind.MultiLabel : Heads.TaskKind.SingleLabel)));
        Register(new("regress", "one number per text or text pair",
            ["pooling", "text-pair-column"], o => new HeadTaskRecipe(o, Heads.TaskKind.Regression)));
        Register(new("tokens", "a label per word, from CoNLL files (a CRF on top with --crf)",
            ["crf"], o => new HeadTaskRecipe(o, Heads.TaskKind.Tokens)));
        Register(new("causal-lm", "the language model itself, on text, prompt/completion, chat or instruction rows",
            ["train-on-prompt", "packing", "base-dtype", "gradient-checkpointing", "eval-generate", "chat-template"], o => new CausalLmRecipe(o)));
        Register(new("preference", "a language model's preference between two completions of a prompt (DPO, ORPO), from prompt/chosen/rejected rows",
            ["objective", "preference-loss", "beta", "orpo-lambda", "precompute-reference", "base-dtype", "gradient-checkpointing", "chat-template"],
            o => new PreferenceRecipe(o)));
    }

    /// <summary>Adds a task; a name already taken is refused.</summary>
    public static void Register(TaskDefinition task)
    {
        if (Tasks.Any(t => t.Name == task.Name)) throw new InvalidOperationException($"a task named '{task.Name}' is already registered");
        Tasks.Add(task);
    }

    public static IReadOnlyList<string> Names => Tasks.Select(t => t.Name).ToList();

    public static IReadOnlyList<TaskDefinition> All => Tasks;

    public static TaskDefinition Get(string name) => Tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"--task '{name}' is not known{Suggestions.DidYouMean(name, Names)}: use {string.Join(", ", Names)}");

    /// <summary>
    /// Refuses an option that belongs to other tasks when it differs from its default: <c>--crf</c> with <c>--task classify</c>
    /// says which tasks take it, before anything is read.
    /// </summary>
    public static void CheckOptions(FineTuneOptions options)
    {
        var task = Get(options.Task);
        var defaults = new FineTuneOptions();
        foreach (var name in Tasks.SelectMany(t => t.Options).Distinct().Where(n => !task.Options.Contains(n)))
        {
            var spec = OptionCatalog.Get(name);
            if (Equals(spec.ToJson(options)?.ToJsonString(), spec.ToJson(defaults)?.ToJsonString())) continue;
            var owners = Tasks.Where(t => t.Options.Contains(name)).Select(t => t.Name);
            throw new ArgumentException($"--{name} applies to --task {string.Join(" or ", owners)}, not to --task {task.Name}");
        }
    }
}
