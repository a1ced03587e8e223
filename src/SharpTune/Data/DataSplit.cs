namespace SharpTune.Data;

/// <summary>The two halves of a split; each keeps the examples in their original order.</summary>
public sealed record TrainValidationSplit<T>(IReadOnlyList<T> Train, IReadOnlyList<T> Validation);

/// <summary>Deterministic train/validation splits: the same examples, fraction and seed give the same
/// split on every machine and .NET version (the shuffle uses its own SplitMix64 generator, not
/// <see cref="Random"/>, whose sequence is not guaranteed across versions).</summary>
public static class DataSplit
{
    /// <summary>
    /// Holds out <c>round(fraction × n)</c> examples (at least one, and at least one left to train on).
    /// With <paramref name="stratifyBy"/> (e.g. <c>e =&gt; e.Label</c> for classification) every key
    /// keeps its share in both halves, allotted by largest remainder, and a key with a single example
    /// stays in training so validation never holds a label training has not seen (validation may then
    /// be a little smaller than asked).
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than 2 examples, or stratified keys that are all unique
    /// (e.g. regression scores), which would leave nothing for validation.</exception>
    public static TrainValidationSplit<T> TrainValidation<T>(IReadOnlyList<T> examples, double fraction, int seed, Func<T, string?>? stratifyBy = null)
    {
        if (!(fraction > 0 && fraction < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "validation fraction must be in (0, 1)");
        if (examples.Count < 2) throw new ArgumentException($"cannot split {examples.Count} example(s); need at least 2", nameof(examples));

        int n = examples.Count;
        int wanted = Math.Clamp((int)Math.Round(fraction * n, MidpointRounding.AwayFromZero), 1, n - 1);
        var groups = Enumerable.Range(0, n)
            .GroupBy(i => stratifyBy is null ? "" : stratifyBy(examples[i]) ?? "")
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => g.ToArray())
            .ToArray();
        int[] quota = stratifyBy is null ? [wanted] : Allot(groups.Select(g => g.Length).ToArray(), wanted, n);
        if (quota.Sum() == 0)
            throw new ArgumentException("every stratification key has a single example, so none can be held out; split without stratifying", nameof(stratifyBy));

        var rng = new SplitMix64((ulong)(uint)seed);
        var isValidation = new bool[n];
        for (int g = 0; g < groups.Length; g++)
        {
            var group = groups[g];
            for (int i = group.Length - 1; i > 0; i--) // Fisher–Yates
            {
                int j = rng.Next(i + 1);
                (group[i], group[j]) = (group[j], group[i]);
            }
            for (int k = 0; k < quota[g]; k++) isValidation[group[k]] = true;
        }

        var train = new List<T>(n);
        var validation = new List<T>(quota.Sum());
        for (int i = 0; i < n; i++) (isValidation[i] ? validation : train).Add(examples[i]);
        return new TrainValidationSplit<T>(train, validation);
    }

    /// <summary>Largest-remainder allotment of <paramref name="wanted"/> over groups, each capped at its size − 1.</summary>
    static int[] Allot(int[] sizes, int wanted, int n)
    {
        var exact = sizes.Select(s => (double)wanted * s / n).ToArray();
        var quota = sizes.Select((s, g) => Math.Min((int)Math.Floor(exact[g]), s - 1)).ToArray();
        int left = wanted - quota.Sum();
        // Ties go to the earlier (ordinally smaller) key, keeping the result deterministic.
        var order = Enumerable.Range(0, sizes.Length).OrderByDescending(g => exact[g] - Math.Floor(exact[g])).ThenBy(g => g).ToList();
        while (left > 0)
        {
            bool gave = false;
            foreach (int g in order)
            {
                if (left == 0) break;
                if (quota[g] >= sizes[g] - 1) continue;
                quota[g]++;
                left--;
                gave = true;
            }
            if (!gave) break; // every group is down to one training example
        }
        return quota;
    }

    /// <summary>SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and fixed forever.</summary>
    sealed class SplitMix64(ulong state)
    {
        public int Next(int bound)
        {
            state += 0x9E3779B97F4A7C15UL;
            ulong z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (int)(z % (ulong)bound); // modulo bias is below 2^-32 for any list that fits in memory
        }
    }
}
