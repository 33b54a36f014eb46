namespace Horizon.Ops;

/// <summary>How RoPE frequencies are scaled: <c>default</c> (none) or <c>linear</c> (positions divided by Factor, Chen et al. 2023).</summary>
public sealed record RopeScaling(string Type, double Factor)
{
    public static RopeScaling None { get; } = new("default", 1.0);
}

/// <summary>
/// Rotary position embedding (Su et al. 2021, RoFormer, eq. 34), Hugging Face "rotate half" layout: dimension i
/// pairs with i + rotary_dim/2. θ_i = base^(−2i/rotary_dim); position p rotates pair i by p·θ_i / factor (linear).
/// rotary_dim is the whole head unless a partial rotary is asked for (GPT-NeoX <c>rotary_pct</c>, Black et al. 2022,
/// GPT-NeoX-20B § 2.1.1): then only the first rotary_dim dimensions of each head rotate and the rest pass through.
/// </summary>
public sealed class RopeTable
{
    /// <summary>RoPE over the whole head (rotary_dim = head_dim).</summary>
    public RopeTable(int headDim, double theta, RopeScaling scaling)
        : this(headDim, theta, scaling, headDim)
    {
    }

    /// <summary>
    /// Partial rotary: the first <paramref name="rotaryDim"/> dimensions of each head rotate (pairs i and
    /// i + rotary_dim/2, θ_i = base^(−2i/rotary_dim)); dimensions rotary_dim … head_dim − 1 are left unchanged.
    /// Hugging Face GPT-NeoX uses rotary_dim = int(head_dim · rotary_pct).
    /// </summary>
    /// <exception cref="ModelLoadException">head_dim or rotary_dim is odd, or rotary_dim is not in [2, head_dim].</exception>
    public RopeTable(int headDim, double theta, RopeScaling scaling, int rotaryDim)
    {
        ArgumentNullException.ThrowIfNull(scaling);
        if (headDim % 2 != 0)
            throw new ModelLoadException($"rope: head_dim = {headDim} must be even");
        if (rotaryDim % 2 != 0 || rotaryDim < 2 || rotaryDim > headDim)
            throw new ModelLoadException($"rope: rotary_dim = {rotaryDim} must be even and in [2, head_dim = {headDim}]");
        HeadDim = headDim;
        RotaryDim = rotaryDim;
        Theta = theta;
        Scaling = scaling;
        InverseFrequencies = new double[rotaryDim / 2];
        for (int i = 0; i < rotaryDim / 2; i++)
            InverseFrequencies[i] = 1.0 / Math.Pow(theta, 2.0 * i / rotaryDim) / scaling.Factor;
    }

    public int HeadDim { get; }

    /// <summary>Dimensions of each head that rotate (the first ones); equals <see cref="HeadDim"/> unless partial.</summary>
    public int RotaryDim { get; }

    public double Theta { get; }
    public RopeScaling Scaling { get; }

    /// <summary>θ_i / factor for i in [0, rotary_dim/2), in float64 so long positions keep their precision.</summary>
    public double[] InverseFrequencies { get; }

    /// <summary>
    /// Reads RoPE from config.json in both forms: <c>rope_theta</c> + <c>rope_scaling</c> (transformers ≤ 4) and
    /// <c>rope_parameters</c> (transformers 5). Scaling types other than default and linear are refused by name.
    /// </summary>
    public static RopeTable FromConfig(ModelConfig config, int headDim)
    {
        double theta = config.TryGetDouble("rope_theta") ?? 10000.0;
        var scaling = RopeScaling.None;
        if (config.TryGet("rope_parameters", out var parameters) && parameters.ValueKind == System.Text.Json.JsonValueKind.Object)
        {
            if (parameters.TryGetProperty("rope_theta", out var t) && t.ValueKind == System.Text.Json.JsonValueKind.Number)
                theta = t.GetDouble();
            scaling = ReadScaling(config, parameters, "rope_parameters");
        }
        else if (config.TryGet("rope_scaling", out var legacy) && legacy.ValueKind == System.Text.Json.JsonValueKind.Object)
        {
            scaling = ReadScaling(config, legacy, "rope_scaling");
        }
        if (config.TryGetDouble("partial_rotary_factor") is double partial && partial != 1.0)
            throw new ModelLoadException($"{config.Path}: partial_rotary_factor = {partial} is not supported");
        return new RopeTable(headDim, theta, scaling);
    }

    private static RopeScaling ReadScaling(ModelConfig config, System.Text.Json.JsonElement element, string key)
    {
        string type = "default";
        if (element.TryGetProperty("rope_type", out var rt) && rt.ValueKind == System.Text.Json.JsonValueKind.String)
            type = rt.GetString()!;
        else if (element.TryGetProperty("type", out var ty) && ty.ValueKind == System.Text.Json.JsonValueKind.String)
            type = ty.GetString()!;
        switch (type)
        {
            case "default":
                return RopeScaling.None;
            case "linear":
                if (!element.TryGetProperty("factor", out var f) || f.ValueKind != System.Text.Json.JsonValueKind.Number || f.GetDouble() <= 0)
                    throw new ModelLoadException($"{config.Path}: {key}: linear scaling needs a positive 'factor'");
                return new RopeScaling("linear", f.GetDouble());
            default:
                throw new ModelLoadException($"{config.Path}: {key}: rope type '{type}' is not supported (supported: default, linear)");
        }
    }
}
