namespace SharpTune.Models.Decoders;

/// <summary>
/// A model whose blocks can be checkpointed (HF <c>gradient_checkpointing_enable()</c>): with the switch on, a
/// training forward with grad enabled keeps only each decoder layer's input and recomputes the layer in the backward
/// pass (<see cref="Common.ActivationCheckpoint"/>), trading one more forward for the activations of all layers.
/// Forwards in eval mode, under no_grad or with a key/value cache (generation, prefix tuning) are never checkpointed.
/// </summary>
public interface IGradientCheckpointing
{
    bool GradientCheckpointing { get; set; }
}
