using SharpTune.Heads;

namespace SharpTune.Peft;

/// <summary>
/// PEFT's <c>disable_adapter()</c> context: until the returned scope is disposed the model computes as its base, every
/// adapter layer passing its base through and a language model's prompt module left out. A preference run's reference
/// model is the base under the adapter, with no second copy of the weights.
/// </summary>
public static class AdapterSwitch
{
    public static IDisposable Off(ITunableModel model)
    {
        var layers = model.Module.modules().OfType<IMergeableLinear>().Where(l => !l.AdapterDisabled).ToList();
        var language = model as CausalLmModel;
        bool prompt = language?.PromptEnabled ?? false;
        foreach (var layer in layers) layer.AdapterDisabled = true;
        if (language is not null) language.PromptEnabled = false;
        return new Scope(() =>
        {
            foreach (var layer in layers) layer.AdapterDisabled = false;
            if (language is not null) language.PromptEnabled = prompt;
        });
    }

    sealed class Scope(Action restore) : IDisposable
    {
        bool done;

        public void Dispose()
        {
            if (done) return;
            done = true;
            restore();
        }
    }
}
