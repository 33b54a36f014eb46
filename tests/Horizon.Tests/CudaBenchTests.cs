using Horizon.Cli.Bench;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// <c>horizon bench cuda</c> on the CPU: its matrix, formulas, options, rows and tables, and the one-line refusal
/// where CUDA is unavailable. (The timings themselves run on the GPU machine: docs/cuda.md.)
/// </summary>
[NonParallelizable]
public class CudaBenchTests
{
    private static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => GenerationCliTests.Run(null, args);

    [Test]
    public void The_matrix_is_issue_4s()
    {
        Assert.That(CudaBenchMatrix.Prefill.Select(c => (c.Batch, c.Heads, c.Tokens, c.HeadDim)), Is.EquivalentTo(new[]
        {
            (16, 16, 1024, 64), (4, 16, 4096, 64), (1, 16, 16384, 64), (1, 8, 65536, 64),
            (16, 16, 1024, 128), (4, 16, 4096, 128), (1, 16, 16384, 128), (1, 8, 65536, 128),
        }));
        Assert.That(CudaBenchMatrix.Decode.Select(c => (c.Batch, c.Heads, c.KvHeads, c.KeyCount, c.HeadDim)), Is.EquivalentTo(new[]
        {
            (1, 32, 32, 4096, 128), (1, 32, 8, 4096, 128), (1, 32, 32, 65536, 128),
            (1, 32, 8, 65536, 128), (1, 32, 32, 262144, 128), (1, 32, 8, 262144, 128),
        }));
        Assert.That(CudaBenchMatrix.GlaTokens, Is.EqualTo(new[] { 2048, 4096, 8192, 16384, 32768, 65536 }));
        // GLA and the attention it is compared with have the same width: 4 × 256 = 8 × 128 = 1024.
        Assert.That(CudaBenchMatrix.GlaHeads * CudaBenchMatrix.GlaHeadVDim, Is.EqualTo(CudaBenchMatrix.GlaAttentionHeads * CudaBenchMatrix.GlaAttentionHeadDim));
    }

    [Test]
    public void Causal_prefill_flops_are_half_of_4_BHN2D()
    {
        // 4·16·4096²·128 / 2: the figure behind docs/performance.md's 1.175 ms = 234 TFLOP/s.
        Assert.That(CudaBenchMath.CausalPrefillFlops(4, 16, 4096, 128), Is.EqualTo(4.0 * 4 * 16 * 4096.0 * 4096 * 128 / 2));
        Assert.That(CudaBenchMath.TeraflopsPerSecond(CudaBenchMath.CausalPrefillFlops(4, 16, 4096, 128), 1.175), Is.EqualTo(233.9).Within(0.1));
        // No int overflow at 64K tokens: 4·1·8·65536²·128 / 2 ≈ 8.8e12.
        Assert.That(CudaBenchMath.CausalPrefillFlops(1, 8, 65536, 128), Is.EqualTo(8.796093022208e12).Within(1));
    }

    [Test]
    public void Decode_bytes_are_K_and_V_read_once()
    {
        // docs/performance.md: 32/32 at 4K is 67.1 MB, 64K 1.074 GB, 256K 4.295 GB; 32/8 a quarter of those.
        Assert.That(new DecodeCase(1, 32, 32, 4096, 128).Bytes, Is.EqualTo(67_108_864));
        Assert.That(new DecodeCase(1, 32, 32, 65536, 128).Bytes, Is.EqualTo(1_073_741_824));
        Assert.That(new DecodeCase(1, 32, 32, 262144, 128).Bytes, Is.EqualTo(4_294_967_296));
        Assert.That(new DecodeCase(1, 32, 8, 4096, 128).Bytes, Is.EqualTo(16_777_216));
        Assert.That(CudaBenchMath.GigabytesPerSecond(1_073_741_824, 0.266), Is.EqualTo(4036.6).Within(0.1));
    }

    [Test]
    public void Small_caches_rotate_over_copies_past_the_L2()
    {
        Assert.That(new DecodeCase(1, 32, 32, 4096, 128).Copies, Is.EqualTo(4));   // 67 MB × 4 ≥ 256 MB
        Assert.That(new DecodeCase(1, 32, 8, 4096, 128).Copies, Is.EqualTo(16));   // 16.8 MB × 16 ≥ 256 MB
        Assert.That(new DecodeCase(1, 32, 8, 65536, 128).Copies, Is.EqualTo(1));   // 268 MB
        Assert.That(CudaBenchMath.CacheCopies(1000), Is.EqualTo(CudaBenchMath.MaxCacheCopies));
    }

    [Test]
    public void Copy_bandwidth_counts_read_and_write()
    {
        // 1 GiB copied in 0.5 ms moves 2 GiB: 4295 GB/s.
        Assert.That(CudaBenchMath.CopyGigabytesPerSecond(1L << 30, 0.5), Is.EqualTo(4294.97).Within(0.01));
        Assert.That(CudaBenchMath.TokensPerSecond(65536, 4.532), Is.EqualTo(14.46e6).Within(0.01e6));
    }

    [TestCase("prefill", 1)]
    [TestCase("decode", 2)]
    [TestCase("gla", 4)]
    [TestCase("prefill,gla", 5)]
    [TestCase(" Decode , prefill ", 3)]
    [TestCase("all", 7)]
    public void Only_parses_the_parts(string text, int expected) =>
        Assert.That((int)CudaBenchMatrix.ParseParts(text), Is.EqualTo(expected));

    [TestCase("", "at least one")]
    [TestCase(",", "at least one")]
    [TestCase("prefil", "unknown part 'prefil'")]
    public void Only_refuses_unknown_and_empty_lists(string text, string fragment) =>
        Assert.That(() => CudaBenchMatrix.ParseParts(text), Throws.TypeOf<HorizonException>().With.Message.Contains(fragment));

    [Test]
    public void Rows_are_tab_separated_with_invariant_numbers()
    {
        var row = new CudaBenchRow("decode", 1, 32, 8, 65536, 128, 0.07812345, 3448.123, "GB/s", "splits=32x2048 copies=1");
        Assert.That(row.ToTsv(), Is.EqualTo("decode\t1\t32\t8\t65536\t128\t0.0781\t3448.12\tGB/s\tsplits=32x2048 copies=1"));
        Assert.That(row.ToTsv().Split('\t'), Has.Length.EqualTo(CudaBenchRow.Header.Split('\t').Length));
        Assert.That(CudaBenchReport.Detail(row, "splits"), Is.EqualTo("32x2048"));
        Assert.That(CudaBenchReport.Detail(row, "nothing"), Is.Null);
        string meta = CudaBenchRow.MetaLine([new("device", "NVIDIA H200"), new("ptx", "a\tb\nc")]);
        Assert.That(meta, Is.EqualTo("# horizon bench cuda\tdevice=NVIDIA H200\tptx=a b c"));
    }

    [Test]
    public void The_report_prints_each_table_with_its_anchor([Values] bool markdown)
    {
        var settings = new CudaBenchSettings(CudaBenchParts.All, 3, 20, markdown, "out.tsv");
        var meta = new Dictionary<string, string> { ["device"] = "NVIDIA H200", ["capability"] = "9.0", ["ptx"] = "attention.compute_90 (/tmp/ptx)" };
        CudaBenchRow[] rows =
        [
            new("copy", 1, 0, 0, 1L << 30, 0, 0.5, 4200, "GB/s"),
            new("prefill", 4, 16, 16, 4096, 128, 1.175, 234.0, "TFLOP/s"),
            new("decode", 1, 32, 32, 65536, 128, 0.266, 4036.6, "GB/s", "splits=8x8192 copies=1 of_copy=0.961"),
            new("gla", 1, 4, 4, 65536, 128, 4.532, 14.46e6, "tok/s", "head_v_dim=256"),
            new("gla_attention", 1, 8, 8, 65536, 128, 34.469, 1.90e6, "tok/s"),
        ];
        var output = new StringWriter();
        new CudaBenchReport(settings, meta, rows, ["gla 2048: CudaException: boom"], TimeSpan.FromSeconds(42), output).Write();
        string text = output.ToString();
        Assert.That(text, Does.Contain("NVIDIA H200").And.Contain("attention.compute_90 (/tmp/ptx)").And.Contain("4200 GB/s"));
        Assert.That(text, Does.Contain("4·16·4096·128").And.Contain("234.0"));
        Assert.That(text, Does.Contain("8 × 8192").And.Contain("96%"));
        Assert.That(text, Does.Contain("14.46").And.Contain("7.61×"));
        Assert.That(text, Does.Contain("gla 2048: CudaException: boom"));
        Assert.That(text.Contains("| B·H·N·D |", StringComparison.Ordinal), Is.EqualTo(markdown));
    }

    [Test]
    public void Without_a_GPU_it_says_why_in_one_line_and_fails()
    {
        if (CudaDiagnostics.Describe().Available)
            Assert.Ignore("CUDA is available here: bench cuda would run the benchmark");
        var (code, stdout, stderr) = Run("bench", "cuda");
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("error: bench cuda: CUDA is unavailable: "));
    }

    [TestCase("--only", "prefil", "unknown part")]
    [TestCase("--repeats", "0", "--repeats 0: must be positive")]
    [TestCase("--warmup", "-1", "--warmup must not be negative")]
    public void Bad_options_end_in_one_line(string option, string value, string fragment)
    {
        var (code, stdout, stderr) = Run("bench", "cuda", option, value);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Trim(), Does.StartWith("error: ").And.Contain(fragment).And.Not.Contain("\n"));
    }

    [Test]
    public void Unavailable_names_the_reason()
    {
        var off = new CudaReport(false, "CUDA driver not found (libcuda.so.1)", null, null, [], [], "off");
        Assert.That(CudaBenchmark.Unavailable(off), Is.EqualTo("CUDA driver not found (libcuda.so.1)"));
        var broken = new CudaReport(true, null, "/lib/libcuda.so.1", 13000,
            [new CudaDeviceReport(0, "GPU", new ComputeCapability(7, 0), 80, 1, 1, [], "no PTX build for compute capability 7.0")], [], "off");
        Assert.That(CudaBenchmark.Unavailable(broken), Does.Contain("no PTX build"));
        var fine = broken with { Devices = [broken.Devices[0] with { Problem = null }] };
        Assert.That(CudaBenchmark.Unavailable(fine), Is.Null);
    }
}
