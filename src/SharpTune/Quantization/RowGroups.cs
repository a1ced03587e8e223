namespace SharpTune.Quantization;

/// <summary>
/// How many activation rows a many-row kernel's group carries: a type argument, so each group size compiles apart
/// (the JIT folds the tests on <see cref="Count"/> away and keeps only that group's accumulators in registers).
/// </summary>
interface IRowCount
{
    static abstract int Count { get; }
}

struct TwoRows : IRowCount
{
    public static int Count => 2;
}

struct FourRows : IRowCount
{
    public static int Count => 4;
}
