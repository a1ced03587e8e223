namespace SharpTune.Tests;

/// <summary>
/// Tests that seed torch's global generator and expect two runs to draw the same numbers. xUnit runs test
/// classes in parallel and the generator is shared by every thread, so such classes join this collection,
/// which runs alone after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRandom
{
    public const string Name = "torch global generator";
}
