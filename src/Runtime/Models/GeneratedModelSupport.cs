using System.ComponentModel;

namespace Horizon;

/// <summary>
/// Checks and bookkeeping that the model classes generated from specs call. Public because those classes are
/// compiled into the consuming app's assembly; hand-written code has no need for it.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class GeneratedModelSupport
{
    /// <summary>A size computed as a product of two sizes (e.g. heads × head_dim); overflow is a load error naming both.</summary>
    public static int Multiply(ModelConfig config, int left, string leftName, int right, string rightName)
    {
        ArgumentNullException.ThrowIfNull(config);
        long product = (long)left * right;
        if (product is > int.MaxValue or < int.MinValue)
            throw new ModelLoadException($"{config.Path}: {leftName} × {rightName} = {left} × {right} is too large");
        return (int)product;
    }

    /// <summary>The first config.json architecture the spec supports, else the spec's first (what <c>ModelInfo</c> reports).</summary>
    public static string SelectArchitecture(ModelConfig config, IReadOnlyList<string> supported)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(supported);
        foreach (var architecture in config.Architectures)
        {
            if (supported.Contains(architecture, StringComparer.Ordinal))
                return architecture;
        }
        return supported.Count > 0 ? supported[0] : "";
    }

    /// <summary>
    /// Parameters of the tensors a model bound, counted once each, in total and per stored dtype (norm scales and
    /// biases are widened to float32 at load; they count under the dtype the checkpoint stores them in).
    /// </summary>
    public static (long Total, IReadOnlyDictionary<string, long> ByDType) CountParameters(ModelDirectory directory, IEnumerable<string> tensorNames)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(tensorNames);
        long total = 0;
        var byDType = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var name in tensorNames.Distinct(StringComparer.Ordinal))
        {
            var info = directory.Get(name).Info;
            long count = 1;
            foreach (long dimension in info.Shape)
                count *= dimension;
            total += count;
            string dtype = info.DType.ToString();
            byDType[dtype] = byDType.GetValueOrDefault(dtype) + count;
        }
        return (total, byDType);
    }

    /// <summary>Refuses a token id outside [0, <paramref name="vocabSize"/>), naming the id, its position and the range.</summary>
    public static void CheckTokens(ReadOnlySpan<int> tokens, int vocabSize)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)vocabSize)
                throw new HorizonException($"token id {tokens[i]} at position {i} is out of range [0, {vocabSize})");
        }
    }

    /// <summary>Refuses to run <paramref name="count"/> more tokens than <paramref name="state"/> has room for.</summary>
    public static void CheckRoom(IModelState state, int count)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (count > state.Capacity - state.Length)
            throw new HorizonException($"the state holds {state.Length} of at most {state.Capacity} tokens; {count} more do not fit (create a state with a larger capacity)");
    }

    /// <summary>Refuses a logits span shorter than <paramref name="count"/> rows of <paramref name="vocabSize"/>.</summary>
    public static void CheckLogits(int logitsLength, int count, int vocabSize)
    {
        long needed = (long)count * vocabSize;
        if (logitsLength < needed)
            throw new ArgumentException($"logits has room for {logitsLength} values; {count} tokens × {vocabSize} vocab need {needed}", "logits");
    }
}
