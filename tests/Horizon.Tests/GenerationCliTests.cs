using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// <c>horizon generate</c> and <c>horizon chat</c> run in-process on the random-weight test model: text on stdout,
/// speeds on stderr, seeds reproducible, and bad input in one line with exit code 1.
/// </summary>
[NonParallelizable]
public class GenerationCliTests
{
    internal static (int ExitCode, string Stdout, string Stderr) Run(string? stdin, params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var (oldOut, oldErr, oldIn) = (Console.Out, Console.Error, Console.In);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        if (stdin is not null)
            Console.SetIn(new StringReader(stdin));
        try
        {
            int code = Horizon.Cli.Program.Main(args);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
            Console.SetIn(oldIn);
        }
    }

    internal static void AssertOneLineError(int code, string stderr, string fragment)
    {
        Assert.That(code, Is.EqualTo(1), stderr);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("error: ").And.Contain(fragment));
    }

    [Test]
    public void Generate_streams_the_continuation_then_prints_speeds()
    {
        var (code, stdout, stderr) = Run(null, "generate", "In the beginning", "--model", GenerationTestModel.Directory, "--max-tokens", "12", "--seed", "3", "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.StartWith("In the beginning"));
        Assert.That(stdout.Length, Is.GreaterThan("In the beginning".Length));
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.Match(@"^prefill: \d+ tokens in [\d.]+ s, [\d.]+ tok/s \| decode: \d+ tokens in [\d.]+ s, [\d.]+ tok/s \| finish: \w+.* \| seed: 3 \| device: cpu$"));
    }

    [Test]
    public void Generate_with_a_seed_is_reproducible_and_greedy_is_deterministic()
    {
        string[] Args(params string[] extra) => ["generate", "And God said", "--model", GenerationTestModel.Directory, "--max-tokens", "16", "--no-progress", "--no-echo", .. extra];
        var a = Run(null, Args("--seed", "11", "--temperature", "1.3"));
        var b = Run(null, Args("--seed", "11", "--temperature", "1.3"));
        Assert.That(a.ExitCode, Is.Zero, a.Stderr);
        Assert.That(b.Stdout, Is.EqualTo(a.Stdout));
        var g1 = Run(null, Args("--greedy"));
        var g2 = Run(null, Args("--greedy", "--prefill-chunk", "1"));
        Assert.That(g2.Stdout, Is.EqualTo(g1.Stdout));
    }

    [Test]
    public void Generate_on_cuda_runs_or_says_in_one_line_why_CUDA_is_off()
    {
        var (code, _, stderr) = Run(null, "generate", "x", "--model", GenerationTestModel.Directory, "--device", "cuda", "--max-tokens", "1", "--no-progress");
        if (Horizon.Cuda.CudaDiagnostics.Describe().Available)
            Assert.That(code, Is.Zero, stderr);
        else
            AssertOneLineError(code, stderr, "CUDA is off here");
        // auto falls back to the CPU without a word when CUDA is off.
        (code, _, stderr) = Run(null, "generate", "x", "--model", GenerationTestModel.Directory, "--device", "auto", "--max-tokens", "1", "--no-progress");
        Assert.That(code, Is.Zero, stderr);
    }

    [Test]
    public void Generate_reports_bad_input_in_one_line()
    {
        var (code, _, stderr) = Run(null, "generate", "x", "--model", Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid()));
        AssertOneLineError(code, stderr, "no-such-model");
        (code, _, stderr) = Run(null, "generate", "x", "--model", GenerationTestModel.Directory, "--top-p", "2");
        AssertOneLineError(code, stderr, "top-p");
        (code, _, stderr) = Run(null, "generate", "x", "--model", Path.Combine(RepositoryPaths.Golden, "qwen2-bias-tied"));
        AssertOneLineError(code, stderr, "no tokenizer.json or tokenizer.model");
        (code, _, stderr) = Run(null, "generate", "a prompt longer than two tokens", "--model", GenerationTestModel.Directory, "--context", "2", "--no-progress");
        AssertOneLineError(code, stderr, "does not fit");
    }

    [Test]
    public void Generate_stops_at_a_stop_string()
    {
        var free = Run(null, "generate", "And God said", "--model", GenerationTestModel.Directory, "--max-tokens", "30", "--greedy", "--no-echo", "--no-progress");
        string text = free.Stdout.TrimEnd('\n');
        Assert.That(text.Length, Is.GreaterThan(6));
        string stop = text.Substring(text.Length / 2, 2);
        var cut = Run(null, "generate", "And God said", "--model", GenerationTestModel.Directory, "--max-tokens", "30", "--greedy", "--no-echo", "--no-progress", "--stop", stop);
        Assert.That(cut.Stdout.TrimEnd('\n'), Is.EqualTo(text[..text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(cut.Stderr, Does.Contain("finish: stop"));
    }
}
