using Horizon.Generation;
using Horizon.Models;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// Residual-stream hooks of the generated Forward, against their equations on the random-weight Qwen2 model
/// (2 layers, width 64): the last layer's residual h gives logits = lm_head · rms_norm(h), so a hook after the
/// last layer is checked end to end; steering adds λ·v, the knob sets ⟨h, d⟩ = α, and no hook changes nothing.
/// </summary>
public class GenerationHookTests
{
    private HorizonModel _loaded = null!;
    private Qwen2Model _model = null!;
    private int[] _tokens = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _loaded = GenerationTestModel.Load();
        _model = (Qwen2Model)_loaded.Model;
        _tokens = _loaded.Tokenizer.Encode("In the beginning God created the heaven").ToArray();
    }

    [OneTimeTearDown]
    public void Unload() => _loaded.Dispose();

    private int Width => _model.Sizes.HiddenSize;
    private int Vocab => _model.VocabSize;

    private float[] Logits(IResidualHook? hook, int chunk = 1000)
    {
        var state = _model.CreateState(64);
        state.ResidualHook = hook;
        var logits = new float[_tokens.Length * Vocab];
        for (int start = 0; start < _tokens.Length; start += chunk)
        {
            int n = Math.Min(chunk, _tokens.Length - start);
            _model.Forward(_tokens.AsSpan(start, n), state, logits.AsSpan(start * Vocab, n * Vocab));
        }
        return logits;
    }

    /// <summary>logits = lm_head · rms_norm(h) for rows h of the last layer's residual.</summary>
    private float[] Head(float[][] rows)
    {
        var x = rows.SelectMany(r => r).ToArray();
        var normed = new float[x.Length];
        Horizon.Ops.RmsNorm.Forward(x, rows.Length, _model.Norm, _model.Sizes.RmsNormEps, normed);
        var logits = new float[rows.Length * Vocab];
        Horizon.Cpu.CpuKernels.Linear(normed, rows.Length, _model.LmHead, ReadOnlySpan<float>.Empty, logits);
        return logits;
    }

    private float[][] Recorded(ActivationRecorder recorder, int layer) =>
        Enumerable.Range(0, _tokens.Length).Select(p => recorder.Row(layer, p)).ToArray();

    private static float[] RandomVector(int n, int seed)
    {
        var random = new SplitMix64((ulong)seed);
        return Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    [Test]
    public void The_state_has_one_hook_point_per_layer_called_in_order_with_positions()
    {
        var calls = new List<(int Layer, int Position, int Count, int Width)>();
        var state = _model.CreateState(64);
        Assert.That(state.LayerCount, Is.EqualTo(2));
        state.ResidualHook = new Spy(calls);
        var logits = new float[_tokens.Length * Vocab];
        _model.Forward(_tokens.AsSpan(0, 3), state, logits);
        _model.Forward(_tokens.AsSpan(3, 2), state, logits);
        Assert.That(calls, Is.EqualTo(new[] { (0, 0, 3, Width), (1, 0, 3, Width), (0, 3, 2, Width), (1, 3, 2, Width) }));
    }

    private sealed class Spy(List<(int, int, int, int)> calls) : IResidualHook
    {
        public void AfterLayer(int layer, int position, int count, int width, Span<float> residual) => calls.Add((layer, position, count, width));
    }

    [Test]
    public void Without_a_hook_or_with_hooks_that_change_nothing_the_logits_are_bit_identical()
    {
        var plain = Logits(null);
        Assert.That(Logits(new ActivationRecorder()), Is.EqualTo(plain));
        Assert.That(Logits(new SteeringHook(new Dictionary<int, float[]> { [0] = RandomVector(Width, 1) }, 0f)), Is.EqualTo(plain));
    }

    [Test]
    public void The_last_layers_residual_gives_the_logits_through_the_final_norm_and_head()
    {
        var recorder = new ActivationRecorder([1]);
        var logits = Logits(recorder, chunk: 3);
        Assert.That(Head(Recorded(recorder, 1)), Is.EqualTo(logits).Within(1e-4));
    }

    [Test]
    public void Steering_after_the_last_layer_gives_head_of_h_plus_lambda_v()
    {
        var recorder = new ActivationRecorder([1]);
        Logits(recorder);
        var h = Recorded(recorder, 1);
        var v = RandomVector(Width, 2);
        const float lambda = 3.5f;
        var steered = Logits(new SteeringHook(new Dictionary<int, float[]> { [1] = v }, lambda));
        var expected = Head(h.Select(row => row.Select((x, i) => x + lambda * v[i]).ToArray()).ToArray());
        Assert.That(steered, Is.EqualTo(expected).Within(1e-4));
        Assert.That(steered, Is.Not.EqualTo(Logits(null)).Within(1e-2));
    }

    [Test]
    public void Steering_a_middle_layer_adds_lambda_v_to_every_row_from_the_chosen_position()
    {
        var before = new ActivationRecorder([0]);
        Logits(before);
        var v = RandomVector(Width, 3);
        var steering = new SteeringHook(new Dictionary<int, float[]> { [0] = v }, -2f) { FromPosition = 2 };
        var after = new ActivationRecorder([0]);
        Logits(new CompositeResidualHook(steering, after), chunk: 3);
        for (int p = 0; p < _tokens.Length; p++)
        {
            var expected = before.Row(0, p).Select((x, i) => p >= 2 ? x + -2f * v[i] : x).ToArray();
            Assert.That(after.Row(0, p), Is.EqualTo(expected).Within(1e-5), $"position {p}");
        }
    }

    [Test]
    public void The_knob_sets_the_coordinate_along_its_direction_and_keeps_the_rest()
    {
        var before = new ActivationRecorder([1]);
        Logits(before);
        var d = RandomVector(Width, 4);
        double norm = Math.Sqrt(d.Sum(x => (double)x * x));
        var unit = d.Select(x => x / norm).ToArray();
        const float alpha = 5f;
        var knob = new DirectionKnob(d, alpha, [1]);
        var after = new ActivationRecorder([1]);
        var logits = Logits(new CompositeResidualHook(knob, after));
        for (int p = 0; p < _tokens.Length; p++)
        {
            var h = before.Row(1, p);
            var hk = after.Row(1, p);
            double dot = h.Select((x, i) => x * unit[i]).Sum();
            double dotAfter = hk.Select((x, i) => x * unit[i]).Sum();
            Assert.That(dotAfter, Is.EqualTo(alpha).Within(1e-4), $"⟨h', d⟩ at {p}");
            var expected = h.Select((x, i) => (float)(x + (alpha - dot) * unit[i])).ToArray();
            Assert.That(hk, Is.EqualTo(expected).Within(1e-4), $"h' at {p}");
        }
        Assert.That(logits, Is.EqualTo(Head(Recorded(after, 1))).Within(1e-4));
    }

    [Test]
    public async Task A_session_hook_steers_generation()
    {
        using var plain = _loaded.CreateSession();
        var free = await plain.GenerateTextAsync("And God said", GenerationOptions.Greedy with { MaxTokens = 8, StopTokenIds = [] });
        using var steered = _loaded.CreateSession();
        steered.ResidualHook = new SteeringHook(new Dictionary<int, float[]> { [1] = RandomVector(Width, 5) }, 50f);
        Assert.That(steered.ResidualHook, Is.Not.Null);
        var pushed = await steered.GenerateTextAsync("And God said", GenerationOptions.Greedy with { MaxTokens = 8, StopTokenIds = [] });
        Assert.That(pushed.Tokens, Is.Not.EqualTo(free.Tokens));
        steered.ResidualHook = null;
        Assert.That(steered.ResidualHook, Is.Null);
    }

    [Test]
    public void Hook_vectors_of_the_wrong_width_are_refused()
    {
        var state = _model.CreateState(16);
        state.ResidualHook = new SteeringHook(new Dictionary<int, float[]> { [0] = new float[3] }, 1f);
        var logits = new float[Vocab];
        var e = Assert.Throws<HorizonException>(() => _model.Forward(_tokens.AsSpan(0, 1), state, logits));
        Assert.That(e!.Message, Does.Contain("width"));
        Assert.Throws<ArgumentException>(() => _ = new DirectionKnob(new float[4], 1f, [0]));
    }

    [Test]
    public void Layers_are_counted_across_block_groups_in_order()
    {
        // horizon-kjv: config.json layer_types lists 8 layers in GLA and attention groups.
        using var kjv = HorizonModel.Load(Path.Combine(RepositoryPaths.Models, "horizon-kjv"));
        var state = (ISteerableModelState)kjv.Model.CreateState(16);
        Assert.That(state.LayerCount, Is.EqualTo(8));
        var calls = new List<(int Layer, int Position, int Count, int Width)>();
        state.ResidualHook = new Spy(calls);
        var ids = kjv.Tokenizer.Encode("And God said").ToArray();
        kjv.Model.Forward(ids, state, new float[ids.Length * kjv.Model.VocabSize]);
        Assert.That(calls.Select(c => c.Layer), Is.EqualTo(Enumerable.Range(0, 8)));
        Assert.That(calls.All(c => c.Position == 0 && c.Count == ids.Length), Is.True);
    }
}
