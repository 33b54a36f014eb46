using System.Globalization;
using System.Runtime.InteropServices;
using Horizon.Cpu;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The HyenaDNA block's ops against float64 references written from the equations: the FFT against a naive DFT,
/// the FFT causal convolution against the direct sum, <c>hyena</c> (Poli et al. 2023, order 2, HyenaDNA's HF
/// layout), <c>layer_norm</c> and <c>gelu_mlp</c> (both GELU forms); decode equals prefill; chunked prefill;
/// the state's Reset and CopyFrom; binding a mixer from a checkpoint written with the HF tensor names.
/// </summary>
public class HyenaTests
{
    // ------------------------------------------------------------------ FFT

    [Test]
    public void Fft_matches_naive_dft_for_every_power_of_two_up_to_1024()
    {
        var rng = new Random(1);
        for (int n = 1; n <= 1024; n *= 2)
        {
            var re = RandomDoubles(rng, n);
            var im = RandomDoubles(rng, n);
            var (expectedRe, expectedIm) = Reference.Dft(re, im);
            var plan = new FftPlan(n);
            var gotRe = (double[])re.Clone();
            var gotIm = (double[])im.Clone();
            plan.Forward(gotRe, gotIm);
            double scale = Math.Max(MaxAbs(expectedRe), MaxAbs(expectedIm));
            double error = Math.Max(MaxAbsDiff(gotRe, expectedRe), MaxAbsDiff(gotIm, expectedIm)) / scale;
            Assert.That(error, Is.LessThanOrEqualTo(1e-13), $"n = {n}");

            plan.Inverse(gotRe, gotIm);
            double roundTrip = Math.Max(MaxAbsDiff(gotRe, re), MaxAbsDiff(gotIm, im)) / Math.Max(MaxAbs(re), MaxAbs(im));
            Assert.That(roundTrip, Is.LessThanOrEqualTo(1e-14), $"inverse, n = {n}");
        }
    }

    [Test]
    public void Real_input_fft_matches_naive_dft_for_every_power_of_two_up_to_1024()
    {
        var rng = new Random(2);
        for (int n = 2; n <= 1024; n *= 2)
        {
            var x = RandomDoubles(rng, n);
            var (expectedRe, expectedIm) = Reference.Dft(x, new double[n]);
            var plan = new RealFftPlan(n);
            var re = new double[n / 2 + 1];
            var im = new double[n / 2 + 1];
            plan.Forward(x, re, im);
            double scale = Math.Max(MaxAbs(expectedRe), MaxAbs(expectedIm));
            double error = Math.Max(MaxAbsDiff(re, expectedRe.AsSpan(0, n / 2 + 1)), MaxAbsDiff(im, expectedIm.AsSpan(0, n / 2 + 1))) / scale;
            Assert.That(error, Is.LessThanOrEqualTo(1e-13), $"n = {n}");

            var back = new double[n];
            plan.Inverse(re, im, back);
            Assert.That(MaxAbsDiff(back, x) / MaxAbs(x), Is.LessThanOrEqualTo(1e-14), $"inverse, n = {n}");
        }
    }

    [TestCase(1)]
    [TestCase(63)]
    [TestCase(100)]
    [TestCase(257)]
    public void Causal_convolution_by_fft_matches_the_direct_sum(int length)
    {
        var rng = new Random(3 + length);
        var u = RandomDoubles(rng, length);
        var h = RandomDoubles(rng, length + 5); // only the first `length` taps may be read
        var expected = Reference.CausalConvolution(u, h);
        var got = new double[length];
        Fft.CausalConvolution(u, h, got);
        // Float64 throughout, so the bound is set by the FFT's rounding: a few ulps of the largest output.
        Assert.That(MaxAbsDiff(got, expected) / MaxAbs(expected), Is.LessThanOrEqualTo(1e-13));
    }

    // ------------------------------------------------------------------ hyena

    [Test]
    public void Implicit_filter_matches_the_float64_reference_and_grows_lazily()
    {
        var setup = HyenaSetup.Create(new Random(10), hidden: 24, maxLength: 160, embeddingDim: 5, order: 16, innerMlps: 2, storeTimeAndDeltas: true, initialLength: 8);
        Assert.That(setup.Weights.Filter.MaterializedLength, Is.EqualTo(8));
        var expected = Reference.Filter(setup);
        var got = new float[100];
        double maxError = 0, scale = 0;
        for (int c = 0; c < setup.Options.Hidden; c++)
        {
            setup.Weights.Filter.CopyFilter(c, got);
            for (int s = 0; s < got.Length; s++)
            {
                maxError = Math.Max(maxError, Math.Abs(got[s] - expected[c][s]));
                scale = Math.Max(scale, Math.Abs(expected[c][s]));
            }
        }
        Assert.That(setup.Weights.Filter.MaterializedLength, Is.EqualTo(100)); // max(100, 2·8)
        setup.Weights.Filter.EnsureLength(101);
        Assert.That(setup.Weights.Filter.MaterializedLength, Is.EqualTo(160)); // doubling, capped at max_seq_len
        Assert.That(maxError / scale, Is.LessThanOrEqualTo(1e-6));
    }

    [TestCase(HyenaConvolutionPath.Fft, 24, 100, true)]
    [TestCase(HyenaConvolutionPath.Direct, 24, 100, true)]
    [TestCase(HyenaConvolutionPath.Auto, 24, 100, false)]
    [TestCase(HyenaConvolutionPath.Fft, 7, 63, false)]
    public void Hyena_matches_the_float64_reference(HyenaConvolutionPath path, int hidden, int tokens, bool storeTimeAndDeltas)
    {
        var rng = new Random(20 + hidden + tokens);
        var setup = HyenaSetup.Create(rng, hidden, maxLength: 160, embeddingDim: hidden == 7 ? 3 : 5, order: 16,
            innerMlps: hidden == 7 ? 1 : 2, storeTimeAndDeltas, initialLength: 16, path: path);
        var x = RandomFloats(rng, tokens * hidden, 1.0);
        var expected = Reference.Hyena(setup, x, tokens);

        var state = new HyenaState(tokens, setup.Options);
        var y = new float[tokens * hidden];
        Hyena.Forward(x, tokens, setup.Weights, setup.Options, state, y);

        double error = RelativeError(y, expected);
        TestContext.Out.WriteLine($"hyena D={hidden} T={tokens} {path}: max|Δ|/max|ref| = {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(1e-5));
        Assert.That(state.Length, Is.EqualTo(tokens));
    }

    [TestCase(GeluApproximation.None, HyenaConvolutionPath.Fft)]
    [TestCase(GeluApproximation.Tanh, HyenaConvolutionPath.Direct)]
    public void HyenaDna_block_matches_the_float64_reference(GeluApproximation gelu, HyenaConvolutionPath path)
    {
        // h = x + hyena(LN₁(x));  out = h + mlp(LN₂(h)), as HyenaBlock in the HF remote code.
        const int D = 24, Inner = 40, T = 90;
        var rng = new Random(30);
        var setup = HyenaSetup.Create(rng, D, maxLength: 128, embeddingDim: 5, order: 16, innerMlps: 2, storeTimeAndDeltas: true, initialLength: T, path: path);
        var norm1 = new LayerNormWeights(RandomFloats(rng, D, 0.5, 1.0), RandomFloats(rng, D, 0.3));
        var norm2 = new LayerNormWeights(RandomFloats(rng, D, 0.5, 1.0), RandomFloats(rng, D, 0.3));
        var mlp = new GeluMlpWeights(RandomMatrix(rng, "fc1", Inner, D), RandomFloats(rng, Inner, 0.5), RandomMatrix(rng, "fc2", D, Inner), RandomFloats(rng, D, 0.5));
        var x = RandomFloats(rng, T * D, 1.0);

        var normed = new float[T * D];
        var mixed = new float[T * D];
        LayerNorm.Forward(x, T, norm1, 1e-5f, normed);
        Hyena.Forward(normed, T, setup.Weights, setup.Options, new HyenaState(T, setup.Options), mixed);
        var h = x.Zip(mixed, (a, b) => a + b).ToArray();
        LayerNorm.Forward(h, T, norm2, 1e-5f, normed);
        var mlpOut = new float[T * D];
        GeluMlp.Forward(normed, T, mlp, gelu, mlpOut);
        var output = h.Zip(mlpOut, (a, b) => a + b).ToArray();

        var refNormed = Reference.LayerNorm(x, T, norm1, 1e-5);
        var refH = Reference.Hyena(setup, refNormed, T).Zip(x, (a, b) => a + b).ToArray();
        var refMlp = Reference.GeluMlp(Reference.LayerNorm(refH, T, norm2, 1e-5), T, mlp, gelu);
        var expected = refH.Zip(refMlp, (a, b) => a + b).ToArray();

        double error = RelativeError(output, expected);
        TestContext.Out.WriteLine($"block {gelu} {path}: max|Δ|/max|ref| = {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void Decode_token_by_token_equals_prefill()
    {
        const int D = 24, T = 120;
        var rng = new Random(40);
        var setup = HyenaSetup.Create(rng, D, maxLength: 128, embeddingDim: 5, order: 16, innerMlps: 2, storeTimeAndDeltas: false, initialLength: 8);
        var x = RandomFloats(rng, T * D, 1.0);

        var prefill = new float[T * D];
        Hyena.Forward(x, T, setup.Weights, setup.Options with { Path = HyenaConvolutionPath.Fft }, new HyenaState(T, setup.Options), prefill);

        var state = new HyenaState(T, setup.Options);
        var step = new float[D];
        double maxDelta = 0;
        for (int t = 0; t < T; t++)
        {
            Hyena.Forward(x.AsSpan(t * D, D), 1, setup.Weights, setup.Options, state, step);
            for (int c = 0; c < D; c++)
                maxDelta = Math.Max(maxDelta, Math.Abs(step[c] - prefill[t * D + c]));
        }
        TestContext.Out.WriteLine($"decode vs FFT prefill: max|Δ| = {maxDelta:E2}");
        Assert.That(state.Length, Is.EqualTo(T));
        Assert.That(maxDelta, Is.LessThanOrEqualTo(1e-4));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(37)]
    [TestCase(99)]
    public void Prefill_in_two_calls_equals_one_call(int firstChunk)
    {
        const int D = 24, T = 100;
        var rng = new Random(50);
        var setup = HyenaSetup.Create(rng, D, maxLength: 128, embeddingDim: 5, order: 16, innerMlps: 2, storeTimeAndDeltas: true, initialLength: 4,
            path: HyenaConvolutionPath.Fft);
        var x = RandomFloats(rng, T * D, 1.0);
        var oneCall = new float[T * D];
        Hyena.Forward(x, T, setup.Weights, setup.Options, new HyenaState(T, setup.Options), oneCall);

        var state = new HyenaState(T, setup.Options);
        var twoCalls = new float[T * D];
        Hyena.Forward(x.AsSpan(0, firstChunk * D), firstChunk, setup.Weights, setup.Options, state, twoCalls.AsSpan(0, firstChunk * D));
        Hyena.Forward(x.AsSpan(firstChunk * D), T - firstChunk, setup.Weights, setup.Options, state, twoCalls.AsSpan(firstChunk * D));
        Assert.That(MaxAbsDiff(twoCalls, oneCall), Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void State_copy_continues_like_the_original_and_reset_starts_over()
    {
        const int D = 8, T = 40, Split = 17;
        var rng = new Random(60);
        var setup = HyenaSetup.Create(rng, D, maxLength: 64, embeddingDim: 3, order: 8, innerMlps: 1, storeTimeAndDeltas: false, initialLength: T);
        var x = RandomFloats(rng, T * D, 1.0);
        var original = new HyenaState(T, setup.Options);
        var first = new float[Split * D];
        Hyena.Forward(x.AsSpan(0, Split * D), Split, setup.Weights, setup.Options, original, first);

        var copy = new HyenaState(T, setup.Options);
        copy.CopyFrom(original);
        Assert.That(copy.Length, Is.EqualTo(Split));
        Assert.That(copy.ChannelHistory(3).ToArray(), Is.EqualTo(original.ChannelHistory(3).ToArray()));

        var fromOriginal = new float[(T - Split) * D];
        var fromCopy = new float[(T - Split) * D];
        Hyena.Forward(x.AsSpan(Split * D), T - Split, setup.Weights, setup.Options, original, fromOriginal);
        Hyena.Forward(x.AsSpan(Split * D), T - Split, setup.Weights, setup.Options, copy, fromCopy);
        Assert.That(fromCopy, Is.EqualTo(fromOriginal));

        copy.Reset();
        Assert.That(copy.Length, Is.Zero);
        var again = new float[Split * D];
        Hyena.Forward(x.AsSpan(0, Split * D), Split, setup.Weights, setup.Options, copy, again);
        Assert.That(again, Is.EqualTo(first));
    }

    [Test]
    public void Too_long_a_context_is_refused_before_the_state_changes()
    {
        const int D = 8;
        var rng = new Random(70);
        var setup = HyenaSetup.Create(rng, D, maxLength: 32, embeddingDim: 3, order: 8, innerMlps: 1, storeTimeAndDeltas: false, initialLength: 4);
        var x = RandomFloats(rng, 40 * D, 1.0);
        var y = new float[40 * D];

        var small = new HyenaState(10, setup.Options);
        Hyena.Forward(x.AsSpan(0, 6 * D), 6, setup.Weights, setup.Options, small, y.AsSpan(0, 6 * D));
        var error = Assert.Throws<HorizonException>(() => Hyena.Forward(x.AsSpan(0, 5 * D), 5, setup.Weights, setup.Options, small, y.AsSpan(0, 5 * D)));
        Assert.That(error!.Message, Does.Contain("capacity"));
        Assert.That(small.Length, Is.EqualTo(6));

        var big = new HyenaState(40, setup.Options);
        error = Assert.Throws<HorizonException>(() => Hyena.Forward(x.AsSpan(0, 33 * D), 33, setup.Weights, setup.Options, big, y.AsSpan(0, 33 * D)));
        Assert.That(error!.Message, Does.Contain("max_seq_len = 32"));
        Assert.That(big.Length, Is.Zero);
    }

    [Test]
    public void Hyena_weights_bind_from_a_checkpoint_with_the_hf_tensor_names()
    {
        const int D = 8, L = 32, E = 5, Order = 16, Inner = 2;
        var rng = new Random(80);
        var dir = Path.Combine(Path.GetTempPath(), "horizon-hyena-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), string.Create(CultureInfo.InvariantCulture,
                $$"""{"architectures": ["HyenaDNAForCausalLM"], "model_type": "hyenadna", "d_model": {{D}}, "n_layer": 1, "d_inner": 32, "vocab_size": 12, "max_seq_len": {{L}}, "emb_dim": {{E}}, "filter_order": {{Order}}, "short_filter_order": 3, "hyena_order": 2, "activation_freq": 10, "num_inner_mlps": {{Inner}}, "train_freq": true, "layer_norm_epsilon": 1e-5, "pad_vocab_size_multiple": 8}"""));
            string p = HyenaTensorNames.MixerPrefix(0);
            var z = HyenaImplicitFilter.InitialPositionalEmbedding(L, E);
            var tensors = new List<(string, SafeTensorsDType, long[], byte[])>
            {
                (p + HyenaTensorNames.InProjWeight, SafeTensorsDType.F32, [3 * D, D], Bytes(RandomFloats(rng, 3 * D * D, 0.35))),
                (p + HyenaTensorNames.InProjBias, SafeTensorsDType.F32, [3 * D], Bytes(RandomFloats(rng, 3 * D, 0.2))),
                (p + HyenaTensorNames.ShortFilterWeight, SafeTensorsDType.F32, [3 * D, 1, 3], Bytes(RandomFloats(rng, 3 * D * 3, 0.5))),
                (p + HyenaTensorNames.ShortFilterBias, SafeTensorsDType.F32, [3 * D], Bytes(RandomFloats(rng, 3 * D, 0.2))),
                (p + HyenaTensorNames.OutProjWeight, SafeTensorsDType.F32, [D, D], Bytes(RandomFloats(rng, D * D, 0.35))),
                (p + HyenaTensorNames.OutProjBias, SafeTensorsDType.F32, [D], Bytes(RandomFloats(rng, D, 0.2))),
                (p + HyenaTensorNames.FilterBias, SafeTensorsDType.F32, [D], Bytes(RandomFloats(rng, D, 1.0))),
                (p + HyenaTensorNames.PositionalEmbedding, SafeTensorsDType.F32, [1, L, E], Bytes(z)),
                (p + HyenaTensorNames.Time, SafeTensorsDType.F32, [1, L, 1], Bytes(Enumerable.Range(0, L).Select(s => s / (float)(L - 1)).ToArray())),
                (p + HyenaTensorNames.Deltas, SafeTensorsDType.F32, [1, 1, D], Bytes(HyenaImplicitFilter.InitialDeltas(D))),
                (p + HyenaTensorNames.ImplicitLinearWeight(0), SafeTensorsDType.F32, [Order, E], Bytes(RandomFloats(rng, Order * E, 0.5))),
                (p + HyenaTensorNames.ImplicitLinearBias(0), SafeTensorsDType.F32, [Order], Bytes(RandomFloats(rng, Order, 0.5))),
                (p + HyenaTensorNames.ImplicitLinearWeight(1), SafeTensorsDType.F32, [Order, Order], Bytes(RandomFloats(rng, Order * Order, 0.25))),
                (p + HyenaTensorNames.ImplicitLinearBias(1), SafeTensorsDType.F32, [Order], Bytes(RandomFloats(rng, Order, 0.5))),
                (p + HyenaTensorNames.ImplicitLinearWeight(2), SafeTensorsDType.F32, [Order, Order], Bytes(RandomFloats(rng, Order * Order, 0.25))),
                (p + HyenaTensorNames.ImplicitLinearBias(2), SafeTensorsDType.F32, [Order], Bytes(RandomFloats(rng, Order, 0.5))),
                (p + HyenaTensorNames.ImplicitLinearWeight(3), SafeTensorsDType.F32, [D, Order], Bytes(RandomFloats(rng, D * Order, 0.25))),
                // One shared Sin module: a safetensors save keeps a single alias, here the last one.
                (p + HyenaTensorNames.Frequency(2), SafeTensorsDType.F32, [1, Order], Bytes(RandomFloats(rng, Order, 0.5, 9.0))),
            };
            SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);

            using var model = ModelDirectory.Open(dir);
            var options = HyenaOptions.FromConfig(model.Config);
            Assert.That(options, Is.EqualTo(new HyenaOptions(D, L, E, Order, Inner, 3, 10.0)));
            var weights = HyenaWeights.Load(model, p, options, materializeLength: 8);
            Assert.That(weights.Filter.MaterializedLength, Is.EqualTo(8));

            // The same weights assembled by hand give the same output.
            var byHand = HyenaSetup.FromTensors(tensors.ToDictionary(t => t.Item1, t => MemoryMarshal.Cast<byte, float>(t.Item4).ToArray()), p, options);
            var x = RandomFloats(rng, 20 * D, 1.0);
            var fromCheckpoint = new float[20 * D];
            var fromHand = new float[20 * D];
            Hyena.Forward(x, 20, weights, options, new HyenaState(20, options), fromCheckpoint);
            Hyena.Forward(x, 20, byHand.Weights, options, new HyenaState(20, options), fromHand);
            Assert.That(fromCheckpoint, Is.EqualTo(fromHand));
            var expected = Reference.Hyena(byHand, x, 20);
            Assert.That(RelativeError(fromCheckpoint, expected), Is.LessThanOrEqualTo(1e-5));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void Config_with_an_unsupported_short_filter_is_refused_by_name()
    {
        var config = ModelConfig.Parse("""{"d_model": 8, "max_seq_len": 16, "short_filter_order": 4}""");
        var error = Assert.Throws<ModelLoadException>(() => HyenaOptions.FromConfig(config));
        Assert.That(error!.Message, Does.Contain("short_filter_order = 4"));
    }

    // ------------------------------------------------------------------ layer_norm, gelu_mlp

    [Test]
    public void Layer_norm_matches_the_float64_reference()
    {
        const int D = 24, Rows = 9;
        var rng = new Random(90);
        var weights = new LayerNormWeights(RandomFloats(rng, D, 0.5, 1.0), RandomFloats(rng, D, 0.5));
        var x = RandomFloats(rng, Rows * D, 1.0).Select((v, i) => v + 100f * (i / D % 3)).ToArray(); // rows offset by 0, 100, 200
        var y = new float[Rows * D];
        LayerNorm.Forward(x, Rows, weights, 1e-5f, y);
        Assert.That(RelativeError(y, Reference.LayerNorm(x, Rows, weights, 1e-5)), Is.LessThanOrEqualTo(1e-6));
        LayerNorm.Forward(x, Rows, weights, 1e-5f, x); // in place
        Assert.That(x, Is.EqualTo(y));
    }

    [TestCase(GeluApproximation.None)]
    [TestCase(GeluApproximation.Tanh)]
    public void Gelu_mlp_matches_the_float64_reference(GeluApproximation approximation)
    {
        const int D = 24, Inner = 56, Rows = 11;
        var rng = new Random(100);
        var weights = new GeluMlpWeights(RandomMatrix(rng, "fc1", Inner, D, 2.0), RandomFloats(rng, Inner, 0.5), RandomMatrix(rng, "fc2", D, Inner), RandomFloats(rng, D, 0.5));
        var x = RandomFloats(rng, Rows * D, 1.0);
        var y = new float[Rows * D];
        GeluMlp.Forward(x, Rows, weights, approximation, y);
        Assert.That(RelativeError(y, Reference.GeluMlp(x, Rows, weights, approximation)), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void Gelu_is_accurate_elementwise_in_both_forms()
    {
        var points = Enumerable.Range(-400, 801).Select(i => i / 40.0f).ToArray(); // −10 … 10
        foreach (var approximation in new[] { GeluApproximation.None, GeluApproximation.Tanh })
        {
            var got = (float[])points.Clone();
            HyenaKernels.Gelu(got, approximation);
            for (int i = 0; i < points.Length; i++)
            {
                double expected = Reference.Gelu(points[i], approximation);
                // Relative 1e-6, except where GELU is below 0.01 (x ≲ −2.5): there the float32 exponent's few ulps,
                // times |2a| ≤ 90 in the tanh form, allow a larger relative but tiny absolute error.
                Assert.That(Math.Abs(got[i] - expected), Is.LessThanOrEqualTo(1e-6 * Math.Max(Math.Abs(expected), 1e-2)),
                    $"{approximation} GELU({points[i]})");
            }
        }
    }

    [Test]
    public void Erfc_has_float_precision_relative_error_everywhere()
    {
        // The float64 reference itself, against tabulated values.
        Assert.That(Reference.Erf(0.5), Is.EqualTo(0.5204998778130465).Within(1e-15));
        Assert.That(Reference.Erf(1.0), Is.EqualTo(0.8427007929497149).Within(1e-15));
        Assert.That(Reference.Erf(2.0), Is.EqualTo(0.9953222650189527).Within(1e-15));
        Assert.That(Reference.Erfc(3.0), Is.EqualTo(2.209049699858544e-05).Within(1e-12).Percent);
        Assert.That(Reference.Erfc(5.0), Is.EqualTo(1.5374597944280349e-12).Within(1e-12).Percent);

        double worst = 0;
        for (double x = -6; x <= 9; x += 0.01)
            worst = Math.Max(worst, Math.Abs(HyenaKernels.Erfc(x) - Reference.Erfc(x)) / Reference.Erfc(x));
        Assert.That(worst, Is.LessThanOrEqualTo(1.3e-7));
    }

    // ------------------------------------------------------------------ setup

    /// <summary>A random <c>hyena</c> layer, with its filter tensors kept for the reference.</summary>
    internal sealed record HyenaSetup(HyenaWeights Weights, HyenaOptions Options, FilterTensors Filter)
    {
        public static HyenaSetup Create(Random rng, int hidden, int maxLength, int embeddingDim, int order, int innerMlps, bool storeTimeAndDeltas,
            int initialLength, HyenaConvolutionPath path = HyenaConvolutionPath.Auto)
        {
            int d = hidden, w = 3 * hidden;
            var options = new HyenaOptions(d, maxLength, embeddingDim, order, innerMlps, 3, 10.0, 0.05, path);
            // A trained z differs from its initial value: perturb it so a recomputed z would show.
            var z = HyenaImplicitFilter.InitialPositionalEmbedding(maxLength, embeddingDim).Select(v => v + 0.05f * (float)Gaussian(rng)).ToArray();
            var linears = new float[innerMlps + 2][];
            var biases = new float[innerMlps + 1][];
            for (int i = 0; i < innerMlps + 2; i++)
            {
                int rows = i == innerMlps + 1 ? d : order, cols = i == 0 ? embeddingDim : order;
                linears[i] = RandomFloats(rng, rows * cols, 1.0 / Math.Sqrt(cols));
                if (i <= innerMlps)
                    biases[i] = RandomFloats(rng, order, 0.3);
            }
            var tensors = new FilterTensors(z,
                storeTimeAndDeltas ? Enumerable.Range(0, maxLength).Select(s => (float)s / (maxLength - 1)).ToArray() : null,
                linears, biases, RandomFloats(rng, order, 1.0, 10.0),
                storeTimeAndDeltas ? HyenaImplicitFilter.InitialDeltas(d).Select(v => v * (1 + 0.3f * (float)rng.NextDouble())).ToArray() : null,
                RandomFloats(rng, d, 1.0));
            var weights = new HyenaWeights(
                RandomMatrix(rng, "in_proj", w, d), RandomFloats(rng, w, 0.3),
                RandomFloats(rng, w * 3, 0.6), RandomFloats(rng, w, 0.3),
                new HyenaImplicitFilter(tensors.ToWeights(options), options, initialLength),
                RandomMatrix(rng, "out_proj", d, d), RandomFloats(rng, d, 0.3));
            return new HyenaSetup(weights, options, tensors);
        }

        /// <summary>The weights of a mixer assembled from float arrays keyed by HF name.</summary>
        public static HyenaSetup FromTensors(Dictionary<string, float[]> t, string p, HyenaOptions o)
        {
            int d = o.Hidden, w = o.InnerWidth, layers = o.InnerMlps + 2;
            var linears = Enumerable.Range(0, layers).Select(i => t[p + HyenaTensorNames.ImplicitLinearWeight(i)]).ToArray();
            var biases = Enumerable.Range(0, layers - 1).Select(i => t[p + HyenaTensorNames.ImplicitLinearBias(i)]).ToArray();
            var freq = t.First(kv => kv.Key.StartsWith(p + "filter_fn.implicit_filter.", StringComparison.Ordinal) && kv.Key.EndsWith(".freq", StringComparison.Ordinal)).Value;
            var tensors = new FilterTensors(t[p + HyenaTensorNames.PositionalEmbedding], t[p + HyenaTensorNames.Time], linears, biases, freq,
                t[p + HyenaTensorNames.Deltas], t[p + HyenaTensorNames.FilterBias]);
            var weights = new HyenaWeights(
                Matrix.FromFloats("in_proj", w, d, t[p + HyenaTensorNames.InProjWeight]), t[p + HyenaTensorNames.InProjBias],
                t[p + HyenaTensorNames.ShortFilterWeight], t[p + HyenaTensorNames.ShortFilterBias],
                new HyenaImplicitFilter(tensors.ToWeights(o), o, 1),
                Matrix.FromFloats("out_proj", d, d, t[p + HyenaTensorNames.OutProjWeight]), t[p + HyenaTensorNames.OutProjBias]);
            return new HyenaSetup(weights, o, tensors);
        }
    }

    /// <summary>The filter's tensors as float arrays (row-major), for building weights and for the reference.</summary>
    internal sealed record FilterTensors(float[] Z, float[]? Time, float[][] Linears, float[][] Biases, float[] Frequency, float[]? Deltas, float[] Bias)
    {
        public HyenaFilterWeights ToWeights(HyenaOptions o) => new(
            Matrix.FromFloats("z", o.MaxLength, o.EmbeddingDim, Z), Time,
            Linears.Select((m, i) => Matrix.FromFloats($"implicit_filter.{2 * i}", i == Linears.Length - 1 ? o.Hidden : o.FilterOrder, i == 0 ? o.EmbeddingDim : o.FilterOrder, m)).ToArray(),
            Biases, Frequency, Deltas, Bias);
    }

    // ------------------------------------------------------------------ float64 references, from the equations

    private static class Reference
    {
        public static (double[] Re, double[] Im) Dft(double[] re, double[] im)
        {
            int n = re.Length;
            var cos = new double[n];
            var sin = new double[n];
            for (int k = 0; k < n; k++)
            {
                cos[k] = Math.Cos(2 * Math.PI * k / n);
                sin[k] = Math.Sin(2 * Math.PI * k / n);
            }
            var outRe = new double[n];
            var outIm = new double[n];
            for (int k = 0; k < n; k++)
            {
                double sr = 0, si = 0;
                for (int j = 0; j < n; j++)
                {
                    int a = (int)((long)j * k % n); // e^(−2πi·jk/n) = cos − i·sin
                    sr += re[j] * cos[a] + im[j] * sin[a];
                    si += im[j] * cos[a] - re[j] * sin[a];
                }
                outRe[k] = sr;
                outIm[k] = si;
            }
            return (outRe, outIm);
        }

        public static double[] CausalConvolution(double[] u, double[] h)
        {
            var y = new double[u.Length];
            for (int t = 0; t < u.Length; t++)
                for (int s = 0; s <= t; s++)
                    y[t] += h[s] * u[t - s];
            return y;
        }

        /// <summary>erf(x) = (2/√π)·e^(−x²)·Σ_n 2ⁿx^(2n+1)/(1·3⋯(2n+1)): every term positive, so no cancellation.</summary>
        public static double Erf(double x)
        {
            if (Math.Abs(x) > 6)
                return Math.Sign(x);
            double term = x, sum = x;
            for (int n = 0; n < 500 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
            {
                term *= 2 * x * x / (2 * n + 3);
                sum += term;
            }
            return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
        }

        /// <summary>erfc by 1 − erf below 2, by the Laplace continued fraction e^(−x²)/(√π·(x + ½/(x + 1/(x + 3/2/(x + …))))) above.</summary>
        public static double Erfc(double x)
        {
            if (x < 0)
                return 2 - Erfc(-x);
            if (x < 2)
                return 1 - Erf(x);
            double f = x;
            for (int n = 300; n >= 1; n--)
                f = x + n / 2.0 / f;
            return Math.Exp(-x * x) / (Math.Sqrt(Math.PI) * f);
        }

        public static double Gelu(double x, GeluApproximation approximation) => approximation == GeluApproximation.None
            ? 0.5 * x * Erfc(-x / Math.Sqrt(2))
            : 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

        public static double[] Linear(IReadOnlyList<double> x, int rows, Matrix weight, float[]? bias)
        {
            var w = new float[weight.Cols];
            var y = new double[rows * weight.Rows];
            for (int o = 0; o < weight.Rows; o++)
            {
                weight.ReadRow(o, w);
                for (int r = 0; r < rows; r++)
                {
                    double s = bias?[o] ?? 0;
                    for (int i = 0; i < weight.Cols; i++)
                        s += x[r * weight.Cols + i] * (double)w[i];
                    y[r * weight.Rows + o] = s;
                }
            }
            return y;
        }

        public static double[] LayerNorm(IReadOnlyList<double> x, int rows, LayerNormWeights weights, double eps)
        {
            int d = weights.Dim;
            var y = new double[rows * d];
            for (int r = 0; r < rows; r++)
            {
                double mean = 0, variance = 0;
                for (int i = 0; i < d; i++) mean += x[r * d + i];
                mean /= d;
                for (int i = 0; i < d; i++) variance += (x[r * d + i] - mean) * (x[r * d + i] - mean);
                variance /= d;
                for (int i = 0; i < d; i++)
                    y[r * d + i] = (x[r * d + i] - mean) / Math.Sqrt(variance + eps) * weights.Gamma[i] + weights.Beta[i];
            }
            return y;
        }

        public static double[] LayerNorm(float[] x, int rows, LayerNormWeights weights, double eps) =>
            LayerNorm(x.Select(v => (double)v).ToArray(), rows, weights, eps);

        public static double[] GeluMlp(IReadOnlyList<double> x, int rows, GeluMlpWeights weights, GeluApproximation approximation)
        {
            var h = Linear(x, rows, weights.Fc1, weights.Fc1Bias);
            for (int i = 0; i < h.Length; i++)
                h[i] = Gelu(h[i], approximation);
            return Linear(h, rows, weights.Fc2, weights.Fc2Bias);
        }

        public static double[] GeluMlp(float[] x, int rows, GeluMlpWeights weights, GeluApproximation approximation) =>
            GeluMlp(x.Select(v => (double)v).ToArray(), rows, weights, approximation);

        /// <summary>h[c][s], the implicit filter (Hyena §3.2) over every lag of z.</summary>
        public static double[][] Filter(HyenaSetup setup)
        {
            var o = setup.Options;
            var f = setup.Filter;
            int d = o.Hidden, order = o.FilterOrder, e = o.EmbeddingDim, layers = o.InnerMlps + 2, length = o.MaxLength;
            var deltas = f.Deltas ?? HyenaImplicitFilter.InitialDeltas(d);
            var h = Enumerable.Range(0, d).Select(_ => new double[length]).ToArray();
            for (int s = 0; s < length; s++)
            {
                double[] a = Enumerable.Range(0, e).Select(j => (double)f.Z[s * e + j]).ToArray();
                for (int i = 0; i < layers; i++)
                {
                    int rows = i == layers - 1 ? d : order, cols = a.Length;
                    var next = new double[rows];
                    for (int r = 0; r < rows; r++)
                    {
                        double sum = i < layers - 1 ? f.Biases[i][r] : 0;
                        for (int j = 0; j < cols; j++)
                            sum += f.Linears[i][r * cols + j] * a[j];
                        next[r] = i < layers - 1 ? Math.Sin(f.Frequency[r] * sum) : sum;
                    }
                    a = next;
                }
                double t = f.Time?[s] ?? (double)s / (length - 1);
                for (int c = 0; c < d; c++)
                    h[c][s] = a[c] * (Math.Exp(-t * Math.Abs((double)deltas[c])) + o.ModulationShift);
            }
            return h;
        }

        /// <summary>The order-2 Hyena mixer over x (T, D) from position 0, in float64.</summary>
        public static double[] Hyena(HyenaSetup setup, IReadOnlyList<double> x, int tokens)
        {
            var o = setup.Options;
            var weights = setup.Weights;
            int d = o.Hidden, w = 3 * d, k = o.ShortFilterWidth;
            var p = Linear(x, tokens, weights.InProj, weights.InProjBias);
            var q = new double[tokens * w];
            for (int t = 0; t < tokens; t++)
                for (int c = 0; c < w; c++)
                {
                    double sum = weights.ShortFilterBias?[c] ?? 0;
                    for (int j = 0; j < k; j++)
                    {
                        int source = t - (k - 1) + j;
                        if (source >= 0)
                            sum += weights.ShortFilter[c * k + j] * p[source * w + c];
                    }
                    q[t * w + c] = sum;
                }
            var h = Filter(setup);
            var gated = new double[tokens * d];
            for (int c = 0; c < d; c++)
            {
                var u = new double[tokens];
                for (int t = 0; t < tokens; t++)
                    u[t] = q[t * w + 2 * d + c] * q[t * w + d + c]; // v ⊙ x1
                for (int t = 0; t < tokens; t++)
                {
                    double z = setup.Filter.Bias[c] * u[t];
                    for (int s = 0; s <= t; s++)
                        z += h[c][s] * u[t - s];
                    gated[t * d + c] = q[t * w + c] * z; // x0 ⊙ (h ∗ u + bias ⊙ u)
                }
            }
            return Linear(gated, tokens, weights.OutProj, weights.OutProjBias);
        }

        public static double[] Hyena(HyenaSetup setup, float[] x, int tokens) =>
            Hyena(setup, x.Select(v => (double)v).ToArray(), tokens);
    }

    // ------------------------------------------------------------------ helpers

    private static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    private static float[] RandomFloats(Random rng, int count, double std, double mean = 0) =>
        Enumerable.Range(0, count).Select(_ => (float)(mean + std * Gaussian(rng))).ToArray();

    private static double[] RandomDoubles(Random rng, int count) =>
        Enumerable.Range(0, count).Select(_ => Gaussian(rng)).ToArray();

    private static Matrix RandomMatrix(Random rng, string name, int rows, int cols, double gain = 1.0) =>
        Matrix.FromFloats(name, rows, cols, RandomFloats(rng, rows * cols, gain / Math.Sqrt(cols)));

    private static byte[] Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static double MaxAbs(ReadOnlySpan<double> values)
    {
        double m = 0;
        foreach (var v in values) m = Math.Max(m, Math.Abs(v));
        return m;
    }

    private static double MaxAbsDiff(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    /// <summary>max|got − expected| / max|expected|: the error relative to the output's scale.</summary>
    private static double RelativeError(float[] got, double[] expected)
    {
        Assert.That(got, Has.Length.EqualTo(expected.Length));
        double m = 0;
        for (int i = 0; i < got.Length; i++) m = Math.Max(m, Math.Abs(got[i] - expected[i]));
        return m / MaxAbs(expected);
    }
}
