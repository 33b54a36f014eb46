using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The CUDA model path as far as a machine without a GPU sees it: which generated models can run on CUDA, and the
/// one-line errors of --device cuda. (The path itself is tested on the GPU machine: tests/Horizon.Gpu.Tests/ModelTests.cs.)
/// </summary>
public class CudaModelPathTests
{
    [TestCase("llama-gqa-untied", "LlamaModel")]
    [TestCase("qwen2-bias-tied", "Qwen2Model")]
    [TestCase("gla-gqa-conv-clamp-untied", "GlaModel")]
    public void Models_of_supported_kinds_can_run_on_cuda(string fixture, string model)
    {
        using var loaded = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        Assert.That(loaded.GetType().Name, Is.EqualTo(model));
        Assert.That(loaded, Is.InstanceOf<ICudaCapableModel>());
        Assert.That(((ICudaCapableModel)loaded).CudaUnsupportedReason, Is.Null);
    }

    [Test]
    public void The_default_model_can_run_on_cuda()
    {
        using var loaded = ModelRegistry.Load(Path.Combine(RepositoryPaths.Models, "horizon-kjv"));
        Assert.That(((ICudaCapableModel)loaded).CudaUnsupportedReason, Is.Null);
    }

    [TestCase("mixtral-moe-gqa", "moe 'moe'")]
    [TestCase("qwen2-moe-shared-dense", "moe 'mlp'")]
    [TestCase("hyenadna-tiny-random", "layer_norm 'norm1'")]
    public void Models_with_a_kind_without_cuda_kernels_say_which(string fixture, string node)
    {
        using var loaded = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture));
        string? reason = ((ICudaCapableModel)loaded).CudaUnsupportedReason;
        Assert.That(reason, Does.Contain(node).And.Contain("has no CUDA kernels yet"));
        var error = Assert.Throws<HorizonException>(() => ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture), HorizonDevice.Cuda));
        Assert.That(error!.Message, Is.EqualTo(reason));
        // auto runs it on the CPU instead.
        using var fallback = ModelRegistry.Load(Path.Combine(RepositoryPaths.Golden, fixture), HorizonDevice.Auto);
        Assert.That(fallback, Is.InstanceOf<ICudaCapableModel>());
    }

    [Test]
    public void Two_level_models_are_refused_on_cuda_in_one_line()
    {
        string directory = Path.Combine(RepositoryPaths.Golden, "block-transformer-b3-r3");
        var error = Assert.Throws<HorizonException>(() => ModelRegistry.Load(directory, HorizonDevice.Cuda));
        Assert.That(error!.Message, Does.Contain("two-level model has no CUDA path"));
        using var fallback = ModelRegistry.Load(directory, HorizonDevice.Auto);
        Assert.That(fallback.Info.Architecture, Is.EqualTo("BlockTransformerForCausalLM"));
    }

    [Test]
    public void Score_on_cuda_runs_or_says_in_one_line_why_not()
    {
        string directory = Path.Combine(RepositoryPaths.Golden, "llama-gqa-untied");
        var (code, stdout, stderr) = GenerationCliTests.Run(null, "score", "-m", directory, "--tokens", "1 2 3 4", "--device", "cuda");
        if (CudaDiagnostics.Describe().Available)
        {
            Assert.That(code, Is.Zero, stderr);
            Assert.That(stdout, Does.Contain("logprobs"));
        }
        else
        {
            GenerationCliTests.AssertOneLineError(code, stderr, "CUDA is off here");
        }
        (code, _, stderr) = GenerationCliTests.Run(null, "score", "-m", Path.Combine(RepositoryPaths.Golden, "hyenadna-tiny-random"), "--tokens", "1 2 3", "--device", "cuda");
        GenerationCliTests.AssertOneLineError(code, stderr, "has no CUDA kernels yet");
    }
}

/// <summary>
/// ForwardLast (<see cref="ILastLogitsModel"/>), which sessions use for prefill: the output head on the last token only
/// gives that token's logits as Forward does, and the state advances the same.
/// </summary>
public class LastLogitsTests
{
    [TestCase("tests/golden/llama-gqa-untied")]
    [TestCase("tests/golden/gla-gqa-conv-clamp-untied")]
    [TestCase("models/horizon-kjv")]
    public void ForwardLast_gives_the_last_row_of_Forward(string fixture)
    {
        using var model = ModelRegistry.Load(Path.Combine(RepositoryPaths.Root, fixture));
        var last = (ILastLogitsModel)model;
        int vocab = model.VocabSize;
        int[] first = Enumerable.Range(0, 23).Select(i => (i * 37 + 5) % vocab).ToArray();
        int[] second = Enumerable.Range(0, 9).Select(i => (i * 11 + 2) % vocab).ToArray();

        var full = model.CreateState(64);
        var all = new float[first.Length * vocab];
        model.Forward(first, full, all);
        var allNext = new float[second.Length * vocab];
        model.Forward(second, full, allNext);

        var lean = model.CreateState(64);
        var row = new float[vocab];
        last.ForwardLast(first, lean, row);
        var rowNext = new float[vocab];
        last.ForwardLast(second, lean, rowNext);

        Assert.That(lean.Length, Is.EqualTo(full.Length));
        AssertRow(all.AsSpan((first.Length - 1) * vocab, vocab), row, fixture);
        AssertRow(allNext.AsSpan((second.Length - 1) * vocab, vocab), rowNext, fixture + " (second call, after the cache)");
        Assert.Throws<ArgumentException>(() => last.ForwardLast(second, model.CreateState(64), new float[vocab - 1]));
    }

    private static void AssertRow(ReadOnlySpan<float> expected, float[] actual, string what)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        // The head on one row may take the direct bf16 path where Forward's many rows widen: float32 rounding apart.
        Assert.That(worst, Is.LessThanOrEqualTo(1e-5 * Math.Max(1, scale)), what);
    }
}
