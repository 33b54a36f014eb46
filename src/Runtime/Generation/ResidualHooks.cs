namespace Horizon.Generation;

/// <summary>
/// A residual-stream hook point: generated models call it after every layer (block: mixer and MLP with their
/// residual adds), on the rows of the current Forward, before the next layer reads them. It may read the rows or
/// change them in place. Installed per state (<see cref="ISteerableModelState.ResidualHook"/>, or
/// <see cref="InferenceSession.ResidualHook"/>); when none is installed the cost is one null check per layer.
/// </summary>
public interface IResidualHook
{
    /// <param name="layer">The layer, counted from 0 over every block group of the model in order.</param>
    /// <param name="position">The position of the first row (the tokens the state held before this Forward).</param>
    /// <param name="count">Rows: the tokens of this Forward.</param>
    /// <param name="width">Floats per row: the model width.</param>
    /// <param name="residual">The residual stream, (count, width) row-major.</param>
    void AfterLayer(int layer, int position, int count, int width, Span<float> residual);
}

/// <summary>
/// A model state that runs an <see cref="IResidualHook"/> after each layer (every generated model's state, except a
/// two-level spec's, whose rows are not one per token).
/// </summary>
public interface ISteerableModelState : IModelState
{
    /// <summary>The hook run after every layer; null for none.</summary>
    IResidualHook? ResidualHook { get; set; }

    /// <summary>The number of hook points (layers over every block group).</summary>
    int LayerCount { get; }
}

/// <summary>A model state that can be copied: the basis of <see cref="InferenceSession.Fork"/>.</summary>
public interface IForkableModelState : IModelState
{
    /// <summary>A new state of the same model and capacity holding the same tokens (a deep copy of every cache).</summary>
    IModelState Clone();

    /// <summary>Makes this state a copy of <paramref name="source"/> (same model and capacity).</summary>
    void CopyFrom(IModelState source);
}

/// <summary>Records the residual stream after chosen layers, one row per position, across Forward calls.</summary>
public sealed class ActivationRecorder : IResidualHook
{
    private readonly HashSet<int>? _layers;
    private readonly Dictionary<int, SortedDictionary<int, float[]>> _rows = [];

    /// <summary>Records <paramref name="layers"/> (null: every layer).</summary>
    public ActivationRecorder(IEnumerable<int>? layers = null) => _layers = layers?.ToHashSet();

    public void AfterLayer(int layer, int position, int count, int width, Span<float> residual)
    {
        if (_layers is not null && !_layers.Contains(layer))
            return;
        if (!_rows.TryGetValue(layer, out var rows))
            _rows[layer] = rows = [];
        for (int r = 0; r < count; r++)
            rows[position + r] = residual.Slice(r * width, width).ToArray();
    }

    /// <summary>The recorded rows of <paramref name="layer"/> by position (a later Forward at a position replaces it).</summary>
    public IReadOnlyDictionary<int, float[]> Rows(int layer) => _rows.TryGetValue(layer, out var rows) ? rows : new SortedDictionary<int, float[]>();

    /// <summary>The row of <paramref name="layer"/> at <paramref name="position"/>.</summary>
    public float[] Row(int layer, int position) =>
        Rows(layer).TryGetValue(position, out var row) ? row : throw new KeyNotFoundException($"no activation recorded for layer {layer} at position {position}");

    public void Clear() => _rows.Clear();
}

/// <summary>
/// Adds a scaled steering vector to the residual stream (In-context Vectors): after layer l, every row h at a
/// position ≥ <see cref="FromPosition"/> becomes h + <see cref="Scale"/> · v_l, for each layer with a vector.
/// </summary>
public sealed class SteeringHook : IResidualHook
{
    private readonly Dictionary<int, float[]> _vectors;

    /// <param name="vectors">v_l by layer, each of the model width.</param>
    /// <param name="scale">λ.</param>
    public SteeringHook(IReadOnlyDictionary<int, float[]> vectors, float scale)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        _vectors = vectors.ToDictionary(p => p.Key, p => p.Value.ToArray());
        Scale = scale;
    }

    /// <summary>λ; may be changed between steps.</summary>
    public float Scale { get; set; }

    /// <summary>The first position steered (0: all, the prompt too).</summary>
    public int FromPosition { get; set; }

    public void AfterLayer(int layer, int position, int count, int width, Span<float> residual)
    {
        if (Scale == 0 || !_vectors.TryGetValue(layer, out var vector))
            return;
        if (vector.Length != width)
            throw new HorizonException($"the steering vector of layer {layer} has {vector.Length} floats; the model width is {width}");
        for (int r = Math.Max(0, FromPosition - position); r < count; r++)
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(vector, Scale, residual.Slice(r * width, width), residual.Slice(r * width, width));
    }
}

/// <summary>
/// Sets the coordinate of the residual stream along a direction (the context-sensitivity knob): after each chosen
/// layer, every row h at a position ≥ <see cref="FromPosition"/> becomes h + (α − ⟨h, d⟩) d, with d the unit
/// direction, so that ⟨h, d⟩ = α and the part orthogonal to d is unchanged.
/// </summary>
public sealed class DirectionKnob : IResidualHook
{
    private readonly float[] _unit;
    private readonly HashSet<int> _layers;

    /// <param name="direction">The direction (normalised here).</param>
    /// <param name="value">α, the coordinate to set.</param>
    /// <param name="layers">The layers to act after.</param>
    public DirectionKnob(ReadOnlySpan<float> direction, float value, IEnumerable<int> layers)
    {
        double norm = 0;
        foreach (float x in direction)
            norm += (double)x * x;
        if (!(norm > 0))
            throw new ArgumentException("the direction must be a non-zero vector", nameof(direction));
        _unit = new float[direction.Length];
        double inverse = 1 / Math.Sqrt(norm);
        for (int i = 0; i < direction.Length; i++)
            _unit[i] = (float)(direction[i] * inverse);
        Value = value;
        _layers = layers.ToHashSet();
    }

    /// <summary>The unit direction d.</summary>
    public ReadOnlySpan<float> Direction => _unit;

    /// <summary>α; may be changed between steps.</summary>
    public float Value { get; set; }

    /// <summary>The first position affected (0: all).</summary>
    public int FromPosition { get; set; }

    public void AfterLayer(int layer, int position, int count, int width, Span<float> residual)
    {
        if (!_layers.Contains(layer))
            return;
        if (_unit.Length != width)
            throw new HorizonException($"the knob's direction has {_unit.Length} floats; the model width is {width}");
        for (int r = Math.Max(0, FromPosition - position); r < count; r++)
        {
            var row = residual.Slice(r * width, width);
            double dot = 0;
            for (int i = 0; i < width; i++)
                dot += (double)row[i] * _unit[i];
            float delta = (float)(Value - dot);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(_unit, delta, row, row);
        }
    }
}

/// <summary>Runs several hooks in order at each point.</summary>
public sealed class CompositeResidualHook(params IResidualHook[] hooks) : IResidualHook
{
    public void AfterLayer(int layer, int position, int count, int width, Span<float> residual)
    {
        foreach (var hook in hooks)
            hook.AfterLayer(layer, position, count, width, residual);
    }
}
