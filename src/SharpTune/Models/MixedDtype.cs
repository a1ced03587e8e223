using System.Reflection;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A frozen base held in a low-precision dtype (bf16) under adapters and heads that train in float32, as PEFT users
/// load the base with <c>torch_dtype=torch.bfloat16</c> and keep the adapter weights fp32: half the memory for the
/// weights that do not change, full precision for the ones the optimizer updates. The adapter layers cast between the
/// two (LoRA casts its input to <c>lora_A</c>'s dtype and its result back to the base result's).
/// </summary>
public static class MixedDtype
{
    static readonly MethodInfo Register = typeof(nn.Module).GetMethod("ConditionallyRegisterParameter",
        BindingFlags.Instance | BindingFlags.NonPublic, [typeof(string), typeof(Parameter)])
        ?? throw new MissingMethodException("TorchSharp's Module.ConditionallyRegisterParameter(string, Parameter) is gone; MixedDtype needs it");

    /// <summary>
    /// Converts every floating-point parameter of <paramref name="module"/> that does not train to
    /// <paramref name="dtype"/> (and sets its requires_grad false) and leaves the trainable ones as they are; returns
    /// how many were converted.
    /// </summary>
    /// <param name="isTrainable">Given a parameter's state-dict key and the parameter: whether it trains.</param>
    /// <remarks>See <see cref="Convert"/> for how parameters are replaced.</remarks>
    public static int HoldFrozenIn(nn.Module module, ScalarType dtype, Func<string, Parameter, bool> isTrainable) =>
        Convert(module, dtype, (key, p) => !isTrainable(key, p), requiresGrad: false);

    /// <summary>
    /// Converts the floating-point parameters <paramref name="select"/> picks to <paramref name="dtype"/>, keeping their
    /// requires_grad (or setting it to <paramref name="requiresGrad"/>); returns how many were converted. For a model
    /// loaded whole in bf16 (<c>PretrainedDecoder.Load(folder, BFloat16, linears)</c>, which never holds the base in fp32
    /// beside the file), <c>Convert(model, Float32, (key, _) => adapter(key))</c> gives the adapters back their fp32.
    /// </summary>
    /// <remarks>
    /// TorchSharp holds a parameter's dtype in the tensor, so a converted parameter is a new <see cref="Parameter"/>
    /// (without .grad) put where the old one was, in the module's registry and in the fields that held it, as
    /// <c>Module.to(dtype)</c> itself does; the old tensor is disposed. Take references to parameters (an optimizer's
    /// list, a tied weight) after this call. A parameter shared by two modules stays shared.
    /// </remarks>
    public static int Convert(nn.Module module, ScalarType dtype, Func<string, Parameter, bool> select, bool? requiresGrad = null)
    {
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"{dtype} is not a floating-point dtype", nameof(dtype));
        // Every slot first: TorchSharp's setters dispose the tensor they replace, and a disposed tensor no longer shows
        // in named_parameters, so the second holder of a shared weight would not be found afterwards.
        var slots = new[] { ("", module) }.Concat(module.named_modules().Select(m => (m.name + ".", m.module)))
            .SelectMany(m => m.Item2.named_parameters(recurse: false).Select(p => (Owner: m.Item2, Key: m.Item1 + p.name, Name: p.name, Parameter: p.parameter)))
            .ToList();
        var replaced = new Dictionary<Parameter, Parameter>(ReferenceEqualityComparer.Instance);
        var done = new List<(nn.Module Owner, string Key, string Name, Parameter Converted)>();
        using (no_grad())
        {
            foreach (var (owner, key, name, parameter) in slots)
            {
                if (!replaced.TryGetValue(parameter, out var converted))
                {
                    if (!parameter.is_floating_point() || parameter.dtype == dtype || !select(key, parameter)) continue;
                    converted = new Parameter(parameter.detach().to(dtype), requires_grad: requiresGrad ?? parameter.requires_grad);
                    converted.DetachFromDisposeScope();
                    replaced[parameter] = converted;
                }
                Put(owner, name, parameter, converted);                               // a tied weight: converted once, put in each place
                done.Add((owner, key, name, converted));
            }
        }
        foreach (var (owner, key, name, converted) in done)
            if (!owner.named_parameters(recurse: false).Any(p => p.name == name && ReferenceEquals(p.parameter, converted)))
                throw new InvalidOperationException($"{key}: the converted parameter did not take the old one's place (it is kept somewhere MixedDtype cannot see)");
        foreach (var old in replaced.Keys) old.Dispose();
        return replaced.Count;
    }

    /// <summary><see cref="HoldFrozenIn(nn.Module, ScalarType, Func{string, Parameter, bool})"/> with "trains" meaning requires_grad.</summary>
    public static int HoldFrozenIn(nn.Module module, ScalarType dtype) => HoldFrozenIn(module, dtype, (_, p) => p.requires_grad);

    /// <summary>
    /// Puts <paramref name="converted"/> in <paramref name="owner"/>'s registry under <paramref name="name"/> and in every
    /// field of <paramref name="owner"/> that holds <paramref name="old"/> (our modules' fields are named as their keys,
    /// TorchSharp's Linear and LayerNorm keep <c>_weight</c> behind a <c>weight</c> property); a module that keeps it
    /// in no field (TorchSharp's native Embedding) gets it through its property. This is how <c>Module.to</c> replaces
    /// parameters.
    /// </summary>
    static void Put(nn.Module owner, string name, Parameter old, Parameter converted)
    {
        bool held = false;
        for (var t = owner.GetType(); t is not null && t != typeof(object); t = t.BaseType)
            foreach (var field in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                if (field.FieldType.IsAssignableFrom(typeof(Parameter)) && ReferenceEquals(field.GetValue(owner), old))
                {
                    field.SetValue(owner, converted);
                    held = true;
                }
        if (!held && owner.GetType().GetProperty(name, BindingFlags.Instance | BindingFlags.Public) is { CanWrite: true } property
            && property.PropertyType == typeof(Parameter))
            property.SetValue(owner, converted);
        Register.Invoke(owner, [name, converted]);
    }
}
