using System.Text.Json.Nodes;
using SharpTune.Training;
using SharpTune.Training.Tasks;

namespace SharpTune.Tests.Training.Tasks;

/// <summary>The task registry: one entry per task, options that belong to a task refused elsewhere with a message naming both.</summary>
public class TaskRegistryTests
{
    [Fact]
    public void Every_task_names_only_options_the_catalog_knows_and_builds_its_recipe()
    {
        Assert.Equal(["classify", "regress", "tokens", "causal-lm", "preference"], TaskRegistry.Names);
        foreach (var task in TaskRegistry.All)
        {
            foreach (var option in task.Options) Assert.NotNull(OptionCatalog.Get(option));
            using var recipe = task.CreateRecipe(new FineTuneOptions { Task = task.Name });
            Assert.NotNull(recipe);
        }
    }

    [Fact]
    public void A_second_task_of_the_same_name_is_refused()
    {
        var error = Assert.Throws<InvalidOperationException>(() => TaskRegistry.Register(TaskRegistry.Get("classify")));
        Assert.Contains("'classify' is already registered", error.Message);
    }

    [Theory]
    [InlineData("classify", "crf", "--crf applies to --task tokens, not to --task classify")]
    [InlineData("tokens", "pooling", "--pooling applies to --task classify or regress, not to --task tokens")]
    [InlineData("classify", "beta", "--beta applies to --task preference, not to --task classify")]
    [InlineData("preference", "packing", "--packing applies to --task causal-lm, not to --task preference")]
    [InlineData("regress", "base-dtype", "--base-dtype applies to --task causal-lm or preference, not to --task regress")]
    public void An_option_of_another_task_is_refused_naming_the_tasks_that_take_it(string task, string option, string message)
    {
        JsonNode value = option switch
        {
            "pooling" => JsonValue.Create("mean"), "base-dtype" => JsonValue.Create("bf16"), "beta" => JsonValue.Create(0.3), _ => JsonValue.Create(true),
        };
        var options = OptionCatalog.Get(option).Set(new FineTuneOptions { Task = task }, value, "--" + option);
        var error = Assert.Throws<ArgumentException>(() => TaskRegistry.CheckOptions(options));
        Assert.Equal(message, error.Message);
    }

    [Fact]
    public void An_option_left_at_its_default_is_not_counted_as_given()
    {
        TaskRegistry.CheckOptions(new FineTuneOptions { Task = "classify" });
        TaskRegistry.CheckOptions(new FineTuneOptions { Task = "preference" });
        var error = Assert.Throws<ArgumentException>(() => TaskRegistry.Get("clasify"));
        Assert.Contains("did you mean 'classify'", error.Message);
    }
}
