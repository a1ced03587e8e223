using System.Reflection;
using TorchSharp.Modules;
using TorchSharp.Utils;
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
    /// <paramref name="dtype"/> and leaves the trainable ones as they are; returns how many were converted.
    /// </summary>
    /// <param name="isTrainable">Given a parameter's state-dict key and the parameter: whether it trains.</param>
    /// <remarks>
    /// TorchSharp holds a parameter's dtype in the tensor, so a converted parameter is a new <see cref="Parameter"/>
    /// (requires_grad false, no .grad) put where the old one was, in the module's registry and in its field or property,
    /// as <c>Module.to(dtype)</c> itself does; the old tensor is disposed. Take references to parameters (an optimizer's
    /// list, a tied weight) after this call. A parameter shared by two modules stays shared.
    /// </remarks>
    public static int HoldFrozenIn(nn.Module module, ScalarType dtype, Func<string, Parameter, bool> isTrainable)
    {
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"{dtype} is not a floating-point dtype", nameof(dtype));
        var replaced = new Dictionary<Parameter, Parameter>(ReferenceEqualityComparer.Instance);
        var disposed = new List<Parameter>();
        using (no_grad())
        {
            foreach (var (prefix, owner) in new[] { ("", module) }.Concat(module.named_modules().Select(m => (m.name + ".", m.module))))
                foreach (var (name, parameter) in owner.named_parameters(recurse: false).ToList())
                {
                    if (replaced.TryGetValue(parameter, out var shared))
                    {
                        Put(owner, name, shared);                                     // a tied weight: converted once
                        continue;
                    }
                    if (!parameter.is_floating_point() || parameter.dtype == dtype) continue;
                    if (isTrainable(prefix + name, parameter)) continue;
                    var converted = new Parameter(parameter.detach().to(dtype), requires_grad: false);
                    converted.DetachFromDisposeScope();
                    replaced[parameter] = converted;
                    disposed.Add(parameter);
                    Put(owner, name, converted);
                }
        }
        foreach (var (name, parameter) in module.named_parameters())
            if (replaced.ContainsKey(parameter))
                throw new InvalidOperationException($"{name}: the module still holds the parameter that was converted (it is kept somewhere MixedDtype cannot see)");
        foreach (var old in disposed) old.Dispose();
        return disposed.Count;
    }

    /// <summary><see cref="HoldFrozenIn(nn.Module, ScalarType, Func{string, Parameter, bool})"/> with "trains" meaning requires_grad.</summary>
    public static int HoldFrozenIn(nn.Module module, ScalarType dtype) => HoldFrozenIn(module, dtype, (_, p) => p.requires_grad);

    /// <summary>Puts <paramref name="parameter"/> in <paramref name="owner"/>'s registry under <paramref name="name"/> and in the field or property that holds it.</summary>
    static void Put(nn.Module owner, string name, Parameter parameter)
    {
        var type = owner.GetType();
        if (type.GetProperty(name, BindingFlags.Instance | BindingFlags.Public) is { CanWrite: true } property && property.PropertyType == typeof(Parameter))
        {
            // TorchSharp's own modules (Linear, Embedding, LayerNorm): the setter registers it and disposes the old one.
            property.SetValue(owner, parameter);
            return;
        }
        Register.Invoke(owner, [name, parameter]);
        for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
            foreach (var field in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                if (typeof(Tensor).IsAssignableFrom(field.FieldType) && (field.GetCustomAttribute<ComponentNameAttribute>()?.Name ?? field.Name) == name)
                {
                    field.SetValue(owner, parameter);
                    return;
                }
    }
}
